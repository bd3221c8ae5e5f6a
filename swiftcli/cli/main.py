"""The swiftcli / swift command: one Typer app per sub-command module, joined here; heavy code loads lazily.

ms-swift's command lines run verbatim: option tokens are normalized (snake_case and old names -> the one
kebab-case name, see cli.options), and options that take several values take them space-separated
(`--val_dataset a.jsonl b.jsonl`), which Click alone would read as positional arguments.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from swiftcli import __version__
from swiftcli.cli import output, state
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
from swiftcli.cli.models import models_command
from swiftcli.cli.options import normalize_token
from swiftcli.cli.progress import install as show_download_progress

HELP = (
    "Fast LLM inference and deployment on vLLM: infer, chat, deploy, export, eval, app-ui.\n\n"
    "Options are shown in kebab-case; ms-swift's snake_case spellings (--infer_backend) and names "
    "(--model_id_or_path, --torch_dtype, --stop_words) work too, and options that take several values take them "
    "space-separated (--val_dataset a.jsonl b.jsonl)."
)

class SwiftcliGroup(TyperGroup):
    """The root command: argv is expanded (`--opt a b` -> `--opt a --opt b`) before Click parses it, for
    `swiftcli`, `python -m swiftcli` and CliRunner alike."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_values(list(args), self))


class SwiftcliCommand(TyperCommand):
    """A command whose hidden parameters stay out of its usage line too (infer's catch-all for stray words
    showed as `[]...`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
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
    quiet: Annotated[bool, typer.Option("--quiet", help="Only results and errors.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for known errors too.")] = False,
) -> None:
    """Fast LLM inference and deployment on vLLM."""
    state.set_flags(verbose, quiet)
    output.set_debug(debug)
    show_download_progress()


app.command("infer", cls=SwiftcliCommand, rich_help_panel="Run")(infer_command)
app.command("chat", rich_help_panel="Run")(chat_command)
app.command("models", rich_help_panel="Models")(models_command)
app.add_typer(eval_app, name="eval", rich_help_panel="Run")
app.command("deploy", rich_help_panel="Run")(deploy_command)
app.command("app-ui", rich_help_panel="Run")(app_ui_command)
app.command("export", rich_help_panel="Models")(export_command)
app.command("check", rich_help_panel="Models")(check_command)
app.command("download", rich_help_panel="Models")(download_command)
app.command("pull", rich_help_panel="Models", hidden=True)(download_command)
app.command("rm", rich_help_panel="Models")(rm_command)
app.command("env", rich_help_panel="Models")(env_command)


def _option_table(command: Any) -> tuple[set[str], set[str]]:
    """(options that repeat, options that take a value) of one command, as normalized `--name` tokens."""
    repeat: set[str] = set()
    valued: set[str] = set()
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") != "option" or getattr(param, "is_flag", False):
            continue
        names = {_normal(opt) for opt in (*param.opts, *param.secondary_opts)}
        valued |= names
        if getattr(param, "multiple", False):
            repeat |= names
    return repeat, valued


def _normal(token: str) -> str:
    if token.startswith("--"):
        return "--" + normalize_token(token[2:])
    return token


def expand_multi_values(args: list[str], command: Any) -> list[str]:
    """`--opt a b` -> `--opt a --opt b` for options that repeat; the rest of argv as it is."""
    out: list[str] = []
    repeat, valued = _option_table(command)
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":
            return out + args[i - 1:]
        name = _normal(token.split("=", 1)[0])
        subcommands = getattr(command, "commands", {})
        if token.startswith("-") and "=" not in token and name in repeat:
            out += [token, *args[i:i + 1]]
            i += 1
            while i < len(args) and not args[i].startswith("-") and normalize_token(args[i]) not in subcommands:
                out += [token, args[i]]
                i += 1
        elif token.startswith("-") and "=" not in token and name in valued:
            out += [token, *args[i:i + 1]]
            i += 1
        else:
            out.append(token)
            if not token.startswith("-") and normalize_token(token) in subcommands:
                command = subcommands[normalize_token(token)]
                repeat, valued = _option_table(command)
    return out


def main() -> None:
    # `swift` is the same app under ms-swift's name: usage lines and shell completion answer to the name typed.
    app(prog_name="swift" if os.path.basename(sys.argv[0]) == "swift" else "swiftcli")
