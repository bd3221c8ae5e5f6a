"""Shell completions: the generated scripts in completions/ are current and complete real command lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swiftcli.cli.completions import FILES, completion_script, default_dir

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("shell", sorted(FILES))
def test_generated_scripts_are_current(shell):
    path = ROOT / "completions" / FILES[shell]
    assert default_dir() == ROOT / "completions"
    assert path.is_file(), "run: python -m swiftcli.cli.completions"
    assert path.read_text(encoding="utf-8") == completion_script(shell), \
        f"{path} is stale: run python -m swiftcli.cli.completions"


def test_regeneration_script_writes_all_three(tmp_path):
    out = subprocess.run([sys.executable, "-m", "swiftcli.cli.completions", str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES.values())
    assert len(out.splitlines()) == 3


def complete_bash(words: list[str]) -> list[str]:
    """Source the bash script and ask it to complete `words` (the last word is being typed)."""
    script = ROOT / "completions" / FILES["bash"]
    words_text = " ".join(f"'{w}'" for w in words)
    code = (f"source {script}; COMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}; "
            f"_swiftcli_completion swiftcli; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


@pytest.mark.skipif(shutil.which("bash") is None or not (BIN / "swiftcli").exists(),
                    reason="needs bash and the installed swiftcli script")
def test_bash_completes_commands_and_options():
    commands = complete_bash(["swiftcli", "ch"])
    assert commands == ["chat", "check"]
    options = complete_bash(["swiftcli", "infer", "--val-data"])
    assert "--val-dataset" in options and "--val-dataset-sample" in options


def test_completion_imports_no_heavy_modules():
    code = ("import os, sys; os.environ.update(_SWIFTCLI_COMPLETE='complete_bash', COMP_WORDS='swiftcli infer --m', "
            "COMP_CWORD='2')\nfrom swiftcli.cli.main import app\ntry:\n    app(prog_name='swiftcli')\n"
            "except SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'vllm', 'transformers') if m in sys.modules], file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--max-new-tokens" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.skipif(not (BIN / "swiftcli").exists(), reason="needs the installed swiftcli script")
def test_install_completion_writes_the_same_script(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), SHELL="/bin/bash")
    # Typer finds the shell among the parent processes: run it from bash (a list, so bash does not exec it).
    proc = subprocess.run(["bash", "-c", '"$0" --install-completion; exit $?', str(BIN / "swiftcli")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / ".bash_completions" / "swiftcli.sh"
    assert installed.read_text().strip() == completion_script("bash").strip()
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
