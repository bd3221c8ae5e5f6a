"""Shell completions: the generated scripts in completions/ are current and complete real command lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swiftcli.cli.completions import PROGS, SHELLS, completion_script, default_dir, file_name

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("prog", PROGS)
@pytest.mark.parametrize("shell", SHELLS)
def test_generated_scripts_are_current(shell, prog):
    path = ROOT / "completions" / file_name(shell, prog)
    assert default_dir() == ROOT / "completions"
    assert path.is_file(), "run: python -m swiftcli.cli.completions"
    assert path.read_text(encoding="utf-8") == completion_script(shell, prog), \
        f"{path} is stale: run python -m swiftcli.cli.completions"


def test_regeneration_script_writes_three_per_name(tmp_path):
    out = subprocess.run([sys.executable, "-m", "swiftcli.cli.completions", str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["swiftcli.bash", "_swiftcli", "swiftcli.fish", "swift.bash", "_swift", "swift.fish"])
    assert len(out.splitlines()) == 6


def complete_bash(words: list[str]) -> list[str]:
    """Source the bash script of the name in `words[0]` and ask it to complete `words` (the last word is being
    typed)."""
    prog = words[0]
    script = ROOT / "completions" / file_name("bash", prog)
    words_text = " ".join(f"'{w}'" for w in words)
    code = (f"source {script}; COMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}; "
            f"_{prog}_completion {prog}; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


@pytest.mark.skipif(shutil.which("bash") is None or not (BIN / "swift").exists(),
                    reason="needs bash and the installed swiftcli and swift scripts")
@pytest.mark.parametrize("prog", PROGS)
def test_bash_completes_commands_and_options(prog):
    commands = complete_bash([prog, "ch"])
    assert commands == ["chat", "check"]
    options = complete_bash([prog, "infer", "--val-data"])
    assert "--val-dataset" in options and "--val-dataset-sample" in options


def test_completion_imports_no_heavy_modules():
    code = ("import os, sys; os.environ.update(_SWIFTCLI_COMPLETE='complete_bash', COMP_WORDS='swiftcli infer --m', "
            "COMP_CWORD='2')\nfrom swiftcli.cli.main import app\ntry:\n    app(prog_name='swiftcli')\n"
            "except SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'vllm', 'transformers') if m in sys.modules], file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--max-new-tokens" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.skipif(not (BIN / "swift").exists(), reason="needs the installed swiftcli and swift scripts")
@pytest.mark.parametrize("prog", PROGS)
def test_install_completion_writes_the_same_script(tmp_path, prog):
    env = dict(os.environ, HOME=str(tmp_path), SHELL="/bin/bash")
    # Typer finds the shell among the parent processes: run it from bash (a list, so bash does not exec it).
    proc = subprocess.run(["bash", "-c", '"$0" --install-completion; exit $?', str(BIN / prog)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / ".bash_completions" / f"{prog}.sh"
    assert installed.read_text().strip() == completion_script("bash", prog).strip()
    assert str(installed) in (tmp_path / ".bashrc").read_text()


def test_cli_reference_is_current():
    from swiftcli.cli.reference import default_path, render

    assert default_path() == ROOT / "docs" / "cli.md"
    assert default_path().read_text(encoding="utf-8") == render(), \
        "docs/cli.md is stale: run python -m swiftcli.cli.reference"


def test_every_command_help_ends_with_examples():
    import typer

    from swiftcli.cli.main import app
    from swiftcli.cli.reference import _split_doc

    for name, command in typer.main.get_command(app).commands.items():
        _, examples = _split_doc(command.help or "")
        assert 2 <= len(examples) <= 3, f"`swiftcli {name} --help` should end with 2-3 examples"
        assert all(e.startswith(("swiftcli ", "swift ")) or "| swiftcli" in e for e in examples), examples
