"""Shell completion of option values (model types, backends, dtypes, choices) for bash, zsh and fish, through the
protocol the scripts in completions/ speak, and `--install-completion SHELL` installing that shell's script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from swiftcli.cli.completions import completion_script

BIN = Path(sys.executable).parent
needs_script = pytest.mark.skipif(not (BIN / "swiftcli").exists(), reason="needs the installed swiftcli script")


def complete(shell: str, words: str) -> list[str]:
    """What `swiftcli` answers the `shell` script for the command line `words` (its last word being typed)."""
    env = dict(os.environ, _SWIFTCLI_COMPLETE=f"complete_{shell}", _TYPER_COMPLETE_ARGS=words)
    if shell == "bash":
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    if shell == "fish":
        env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    proc = subprocess.run([str(BIN / "swiftcli")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@needs_script
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
@pytest.mark.parametrize("words, expected", [
    ("swiftcli infer --model-type smol", "smollm2-135m-instruct"),
    ("swiftcli infer --infer-backend ", "vllm"),
    ("swiftcli deploy --dtype bf", "bf16"),
    ("swiftcli chat --template-type qwen3", "qwen3"),
    ("swiftcli export --quant-method a", "awq"),
    ("swiftcli models --output j", "json"),
])
def test_option_values_complete(shell, words, expected):
    answers = complete(shell, words)
    assert any(expected in answer for answer in answers), answers


@needs_script
@pytest.mark.parametrize("shell, path", [("zsh", ".zfunc/_swiftcli"),
                                         ("fish", ".config/fish/completions/swiftcli.fish"),
                                         ("bash", ".bash_completions/swiftcli.sh")])
def test_install_completion_installs_the_named_shell(tmp_path, shell, path):
    """`--install-completion zsh` from a bash process installs zsh's script, not the running shell's."""
    env = dict(os.environ, HOME=str(tmp_path), SHELL="/bin/bash")
    proc = subprocess.run(["bash", "-c", f'"$0" --install-completion {shell}', str(BIN / "swiftcli")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{shell} completion installed" in proc.stderr
    assert (tmp_path / path).read_text().strip() == completion_script(shell).strip()
