"""A request log (`deploy --log_requests`) read back: requests with their ratings, filtered, and turned into
ms-swift training rows.

- sft: `{"messages": [system, user, assistant, ...]}` for each finished chat-shaped request (chat, responses,
  messages routes) whose latest rating is above 0, or that has a `preferred` answer (which then is the
  assistant's turn); `include_unrated` adds the finished requests nobody rated. Tool calls become ms-swift's
  `tool_call` / `tool_response` turns, and the tools offered its `tools` column.
- dpo: ms-swift's RLHF row `{"messages": [..., {"role": "assistant", "content": PREFERRED}],
  "rejected_response": SERVED}` for each finished chat-shaped request with a `preferred` answer that differs from
  the one served, whatever its rating.

Completions (a raw prompt, no chat turns) and cancelled or failed requests are never exported.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from swiftcli.data.request_log import read_log
from swiftcli.errors import InputError, UsageError

CHAT_ROUTES = ("chat", "responses", "messages")
EXPORTS = ("sft", "dpo")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass
class LoggedRequest:
    """A request record, where it is, and what its ratings say (the latest value of each field)."""

    record: dict[str, Any]
    where: str
    rating: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        value = self.rating.get("rating")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def preferred(self) -> str | None:
        value = self.rating.get("preferred")
        return value if isinstance(value, str) and value else None

    def as_dict(self) -> dict[str, Any]:
        return {**self.record, "rating": self.rating or None}


@dataclass(frozen=True)
class LogFilter:
    """Which requests to keep: by model id, time (`since`: ISO time or `30m`, `2h`, `7d` ago), rated only, and
    at most the newest `limit`."""

    model: str | None = None
    since: str | None = None
    rated: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1, not {self.limit}")
        if self.since is not None:
            parse_since(self.since)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2026-12-05`, `2026-12-05T04:00:00` (UTC unless it says otherwise) or a span ago: `30m`, `2h`, `7d`."""
    match = _RELATIVE.match(text.strip())
    if match:
        span = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        return (now or datetime.now(timezone.utc)) - span
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r} is neither an ISO time nor a span like 30m, 2h, 7d",
                         "e.g. --since 2026-12-05T04:00 or --since 2h") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def load_requests(path: str | Path) -> list[LoggedRequest]:
    """The log's requests in order, each with its ratings merged (a rating of a request no longer in the log,
    rotated away, has nothing to attach to and is left out)."""
    requests: dict[str, LoggedRequest] = {}
    for where, record in read_log(path):
        if record["type"] == "request":
            requests[record["id"]] = LoggedRequest(record, where)
        elif record["id"] in requests:
            fields = {k: v for k, v in record.items() if k not in ("type", "id")}
            requests[record["id"]].rating.update(fields)
    return list(requests.values())


def select(requests: Iterable[LoggedRequest], wanted: LogFilter) -> list[LoggedRequest]:
    since = parse_since(wanted.since) if wanted.since else None
    kept = []
    for request in requests:
        record = request.record
        if wanted.model is not None and record.get("model") != wanted.model:
            continue
        if wanted.rated and not request.rating:
            continue
        if since is not None and _time(request) < since:
            continue
        kept.append(request)
    return kept[-wanted.limit:] if wanted.limit else kept


def _time(request: LoggedRequest) -> datetime:
    try:
        moment = datetime.fromisoformat(str(request.record.get("time")))
    except ValueError:
        raise InputError(f"{request.where}: time {request.record.get('time')!r} is not an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _exportable(request: LoggedRequest) -> bool:
    record = request.record
    return record.get("status") == "finished" and record.get("route") in CHAT_ROUTES and \
        isinstance(record.get("messages"), list)


def sft_rows(requests: Iterable[LoggedRequest], include_unrated: bool = False) -> list[dict[str, Any]]:
    rows = []
    for request in requests:
        if not _exportable(request):
            continue
        score, preferred = request.score, request.preferred
        good = preferred is not None or (score is not None and score > 0) or \
            (include_unrated and score is None)
        if not good:
            continue
        answer = [{"role": "assistant", "content": preferred}] if preferred else \
            answer_turns(request.record.get("answer") or {})
        rows.append(_row(request.record, [*conversation(request.record["messages"]), *answer]))
    return rows


def dpo_rows(requests: Iterable[LoggedRequest]) -> list[dict[str, Any]]:
    rows = []
    for request in requests:
        preferred = request.preferred
        served = served_text(request.record.get("answer") or {})
        if not _exportable(request) or preferred is None or preferred == served:
            continue
        messages = [*conversation(request.record["messages"]), {"role": "assistant", "content": preferred}]
        rows.append({**_row(request.record, messages), "rejected_response": served})
    return rows


def _row(record: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"messages": messages}
    if record.get("tools"):
        row["tools"] = record["tools"]
    return row


def conversation(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI chat messages -> ms-swift's: text content, tool calls as `tool_call` turns, tool results as
    `tool_response` turns."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content") or ""
        if role == "tool":
            out.append({"role": "tool_response", "content": content})
        elif role == "assistant":
            calls = [{"name": (c.get("function") or {}).get("name"), "arguments": (c.get("function") or {}).get(
                "arguments", "")} for c in message.get("tool_calls") or []]
            out += answer_turns({"text": content, "tool_calls": calls})
        else:
            out.append({"role": "system" if role == "developer" else role, "content": content})
    return out


def answer_turns(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """An answer (text and tool calls) as ms-swift turns."""
    turns = [{"role": "assistant", "content": answer.get("text") or ""}] if answer.get("text") or \
        not answer.get("tool_calls") else []
    for call in answer.get("tool_calls") or []:
        turns.append({"role": "tool_call", "content": json.dumps({"name": call.get("name"),
                                                                  "arguments": _arguments(call)},
                                                                 ensure_ascii=False)})
    return turns


def served_text(answer: dict[str, Any]) -> str:
    """What was served as one text: the answer's text, else its tool calls as ms-swift writes them."""
    if answer.get("text") or not answer.get("tool_calls"):
        return str(answer.get("text") or "")
    return "\n".join(turn["content"] for turn in answer_turns(answer))


def _arguments(call: dict[str, Any]) -> Any:
    raw = call.get("arguments")
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def write_rows(rows: list[dict[str, Any]], target: str | Path) -> Path:
    """JSON lines written to a temporary file beside `target`, fsynced and renamed: whole or absent."""
    path = Path(target).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path
