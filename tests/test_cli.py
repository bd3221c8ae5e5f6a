import subprocess
import sys

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app


def test_help_imports_no_heavy_modules():
    code = ("import sys; from swiftcli.cli.main import app; from typer.testing import CliRunner; "
            "CliRunner().invoke(app, ['--help']); "
            "print([m for m in ('torch','vllm','transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_names_survive_imports_of_every_subpackage():
    """`from swiftcli import inference` is the ms-swift function even after the whole package was imported: no
    subpackage or module may share a public name (importing it would replace the export on the package)."""
    code = ("import importlib, pkgutil, swiftcli\n"
            "for m in pkgutil.walk_packages(swiftcli.__path__, 'swiftcli.'):\n"
            "    importlib.import_module(m.name)\n"
            "bad = [n for n in swiftcli.__all__ if type(getattr(swiftcli, n)).__name__ == 'module']\n"
            "from swiftcli import inference, inference_stream\n"
            "print(bad, callable(inference), callable(inference_stream))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "[] True True"


def test_unknown_model_type_is_one_line_error():
    result = CliRunner().invoke(app, ["infer", "--model_type", "qwen-7b-chatt", "--query", "x"])
    assert result.exit_code == 1
    assert "unknown model_type" in result.output and "Traceback" not in result.output


def test_bool_option_takes_a_value():
    result = CliRunner().invoke(app, ["infer", "--enforce-eager", "maybe", "--query", "x"])
    assert result.exit_code == 2


@pytest.mark.slow
def test_infer_query_prints_only_the_answer(tmp_path):
    """A newcomer's first command, without a terminal: the answer alone on stdout, at most 2 lines on stderr,
    and the engine's chatter in the log file under $SWIFTCLI_HOME/logs."""
    import os
    from pathlib import Path

    home = Path(os.environ.get("SWIFTCLI_HOME") or os.path.expanduser("~/.cache/swiftcli"))
    command = [sys.executable, "-m", "swiftcli.cli", "infer", "--query", "What is the capital of France?"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    assert stdout == "The capital of France is Paris.\n"
    assert len(stderr.splitlines()) <= 2, stderr
    (log,) = (home / "logs").glob(f"infer-*-{proc.pid}.log")
    text = log.read_text(encoding="utf-8")
    assert "EngineCore" in text or "vllm" in text.lower()


@pytest.mark.slow
def test_verbose_shows_engine_logs():
    import re

    proc = subprocess.run([sys.executable, "-m", "swiftcli.cli", "-v", "infer", "--max_new_tokens", "4",
                           "--query", "Hi"],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.splitlines()) == 1
    # vLLM's own log lines (`WARNING 12-07 05:26:37 [cpu_worker.py:114] ...`), on stderr
    assert re.search(r"[A-Z]+ \d\d-\d\d [\d:]+ \[\w+\.py:\d+\]", proc.stderr), proc.stderr[-2000:]


@pytest.mark.parametrize("args", [["models"], ["models", "--json"]])
def test_output_into_a_closed_pipe_exits_quietly(args):
    """`swiftcli models | head -1`: the reader goes away; exit 1 (Python's advice for EPIPE) without a traceback
    or an 'Exception ignored' at exit."""
    proc = subprocess.Popen([sys.executable, "-m", "swiftcli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1 and err == "", err
