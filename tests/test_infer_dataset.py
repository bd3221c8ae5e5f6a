"""Dataset files (swiftcli.data) and `swiftcli infer --val_dataset`: formats, order, resume, bad input."""

from __future__ import annotations

import json

import pytest

from swiftcli.data import Sample, read_records, read_samples, to_sample
from swiftcli.errors import InputError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ---- swiftcli.data: fast, engine-free ----


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
