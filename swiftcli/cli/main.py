"""The swiftcli / swift command: one Typer app per sub-command module, imported here, heavy code imported lazily."""

from __future__ import annotations

from typing import Annotated

import typer

from swiftcli import __version__
from swiftcli.cli import errors, state
from swiftcli.cli.app_ui import app_ui_command
from swiftcli.cli.chat import chat_command
from swiftcli.cli.check import check_command
from swiftcli.cli.deploy import deploy_command
from swiftcli.cli.eval import eval_app
from swiftcli.cli.export import export_command
from swiftcli.cli.infer import infer_command
from swiftcli.cli.models import models_command

app = typer.Typer(
    name="swiftcli",
    help="Fast LLM inference and deployment on vLLM: infer, chat, deploy, export, eval, app-ui.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"swiftcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show engine logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Only results and errors.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for known errors too.")] = False,
) -> None:
    """Fast LLM inference and deployment on vLLM."""
    state.set_flags(verbose, quiet)
    errors.set_debug(debug)


app.command("infer", rich_help_panel="Run")(infer_command)
app.command("chat", rich_help_panel="Run")(chat_command)
app.command("models", rich_help_panel="Models")(models_command)
app.add_typer(eval_app, name="eval", rich_help_panel="Run")
app.command("deploy", rich_help_panel="Run")(deploy_command)
app.command("app-ui", rich_help_panel="Run")(app_ui_command)
app.command("export", rich_help_panel="Models")(export_command)
app.command("check", rich_help_panel="Models")(check_command)


def main() -> None:
    app()
