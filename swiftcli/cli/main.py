"""The swiftcli / swift command: one Typer app per sub-command module, joined here; heavy code loads lazily.

ms-swift's command lines run verbatim: cli.argv rewrites argv before Click parses it (other names -> the one
kebab-case name, `--val_dataset a.jsonl b.jsonl` -> repeated options, -v/-q/--debug typed after the command ->
the root's), and usage errors print as one `Error:` line like every other error.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from swiftcli import __version__
from swiftcli.cli import argv, output, state
from swiftcli.cli.app_ui import app_ui_command
from swiftcli.cli.chat import chat_command
from swiftcli.cli.check import check_command
from swiftcli.cli.deploy import deploy_command
from swiftcli.cli.download import download_command
from swiftcli.cli.env import env_command
from swiftcli.cli.eval import eval_app
from swiftcli.cli.export import export_command
from swiftcli.cli.infer import infer_command
from swiftcli.cli.local_models import rm_command
from swiftcli.cli.logs import logs_command
from swiftcli.cli.models import models_command
from swiftcli.cli.options import normalize_token
from swiftcli.cli.progress import install as show_download_progress

HELP = (
    "Fast LLM inference and deployment on vLLM: infer, chat, deploy, export, eval, app-ui.\n\n"
    "Options are shown in kebab-case; ms-swift's snake_case spellings (--infer_backend) and names "
    "(--model_id_or_path, --torch_dtype, --stop_words) work too, and options that take several values take them "
    "space-separated (--val_dataset a.jsonl b.jsonl). -v, -q and --debug work before or after the command."
)


class SwiftcliGroup(TyperGroup):
    """The root command. Before Click parses argv, `cli.argv.prepare` moves -v/--debug/--quiet to the front
    wherever they were typed, expands `--opt a b` to `--opt a --opt b`, and maps other spellings; a usage error
    prints as one `Error:` line with a hint, like every other error. Help shows one metavar style."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        argv.style_metavars(self)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, argv.prepare(list(args), self, ctx))

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except argv.ClickException as exc:
            sys.exit(output.usage_error(exc))
        except typer.Abort:
            output.stderr.print("Aborted.")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class SwiftcliCommand(TyperCommand):
    """A command whose hidden parameters stay out of its usage line too."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            if getattr(param, "param_type_name", "") == "argument" and param.metavar:
                pieces.append(param.metavar)  # as written: `[PROMPT]`, not Click's `[[PROMPT]]...`
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


app = typer.Typer(
    name="swiftcli",
    cls=SwiftcliGroup,
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"], "token_normalize_func": normalize_token},
)


def _version(value: bool) -> None:
    if value:
        print(f"swiftcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show engine logs on stderr.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for known errors too.")] = False,
) -> None:
    """Fast LLM inference and deployment on vLLM."""
    state.set_flags(verbose, quiet)
    output.set_debug(debug)
    show_download_progress()


app.command("infer", cls=SwiftcliCommand, rich_help_panel="Run")(infer_command)
app.command("chat", cls=SwiftcliCommand, rich_help_panel="Run")(chat_command)
app.command("models", cls=SwiftcliCommand, rich_help_panel="Models")(models_command)
app.add_typer(eval_app, name="eval", rich_help_panel="Run")
app.command("deploy", cls=SwiftcliCommand, rich_help_panel="Run")(deploy_command)
app.command("app-ui", cls=SwiftcliCommand, rich_help_panel="Run")(app_ui_command)
app.command("logs", cls=SwiftcliCommand, rich_help_panel="Run")(logs_command)
app.command("export", cls=SwiftcliCommand, rich_help_panel="Models")(export_command)
app.command("check", cls=SwiftcliCommand, rich_help_panel="Models")(check_command)
app.command("download", cls=SwiftcliCommand, rich_help_panel="Models")(download_command)
app.command("pull", cls=SwiftcliCommand, rich_help_panel="Models", hidden=True)(download_command)
app.command("rm", cls=SwiftcliCommand, rich_help_panel="Models")(rm_command)
app.command("env", cls=SwiftcliCommand, rich_help_panel="Models")(env_command)

# expand_multi_values stays importable from here (tests and older callers).
expand_multi_values = argv.expand_multi_values


def main() -> None:
    try:
        # `swift` is the same app under ms-swift's name: usage lines and shell completion answer to the name typed.
        app(prog_name="swift" if os.path.basename(sys.argv[0]) == "swift" else "swiftcli")
    except SystemExit as done:
        if (done.code is None or isinstance(done.code, int)) and not _threads_to_wait_for():
            _end_process(done.code or 0)
        raise


def _threads_to_wait_for() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate()
            if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()]


def _end_process(code: int) -> NoReturn:
    """End a finished command the way the interpreter would, less its teardown: once torch and vLLM are loaded,
    freeing about 6,700 modules and 740,000 objects one by one takes 3 s on 2 cores, and a finished command needs
    none of it. The exit handlers still run (logging's, temporary files', multiprocessing's, an engine left
    open), then the standard streams flush. Only when no thread is left that the interpreter would wait for."""
    atexit._run_exitfuncs()  # what the interpreter runs at exit; not in atexit's documented API
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing left to flush to
            stream.flush()
    os._exit(code)
