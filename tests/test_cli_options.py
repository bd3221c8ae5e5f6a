"""The command line as a newcomer meets it: one name per option in help that fits 80 columns, ms-swift's
spellings and space-separated values, and bad settings refused before any engine starts."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from swiftcli.cli.main import app, expand_multi_values

HEAVY = ("torch", "vllm", "transformers")
COMMANDS = [["infer"], ["chat"], ["deploy"], ["app-ui"], ["export"], ["eval"], ["eval", "compare"], ["models"]]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swiftcli.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_fits_80_columns_with_one_name_per_option(command):
    proc = run_cli(*command, "--help", env={"COLUMNS": "80", "TERM": "dumb"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in proc.stdout
    names = re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", proc.stdout)
    assert not [n for n in names if "_" in n and not n.startswith("--val_dataset")] or command == ["infer"]
    # no option line shows two spellings of one name
    assert not re.search(r"--([a-z-]+)[, ]+--\1", proc.stdout.replace("_", "-"))


def test_usage_lines_show_no_hidden_parameters():
    """infer's hidden catch-all for stray words (it says "questions go in --query") showed as `[]...`."""
    usage = [line.strip() for line in run_cli("infer", "--help", env={"COLUMNS": "80"}).stdout.splitlines()
             if "Usage:" in line]
    assert usage == ["Usage: swiftcli infer [OPTIONS] [PROMPT]"]


def test_root_help_mentions_the_other_spellings_once():
    proc = run_cli("--help", env={"COLUMNS": "80"})
    assert proc.stdout.count("snake_case") == 1 and "space-separated" in proc.stdout


def test_snake_case_and_old_names_still_work():
    result = CliRunner().invoke(app, ["infer", "--infer_backend", "tpu", "--query", "x"])
    assert result.exit_code == 2 and "'tpu' is not one of vllm, pt" in result.output
    result = CliRunner().invoke(app, ["infer", "--model_id_or_path", "/no/such/dir", "--query", "x"])
    assert result.exit_code == 1 and "/no/such/dir" in result.output


def test_space_separated_values_become_repeated_options():
    command = typer.main.get_command(app)
    args = ["eval", "--eval_dataset", "a.jsonl", "b.jsonl", "--eval-limit", "3", "--stop_words", "x", "y"]
    assert expand_multi_values(args, command) == [
        "eval", "--eval-dataset", "a.jsonl", "--eval-dataset", "b.jsonl", "--eval-limit", "3",
        "--stop", "x", "--stop", "y"]
    # a value that looks like a sub-command, a negative number, or an option ends the list; --query takes one
    args = ["infer", "--val_dataset", "a.jsonl", "b.csv", "--val_dataset_sample", "-1", "--query", "q1", "q2"]
    assert expand_multi_values(args, command) == [
        "infer", "--val-dataset", "a.jsonl", "--val-dataset", "b.csv", "--val-dataset-sample", "-1", "--query", "q1",
        "q2"]
    assert expand_multi_values(["eval", "compare", "a", "b"], command) == ["eval", "compare", "a", "b"]


@pytest.mark.parametrize("args, words", [
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--top_p", "5"], "--top-p must be in (0, 1]"),
    (["--top-k", "-7"], "--top-k"),
    (["--max_new_tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--repetition_penalty", "0"], "--repetition-penalty"),
    (["--seed", str(2**70)], "--seed must fit in 64 bits"),
    (["--tensor_parallel_size", "0"], "--tensor-parallel-size must be at least 1"),
    (["--gpu_memory_utilization", "1.5"], "--gpu-memory-utilization"),
    (["--engine_kwargs", "[1]"], "--engine-kwargs must be a JSON object"),
    (["--dtype", "int3"], "unknown dtype"),
])
def test_bad_settings_fail_before_loading(args, words, tmp_path):
    # What the process had imported when it exited: an engine (or its torch) would have been on the way to loading.
    loaded = tmp_path / "loaded.txt"
    probe = ("import atexit, runpy, sys\n"
             f"atexit.register(lambda: open({str(loaded)!r}, 'w').write(' '.join(sorted(HEAVY & set(sys.modules)))))\n"
             "sys.argv = ['swiftcli', *sys.argv[1:]]\n"
             "runpy.run_module('swiftcli.cli', run_name='__main__')\n").replace("HEAVY", repr(set(HEAVY)))
    proc = subprocess.run([sys.executable, "-c", probe, "infer", "--query", "x", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error:") and proc.stdout == ""
    assert loaded.read_text() == "", f"imported before the check: {loaded.read_text()}"


def test_swift_eval_takes_two_space_separated_datasets(deploy_server, tmp_path):
    """ms-swift's `swift eval --eval_dataset a.jsonl b.jsonl`, verbatim: both files are evaluated."""
    import json

    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(
            json.dumps({"query": "What is the capital of France?", "response": "Paris"}) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    proc = run_cli("eval", "--eval_url", deploy_server.base_url, "--eval_dataset", str(tmp_path / "a.jsonl"),
                   str(tmp_path / "b.jsonl"), "--max_new_tokens", "16", "--eval_output_dir", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [d["name"] for d in summary["datasets"]] == ["a", "b"]
