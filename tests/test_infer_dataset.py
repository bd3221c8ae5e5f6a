"""Dataset files (swiftcli.data.records) and `swiftcli infer --val_dataset`: formats, order, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.data.records import Sample, read_records, read_samples, to_sample
from swiftcli.errors import InputError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ---- swiftcli.data.records: fast, engine-free ----


def test_jsonl_records_carry_file_and_line(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"query": "a"}\n\n{"query": "b", "response": "c"}\n')
    records = list(read_records(path))
    assert [(r.path, r.line, r.data["query"]) for r in records] == [(path, 1, "a"), (path, 3, "b")]


def test_json_array_lines_point_at_each_object(tmp_path):
    path = write(tmp_path / "a.json", '[\n  {"query": "a"},\n  {"query": "b",\n   "response": "c"}\n]\n')
    assert [r.line for r in read_records(path)] == [2, 3]


def test_csv_rows_with_quoted_newlines_and_json_history(tmp_path):
    path = write(tmp_path / "a.csv", 'query,response,history\n"two\nlines",r,"[[""q"",""a""]]"\nq2,,\n')
    records = list(read_records(path))
    assert [r.line for r in records] == [2, 4]
    assert to_sample(records[0].data) == Sample("two\nlines", "r", None, [["q", "a"]])
    assert to_sample(records[1].data) == Sample("q2")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"query": "a"}\n{"query": \n', "bad.jsonl:2"),
        ('{"query": "a"}\n["query"]\n', "bad.jsonl:2"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, text, where):
    path = write(tmp_path / "bad.jsonl", text)
    with pytest.raises(InputError) as info:
        list(read_records(path))
    assert where in info.value.message


def test_malformed_json_and_csv_name_the_line(tmp_path):
    with pytest.raises(InputError, match=r"bad\.json:3"):
        list(read_records(write(tmp_path / "bad.json", '[\n {"query": "a"},\n {"query" "b"}\n]')))
    with pytest.raises(InputError, match=r"bad\.csv:3: 3 fields"):
        list(read_records(write(tmp_path / "bad.csv", "query,response\na,b\nc,d,e\n")))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list(read_records(tmp_path / "nope.jsonl"))
    with pytest.raises(InputError, match="unknown dataset format"):
        list(read_records(write(tmp_path / "a.txt", "x")))


def test_to_sample_columns_messages_alpaca():
    assert to_sample({"query": "q", "response": "r", "system": "s", "history": [["a", "b"]]}) == Sample(
        "q", "r", "s", [["a", "b"]])
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "r1"},
                {"role": "user", "content": [{"type": "text", "text": "q2"}]}]
    assert to_sample({"messages": messages}) == Sample("q2", None, "s", [["q1", "r1"]])
    assert to_sample({"messages": [*messages, {"role": "assistant", "content": "r2"}]}).response == "r2"
    assert to_sample({"instruction": "Translate", "input": "chat", "output": "cat"}) == Sample(
        "Translate\nchat", "cat")
    assert to_sample({"instruction": "Say hi", "input": ""}) == Sample("Say hi")


@pytest.mark.parametrize(
    "row",
    [{"response": "r"}, {"query": ""}, {"messages": [{"role": "assistant", "content": "x"}]},
     {"query": "q", "history": [["only one"]]}, {"query": ["q"]}],
)
def test_bad_rows_raise_input_error(row):
    with pytest.raises(InputError):
        to_sample(row)


def test_read_samples_locates_or_skips_bad_rows(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"query": "a"}\n{"response": "no query"}\n{"query": "c"}\n')
    with pytest.raises(InputError, match=r"a\.jsonl:2: the row has no query"):
        list(read_samples([path]))
    skipped = []
    got = list(read_samples([path], skip_bad_rows=True, on_skip=lambda r, e: skipped.append(r.line)))
    assert [s.query for _, s in got] == ["a", "c"] and skipped == [2]


def test_sample_is_seeded_and_keeps_file_order(tmp_path):
    from swiftcli.data.runs import load_rows

    path = write(tmp_path / "a.jsonl", "".join(json.dumps({"query": f"q{i}"}) + "\n" for i in range(10)))
    picked = [r.record.line for r in load_rows([path], 4, seed=1)]
    assert len(picked) == 4 and picked == sorted(picked)
    assert picked == [r.record.line for r in load_rows([path], 4, seed=1)]
    assert len(load_rows([path], -1)) == len(load_rows([path], 50)) == 10


# ---- the CLI without an engine: bad input fails before start-up ----


def test_cli_bad_input_is_a_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from swiftcli.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["infer", "--val_dataset", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2 and "missing.jsonl does not exist" in result.stderr
    bad = write(tmp_path / "rows.jsonl", '{"query": "a"}\n{"response": "no query"}\n')
    result = runner.invoke(app, ["infer", "--val_dataset", str(bad)])
    assert result.exit_code == 1 and "rows.jsonl:2: the row has no query" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["infer", "--val_dataset", str(bad), "--query", "x"])
    assert result.exit_code == 2
    # ms-swift's `--val_dataset a b`: every file is read (the bad one fails with its line).
    good = write(tmp_path / "good.jsonl", '{"query": "a"}\n')
    result = runner.invoke(app, ["infer", "--val_dataset", str(good), str(bad)])
    assert result.exit_code == 1 and "rows.jsonl:2" in result.stderr
    result = runner.invoke(app, ["infer", "What", "is", "2+2?"])  # unquoted: refused with the quoted command
    assert result.exit_code == 2 and 'swiftcli infer "What is 2+2?"' in result.stderr
    result = runner.invoke(app, ["infer", "--val_dataset", str(bad), "--result_file", "a", "--result_dir", "b"])
    assert result.exit_code == 2


# ---- on the real engine ----

ROOT = Path(__file__).resolve().parents[1]
FRANCE = "What is the capital of France?"
SHORT = [FRANCE, "What is the capital of Germany?", "What is 2+2?"]
LONG = [f"Write a very long story about a {animal} who learns to {skill}."
        for animal in ("dragon", "cat", "fox", "whale") for skill in ("read", "sing", "fly")]


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path, monkeypatch, request):
    """A run killed with SIGKILL leaves a valid prefix; the same command resumes it without duplicates.

    Runs before the session engine starts (file order), so one engine runs at a time.
    """
    rows = write(tmp_path / "rows.jsonl", "".join(json.dumps({"query": q, "response": str(i)}) + "\n"
                                                  for i, q in enumerate(SHORT + LONG)))
    out = tmp_path / "out.jsonl"
    args = ["infer", "--val_dataset", str(rows), "--result_file", str(out), "--max_new_tokens", "64"]
    from server_utils import command_env

    env = command_env(VLLM_LOGGING_LEVEL="ERROR")
    proc = subprocess.Popen([sys.executable, "-m", "swiftcli.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(lines(out)) >= len(SHORT):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the engine process too
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        proc.stderr.close()
    before = lines(out)
    assert len(SHORT) <= len(before) < len(SHORT) + len(LONG)
    assert [json.loads(line)["query"] for line in before] == (SHORT + LONG)[: len(before)]

    request.getfixturevalue("lend_session_engine")  # only now: the first run above must start nothing
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"Resuming {out}: {len(before)} of 15 rows" in result.stderr
    after = lines(out)
    assert after[: len(before)] == before
    results = [json.loads(line) for line in after]
    assert [r["query"] for r in results] == SHORT + LONG
    assert [r["label"] for r in results] == [str(i) for i in range(15)]
    assert "Paris" in results[0]["response"] and all(r["response"] for r in results)


def test_formats_order_and_summary(lend_session_engine, tmp_path):
    messages = [{"role": "system", "content": "You are a geography teacher."},
                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! Ask me anything."},
                {"role": "user", "content": FRANCE}, {"role": "assistant", "content": "Paris."}]
    a = write(tmp_path / "a.jsonl", "\n".join([
        json.dumps({"query": FRANCE, "response": "Paris"}),
        json.dumps({"messages": messages}),
        json.dumps({"response": "a row without a query"}),
    ]) + "\n")
    b = write(tmp_path / "b.json", json.dumps([{"instruction": "Answer briefly.", "input": "What is 2+2?",
                                                "output": "4"}]))
    c = write(tmp_path / "c.csv", 'query,response\n"What is the capital of Germany?",Berlin\n')
    out = tmp_path / "res" / "out.jsonl"
    result = CliRunner().invoke(app, ["infer", "--val_dataset", str(a), "--val_dataset", str(b), "--val_dataset",
                                      str(c), "--skip_bad_rows", "true", "--result_file", str(out),
                                      "--max_new_tokens", "24", "--output", "json"])
    assert result.exit_code == 0, result.output
    assert "a.jsonl:3: the row has no query" in result.stderr
    rows = [json.loads(line) for line in lines(out)]
    assert [r["query"] for r in rows] == [FRANCE, FRANCE, "Answer briefly.\nWhat is 2+2?",
                                          "What is the capital of Germany?"]
    assert [r["label"] for r in rows] == ["Paris", "Paris.", "4", "Berlin"]
    assert rows[1]["system"] == "You are a geography teacher."
    assert rows[1]["history"] == [["Hi", "Hello! Ask me anything."]]
    assert set(rows[0]) == {"system", "query", "response", "label", "history"}
    assert "Paris" in rows[0]["response"]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 4 and summary["output_tokens"] > 0 and summary["prompt_tokens"] > 0
    assert summary["result_file"] == str(out) and summary["output_tokens_per_second"] > 0
    assert "4 rows answered" in result.stderr and "output tok/s" in result.stderr and str(out) in result.stderr


def test_results_on_stdout_without_a_result_file(lend_session_engine, tmp_path):
    rows = write(tmp_path / "rows.csv", "query\n" + "\n".join(SHORT) + "\n")
    result = CliRunner().invoke(app, ["infer", "--val_dataset", str(rows), "--max_new_tokens", "16"])
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["query"] for r in printed] == SHORT and "Paris" in printed[0]["response"]


def test_interrupt_then_resume_past_a_torn_line(lend_session_engine, tmp_path, monkeypatch):
    rows = write(tmp_path / "rows.jsonl", "".join(json.dumps({"query": q}) + "\n" for q in SHORT * 2))
    out = tmp_path / "out.jsonl"
    args = ["infer", "--val_dataset", str(rows), "--result_file", str(out), "--max_new_tokens", "16"]
    import swiftcli.data.runs as dataset_infer

    real_row, calls = dataset_infer.result_row, []

    def interrupting_row(sample, response):
        calls.append(sample)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a run
        return real_row(sample, response)

    monkeypatch.setattr(dataset_infer, "result_row", interrupting_row)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130 and "run the same command again to resume" in result.stderr
    written = lines(out)
    assert all(json.loads(line) for line in written) and len(written) <= 2
    monkeypatch.setattr(dataset_infer, "result_row", real_row)
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"system": null, "query": "What is')  # a line torn by a crash
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    results = [json.loads(line) for line in lines(out)]
    assert [r["query"] for r in results] == SHORT * 2
    assert lines(out)[: len(written)] == written
    # Rerunning a finished file answers nothing; another dataset on it is refused.
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "0 rows answered (6 done before)" in result.stderr
    other = write(tmp_path / "other.jsonl", json.dumps({"query": "Something else"}) + "\n")
    result = CliRunner().invoke(app, ["infer", "--val_dataset", str(other), "--result_file", str(out)])
    assert result.exit_code == 1 and "the dataset rows changed" in result.stderr


def full_checkpoint(tmp_path, spec, args):
    """A full-weights checkpoint dir (links to the embedded model) with ms-swift's sft_args.json."""
    ckpt = tmp_path / "output" / "checkpoint-10"
    ckpt.mkdir(parents=True)
    for item in spec.model_dir.iterdir():
        (ckpt / item.name).symlink_to(item)
    (ckpt / "sft_args.json").write_text(json.dumps({"model_type": "smollm2-135m-instruct", **args}))
    return ckpt


