import subprocess
import sys

from typer.testing import CliRunner

from swiftcli.cli.main import app


def test_help_imports_no_heavy_modules():
    code = ("import sys; from swiftcli.cli.main import app; from typer.testing import CliRunner; "
            "CliRunner().invoke(app, ['--help']); "
            "print([m for m in ('torch','vllm','transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_model_type_is_one_line_error():
    result = CliRunner().invoke(app, ["infer", "--model_type", "qwen-7b-chatt", "--query", "x"])
    assert result.exit_code == 1
    assert "unknown model_type" in result.output and "Traceback" not in result.output


def test_bool_option_takes_a_value():
    result = CliRunner().invoke(app, ["infer", "--enforce-eager", "maybe", "--query", "x"])
    assert result.exit_code == 2


def test_infer_query_prints_only_the_answer():
    proc = subprocess.run([sys.executable, "-m", "swiftcli.cli", "infer", "--query", "What is the capital of France?"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Paris" in proc.stdout and len(proc.stdout.strip().splitlines()) == 1
