"""The request log without a server: the writer's rotation and SQLite form, the stream folding, the rating body,
the reader's errors and the ms-swift rows that `swiftcli logs --export` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.data.request_log import RequestLogConfig, RequestLogWriter, log_files, read_log
from swiftcli.errors import InputError, UsageError
from swiftcli.export.request_rows import LogFilter, dpo_rows, load_requests, parse_since, select, sft_rows
from swiftcli.server.request_log import RatingRequest, StreamFold
from swiftcli.server.sse import sse


def _request(i: int, **extra: object) -> dict[str, object]:
    return {"type": "request", "id": f"chatcmpl-{i}", "time": f"2026-12-05T04:{i:02d}:00.000+00:00",
            "route": "chat", "model": "m", "status": "finished",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"q{i}"}],
            "answer": {"text": f"a{i}", "reasoning": None, "tool_calls": []}, "finish_reason": "stop",
            "usage": {"prompt_tokens": 3, "completion_tokens": 2}, "latency_s": 0.1, **extra}


def _write(path: Path, records: list[dict[str, object]], **config: int) -> None:
    writer = RequestLogWriter(RequestLogConfig(str(path), **config))
    for record in records:
        writer.write(record)
    writer.close()


def test_rotation_keeps_the_newest_files_in_order(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    records = [_request(i) for i in range(12)]
    line = len(json.dumps(records[0])) + 1
    _write(path, records, max_bytes=line * 2, keep=2)  # two records a file, three files kept
    assert [p.name for p in log_files(path)] == ["log.2.jsonl", "log.1.jsonl", "log.jsonl"]
    assert not (tmp_path / "log.3.jsonl").exists()
    assert [r["id"] for _, r in read_log(path)] == [f"chatcmpl-{i}" for i in range(6, 12)]


def test_sqlite_log_reads_back_with_ratings(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    _write(path, [_request(1), _request(2), {"type": "rating", "id": "chatcmpl-2", "time": "t", "rating": -1,
                                             "preferred": "better"}])
    requests = load_requests(path)
    assert [r.record["id"] for r in requests] == ["chatcmpl-1", "chatcmpl-2"]
    assert requests[1].score == -1 and requests[1].preferred == "better" and not requests[0].rating


def test_a_corrupt_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(_request(1)) + "\n{not json\n")
    with pytest.raises(InputError, match=r"log.jsonl:2: not a JSON record"):
        list(read_log(path))
    result = CliRunner().invoke(app, ["logs", str(path)])
    assert result.exit_code == 1 and "log.jsonl:2" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["logs", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 1 and "no such request log" in missing.output


def test_a_file_of_another_kind_is_refused() -> None:
    with pytest.raises(UsageError, match="must end in .jsonl, .sqlite or .db"):
        RequestLogConfig("requests.txt")


def test_chat_stream_folds_text_and_tool_calls() -> None:
    fold = StreamFold("chat")
    calls = [{"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": '{"city": '}}]
    for chunk in ({"id": "chatcmpl-9", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
                  {"id": "chatcmpl-9", "choices": [{"index": 0, "delta": {"content": "Let me check."}}]},
                  {"id": "chatcmpl-9", "choices": [{"index": 0, "delta": {"tool_calls": calls}}]},
                  {"id": "chatcmpl-9", "choices": [{"index": 0, "delta": {"tool_calls": [
                      {"index": 0, "function": {"arguments": '"Paris"}'}}]}, "finish_reason": "tool_calls"}]}):
        data = sse(chunk)
        fold.feed(data[:7])  # events may arrive split anywhere
        fold.feed(data[7:])
    fold.feed(b"data: [DONE]\n\n")
    (choice,) = fold.answer.summary()
    assert fold.answer.id == "chatcmpl-9"
    assert choice["text"] == "Let me check." and choice["finish_reason"] == "tool_calls"
    assert choice["tool_calls"] == [{"name": "get_weather", "arguments": '{"city": "Paris"}'}]


def test_messages_stream_folds_blocks() -> None:
    fold = StreamFold("messages")
    for kind, fields in (("message_start", {"message": {"id": "msg_1"}}),
                         ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
                         ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
                         ("message_delta", {"delta": {"stop_reason": "end_turn"}})):
        fold.feed(f"event: {kind}\n".encode() + sse({"type": kind, **fields}))
    (choice,) = fold.answer.summary()
    assert (fold.answer.id, choice["text"], choice["finish_reason"]) == ("msg_1", "Hi", "end_turn")


def test_rating_body() -> None:
    assert RatingRequest.model_validate({"rating": -1, "preferred": "x"}).rating == -1
    for bad in ({}, {"rating": float("nan")}, {"rating": 1, "api_key": "k"}, {"preferred": ""}):
        with pytest.raises(ValidationError):
            RatingRequest.model_validate(bad)


def test_sft_and_dpo_rows() -> None:
    from swiftcli.export.request_rows import LoggedRequest

    good = LoggedRequest(_request(1), "f:1", {"rating": 1})
    bad = LoggedRequest(_request(2), "f:2", {"rating": -1, "preferred": "A better answer."})
    unrated = LoggedRequest(_request(3), "f:3")
    cancelled = LoggedRequest(_request(4, status="cancelled"), "f:4", {"rating": 1})
    completion = LoggedRequest({**_request(5), "route": "completions", "messages": None, "prompt": "x"}, "f:5",
                               {"rating": 1})
    called = LoggedRequest(_request(6, answer={"text": "", "tool_calls": [{"name": "f", "arguments": '{"a": 1}'}]},
                                    tools=[{"type": "function", "function": {"name": "f"}}]), "f:6", {"rating": 2})
    everything = [good, bad, unrated, cancelled, completion, called]
    sft = sft_rows(everything)
    assert sft[0] == {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
                                   {"role": "assistant", "content": "a1"}]}
    assert sft[1]["messages"][-1] == {"role": "assistant", "content": "A better answer."}
    assert sft[2]["messages"][-1] == {"role": "tool_call", "content": '{"name": "f", "arguments": {"a": 1}}'}
    assert sft[2]["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert len(sft) == 3 and len(sft_rows(everything, include_unrated=True)) == 4
    assert dpo_rows(everything) == [{
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q2"},
                     {"role": "assistant", "content": "A better answer."}], "rejected_response": "a2"}]


def test_filters(tmp_path: Path) -> None:
    from swiftcli.export.request_rows import LoggedRequest

    requests = [LoggedRequest(_request(i, model="a" if i % 2 else "b"), f"f:{i}", {"rating": 1} if i == 3 else {})
                for i in range(1, 6)]
    assert [r.record["id"] for r in select(requests, LogFilter(model="a"))] == ["chatcmpl-1", "chatcmpl-3",
                                                                                 "chatcmpl-5"]
    assert [r.record["id"] for r in select(requests, LogFilter(rated=True))] == ["chatcmpl-3"]
    assert [r.record["id"] for r in select(requests, LogFilter(limit=2))] == ["chatcmpl-4", "chatcmpl-5"]
    assert [r.record["id"] for r in select(requests, LogFilter(since="2026-12-05T04:04"))] == ["chatcmpl-4",
                                                                                             "chatcmpl-5"]
    assert parse_since("2h").tzinfo is not None
    with pytest.raises(UsageError):
        LogFilter(since="yesterday")


def test_cli_lists_and_exports(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    _write(path, [_request(1), _request(2), {"type": "rating", "id": "chatcmpl-2", "time": "t", "rating": 1}])
    listed = CliRunner().invoke(app, ["logs", str(path), "--rated", "--output", "json"])
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.stdout)] == ["chatcmpl-2"]
    out = tmp_path / "sft.jsonl"
    exported = CliRunner().invoke(app, ["logs", str(path), "--export", "sft", "--output-file", str(out)])
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line)["messages"][-1]["content"] for line in out.read_text().splitlines()] == ["a2"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    refused = CliRunner().invoke(app, ["logs", str(path), "--export", "kto", "--output-file", str(out)])
    assert refused.exit_code == 2 and "sft or dpo" in refused.output


def test_sqlite_log_rotates_too(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _write(path, [_request(i) for i in range(4)], max_bytes=1, keep=1)  # every record starts a new file
    assert [p.name for p in log_files(path)] == ["log.1.db", "log.db"]
    assert [r["id"] for _, r in read_log(path)] == ["chatcmpl-2", "chatcmpl-3"]


@pytest.mark.parametrize(("args", "says"), [
    (["--log_requests", "requests.txt"], "must end in .jsonl, .sqlite or .db"),
    (["--log_requests", "r.jsonl", "--log_requests_max_bytes", "0"], "at least 1"),
    (["--log_requests", "r.jsonl", "--log_requests_keep", "-1"], "at least 0"),
])
def test_deploy_refuses_a_bad_log_before_loading(tmp_path: Path, args: list[str], says: str) -> None:
    args = [str(tmp_path / a) if a.endswith((".txt", ".jsonl")) else a for a in args]
    result = CliRunner().invoke(app, ["deploy", *args])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
