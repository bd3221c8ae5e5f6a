"""The command reference, docs/cli.md, generated from the commands themselves (options, defaults, help text,
examples), so it cannot drift: regenerate with `python -m swiftcli.cli.reference`; a test checks it is current."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

HEADER = """# swiftcli command reference

Generated from the commands' own help by `python -m swiftcli.cli.reference`; do not edit by hand.
`swift` is the same program under ms-swift's name. Every option takes both spellings, `--snake_case` and
`--kebab-case`; options shown with `BOOL` take true or false (`--merge_lora true`); switches (`--verbose`,
`--quiet`, `--debug`) take none and work before or after the command. Results print as `--output json` (`-o json`)
where a command prints results.
"""

_MARKUP = re.compile(r"\[/?[a-z][a-z ]*\]")  # Rich tags such as [b] and [/dim]; never jq's `.[]`


def _plain(text: str) -> str:
    return _MARKUP.sub("", text or "").strip()


def _split_doc(doc: str) -> tuple[str, list[str]]:
    """The description and the example command lines of a command's docstring."""
    text, _, examples = (doc or "").partition("[b]Examples[/b]")
    lines = [_plain(line) for line in examples.splitlines() if line.strip()]
    return " ".join(_plain(text).split()), lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(param: Any) -> str:
    """The default as --help shows it: only where help shows one."""
    default = param.default
    if default is None or param.name in ("help",) or callable(default) or not getattr(param, "show_default", 0):
        return ""
    if isinstance(default, (list, tuple)):
        return "" if not default else ", ".join(map(str, default))
    return f"`{str(default).lower() if isinstance(default, bool) else default}`"


def _metavar(param: Any) -> str:
    from swiftcli.cli.argv import style

    style(param)  # the metavar help shows
    return str(param.metavar or "")


def _description(param: Any) -> str:
    text = _plain(param.help)
    if getattr(param, "envvar", None) and getattr(param, "show_envvar", False):
        text += f" Environment: `{param.envvar}`."
    return text


def command_section(name: str, command: Any) -> str:
    description, examples = _split_doc(command.help or "")
    arguments = [str(p.metavar or p.name.upper()) for p in command.params
                 if getattr(p, "param_type_name", "") == "argument" and not getattr(p, "hidden", False)]
    usage = " ".join([f"swiftcli {name} [OPTIONS]", *arguments])
    out = [f"## swiftcli {name}", "", description, "", "```", usage, "```", ""]
    panels: dict[str, list[Any]] = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option" or param.name == "help":
            continue
        panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(param)
    for panel, params in panels.items():
        out += [f"### {panel}", "", "| Option | Value | Default | Description |", "|---|---|---|---|"]
        for param in params:
            names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
            out.append(f"| {names} | {_cell(_metavar(param))} | {_default(param)} | {_cell(_description(param))} |")
        out.append("")
    if examples:
        out += ["### Examples", "", "```sh", *examples, "```", ""]
    return "\n".join(out)


def render() -> str:
    import typer

    from swiftcli.cli.main import app

    group = typer.main.get_command(app)
    sections = [HEADER]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        sections.append(command_section(name, command))
    return "\n".join(sections).rstrip("\n") + "\n"


def default_path() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    print(path)


if __name__ == "__main__":
    main()