def test_load_dataset_config_takes_the_validation_split(lend_session_engine, embedded_spec, tmp_path):
    queries = [f"What is {i} plus {i}?" for i in range(8)]
    train = write(tmp_path / "train.jsonl", "".join(json.dumps({"query": q, "response": str(2 * i)}) + "\n"
                                                    for i, q in enumerate(queries)))
    ckpt = full_checkpoint(tmp_path, embedded_spec, {"dataset": [f"{train}#100"], "dataset_test_ratio": 0.25,
                                                     "dataset_seed": 7})
    picked = []
    for name in ("a.jsonl", "b.jsonl"):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["infer", "--ckpt_dir", str(ckpt), "--load_dataset_config", "true",
                                          "--result_file", str(out), "--max_new_tokens", "8"])
        assert result.exit_code == 0, result.output
        picked.append([json.loads(line)["query"] for line in lines(out)])
    assert picked[0] == picked[1] and len(picked[0]) == 2  # ceil(0.25 * 8), the same rows each time
    assert picked[0] == [q for q in queries if q in picked[0]]  # in file order


def test_load_dataset_config_errors(embedded_spec, tmp_path):
    ckpt = full_checkpoint(tmp_path, embedded_spec, {"dataset": ["AI-ModelScope/alpaca-gpt4-data-en"]})
    result = CliRunner().invoke(app, ["infer", "--ckpt_dir", str(ckpt), "--load_dataset_config", "true"])
    assert result.exit_code == 1 and "hub dataset" in result.stderr and "--val-dataset" in result.stderr
    result = CliRunner().invoke(app, ["infer", "--load_dataset_config", "true"])
    assert result.exit_code == 2 and "--ckpt-dir" in result.stderr
