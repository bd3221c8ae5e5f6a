"""Shell completion scripts for bash, zsh and fish, as `swiftcli --install-completion` (and `swift
--install-completion`) would install them.

The scripts are thin: they ask `swiftcli` itself for candidates at completion time (Typer's protocol), so
they change only when Typer's protocol does. `completions/` keeps generated copies for packagers; regenerate
them with `python -m swiftcli.cli.completions` (a test checks they are current).
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer._completion_shared import get_completion_script

PROG = "swiftcli"
# `swift` is the same app under ms-swift's name; each name needs its own scripts, as each shell completes by name.
PROGS = (PROG, "swift")
SHELLS = ("bash", "zsh", "fish")


def file_name(shell: str, prog: str = PROG) -> str:
    return {"bash": f"{prog}.bash", "zsh": f"_{prog}", "fish": f"{prog}.fish"}[shell]


def completion_script(shell: str, prog: str = PROG) -> str:
    complete_var = f"_{prog.replace('-', '_').upper()}_COMPLETE"
    return get_completion_script(prog_name=prog, complete_var=complete_var, shell=shell).rstrip("\n") + "\n"


def default_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "completions"


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for prog in PROGS:
        for shell in SHELLS:
            path = folder / file_name(shell, prog)
            path.write_text(completion_script(shell, prog), encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else default_dir()
    for path in write_all(folder):
        print(path)


if __name__ == "__main__":
    main()
