"""Dataset runs that never mix or lose results: the run fingerprint, the result-file lock, line endings that
are text (U+2028, U+2029, U+0085), torn versus complete last lines, and rows that cannot be encoded."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.data.records import read_records, read_samples
from swiftcli.data.runs import ResultFile, Row, result_row
from swiftcli.errors import InputError

SEPARATORS = "a\u2028b\u2029c\u0085d"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def rows_of(path):
    return [Row(r, s) for r, s in read_samples([path])]


FINGERPRINT = {"model": {"type": "m", "dir": "/m"}, "adapters": [], "template": "t", "system": None,
               "backend": "vllm", "dtype": None, "generation": {"temperature": 0.0}, "dataset": "h1"}


# ---- engine-free


def test_jsonl_and_csv_keep_unicode_line_separators_inside_rows(tmp_path):
    jsonl = write(tmp_path / "a.jsonl", json.dumps({"query": SEPARATORS}, ensure_ascii=False) + "\r\n"
                  + json.dumps({"query": "second"}) + "\n")
    assert [r.data["query"] for r in read_records(jsonl)] == [SEPARATORS, "second"]
    assert [r.line for r in read_records(jsonl)] == [1, 2]
    csv = write(tmp_path / "a.csv", f"query\n{SEPARATORS}\nsecond\n")
    assert [r.data["query"] for r in read_records(csv)] == [SEPARATORS, "second"]


def test_lone_surrogate_rows_are_bad_rows(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"query": "fine"}\n{"query": "bad \\ud800"}\n{"query": "also fine"}\n')
    with pytest.raises(InputError, match=r"a.jsonl:2: the row holds a lone surrogate \(U\+D800\)"):
        list(read_samples([path]))
    skipped = []
    kept = list(read_samples([path], True, lambda record, error: skipped.append(record.line)))
    assert [s.query for _, s in kept] == ["fine", "also fine"] and skipped == [2]


def _finish(path, rows, fingerprint, count=None):
    out = ResultFile(path, fingerprint)
    done = out.resume(rows)
    out.open()
    for i in range(done, count if count is not None else len(rows)):
        out.add(i, result_row(rows[i].sample, f"answer {i}"))
    out.close()
    return done


def test_resume_matches_by_position_and_content_with_duplicates(tmp_path):
    data = write(tmp_path / "rows.jsonl", "".join(json.dumps({"query": q}) + "\n" for q in ["x", "x", "y", "x"]))
    rows = rows_of(data)
    out = tmp_path / "out.jsonl"
    assert _finish(out, rows, FINGERPRINT, 2) == 0
    assert _finish(out, rows, FINGERPRINT) == 2
    assert [json.loads(line)["response"] for line in out.read_text().split("\n") if line] == [
        f"answer {i}" for i in range(4)]
    reordered = rows_of(write(tmp_path / "re.jsonl", "".join(json.dumps({"query": q}) + "\n"
                                                              for q in ["x", "y", "x", "x"])))
    with pytest.raises(InputError, match="line 2 does not match"):
        ResultFile(out, FINGERPRINT).resume(reordered)


def test_a_changed_fingerprint_is_refused_naming_what_changed(tmp_path):
    rows = rows_of(write(tmp_path / "rows.jsonl", '{"query": "q1"}\n{"query": "q2"}\n'))
    out = tmp_path / "out.jsonl"
    _finish(out, rows, FINGERPRINT, 1)
    other = {**FINGERPRINT, "system": "Be brief.", "generation": {"temperature": 0.7}}
    with pytest.raises(InputError) as info:
        ResultFile(out, other).resume(rows)
    assert "the system prompt, the generation settings changed" in info.value.message
    assert "--overwrite" in info.value.hint
    # --overwrite starts over and records the new run.
    fresh = ResultFile(out, other, overwrite=True)
    assert fresh.resume(rows) == 0
    fresh.open()
    fresh.close()
    assert out.read_text() == ""
    assert json.loads((tmp_path / "out.jsonl.run.json").read_text())["system"] == "Be brief."
    # Results without any record of their run are not trusted either.
    (tmp_path / "out.jsonl.run.json").unlink()
    write(out, json.dumps(result_row(rows[0].sample, "old")) + "\n")
    with pytest.raises(InputError, match="no record of the run"):
        ResultFile(out, FINGERPRINT).resume(rows)


def test_only_a_torn_last_line_is_dropped(tmp_path):
    rows = rows_of(write(tmp_path / "rows.jsonl", "".join(json.dumps({"query": f"q{i}"}) + "\n" for i in range(3))))
    out = tmp_path / "out.jsonl"
    _finish(out, rows, FINGERPRINT, 2)
    text = out.read_text()
    write(out, text.rstrip("\n"))  # a complete last line without its newline: kept
    out_file = ResultFile(out, FINGERPRINT)
    assert out_file.resume(rows) == 2
    assert out.read_text() == text.rstrip("\n"), "nothing changes on disk before the run starts"
    out_file.open()
    out_file.add(2, result_row(rows[2].sample, "answer 2"))
    out_file.close()
    assert [json.loads(line)["query"] for line in out.read_text().splitlines()] == ["q0", "q1", "q2"]
    write(out, text + '{"system": null, "query": "q')  # torn: dropped
    out_file = ResultFile(out, FINGERPRINT)
    assert out_file.resume(rows) == 2
    out_file.open()
    out_file.close()
    assert out.read_text() == text
    # A bad complete line is refused before anything is truncated.
    write(out, text + "not json\n" + '{"query": "q')
    with pytest.raises(InputError, match="out.jsonl:3: not a result line"):
        ResultFile(out, FINGERPRINT).resume(rows)
    assert out.read_text().endswith('{"query": "q')


def test_result_rows_with_separators_and_surrogates_round_trip(tmp_path):
    rows = rows_of(write(tmp_path / "rows.jsonl", json.dumps({"query": SEPARATORS}, ensure_ascii=False) + "\n"
                         + json.dumps({"query": "q2"}) + "\n"))
    out = tmp_path / "out.jsonl"
    results = ResultFile(out, FINGERPRINT)
    results.resume(rows)
    results.open()
    results.add(0, {**result_row(rows[0].sample, SEPARATORS), "error": "bad \ud800"})
    results.close()
    assert ResultFile(out, FINGERPRINT).resume(rows) == 1
    assert json.loads(out.read_text(encoding="utf-8"))["response"] == SEPARATORS


def test_result_file_that_is_an_input_and_a_locked_one_are_refused(tmp_path):
    data = write(tmp_path / "rows.jsonl", '{"query": "q"}\n')
    rows = rows_of(data)
    with pytest.raises(InputError, match="is one of the dataset files"):
        ResultFile(data, FINGERPRINT, inputs=[str(tmp_path / "." / "rows.jsonl")]).resume(rows)
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom filelock import FileLock\n"
                               "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
                               "time.sleep(60)", str(out) + ".lock"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="another process is writing"):
            ResultFile(out, FINGERPRINT).resume(rows)
    finally:
        holder.kill()
        holder.wait(10)
    time.sleep(0.1)
    assert ResultFile(out, FINGERPRINT).resume(rows) == 0  # the lock died with its holder


def test_cli_refuses_input_as_result_file_before_loading(tmp_path):
    data = write(tmp_path / "rows.jsonl", '{"query": "q"}\n')
    result = CliRunner().invoke(app, ["infer", "--val_dataset", str(data), "--result_file", str(data)])
    assert result.exit_code == 1 and "is one of the dataset files" in result.stderr
    assert "Traceback" not in result.output


# ---- on the real engine


def test_cli_rerun_with_other_settings_is_refused_and_overwrite_starts_over(lend_session_engine, tmp_path):
    data = write(tmp_path / "rows.jsonl", "".join(json.dumps({"query": q}, ensure_ascii=False) + "\n" for q in [
        "What is the capital of France?", "What is the capital of France?", f"Repeat: {SEPARATORS}"])
        + '{"query": "bad \\udc00 row"}\n')
    out = tmp_path / "out.jsonl"
    base = ["infer", "--val_dataset", str(data), "--result_file", str(out), "--max_new_tokens", "8"]
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 1 and "rows.jsonl:4: the row holds a lone surrogate" in result.stderr
    assert not out.exists()
    result = CliRunner().invoke(app, [*base, "--skip_bad_rows", "true"])
    assert result.exit_code == 0, result.output
    first = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert [r["query"] for r in first][2] == f"Repeat: {SEPARATORS}" and len(first) == 3
    assert first[0]["response"] == first[1]["response"] and "Paris" in first[0]["response"]
    for extra, what in ((["--system", "Answer in French."], "the system prompt"),
                        (["--max_new_tokens", "16"], "the generation settings")):
        result = CliRunner().invoke(app, [*base, "--skip_bad_rows", "true", *extra])
        assert result.exit_code == 1, result.output
        assert f"holds the results of another run: {what} changed" in result.stderr
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line] == first
    result = CliRunner().invoke(app, [*base, "--skip_bad_rows", "true", "--max_new_tokens", "4", "--overwrite",
                                      "true"])
    assert result.exit_code == 0, result.output
    again = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert len(again) == 3 and again[0]["response"] != first[0]["response"]
    # The same settings resume (nothing left to do).
    result = CliRunner().invoke(app, [*base, "--skip_bad_rows", "true", "--max_new_tokens", "4"])
    assert result.exit_code == 0 and "0 rows answered (3 done before)" in result.stderr
