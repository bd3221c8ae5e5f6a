"""The request log that `deploy --log_requests FILE` writes and `swiftcli logs FILE` reads.

A log is a sequence of JSON records: `{"type": "request", ...}` for each answered request and
`{"type": "rating", "id": ...}` for each rating a client sent later (appended, never rewriting a line). FILE.jsonl
holds one record per line; FILE.sqlite / FILE.db holds them in a table `records(seq, type, id, time, body)` with
the same JSON in `body`. Both are rotated by size: FILE.jsonl -> FILE.1.jsonl -> FILE.2.jsonl ..., the oldest
beyond `keep` removed; readers take the rotated files oldest first, then FILE.

The writer runs in a thread of its own: the server's event loop only puts a record on a queue. Each record is
flushed (JSON lines) or committed (SQLite) before the next one is taken, so a crash of the server loses nothing
written before it.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from swiftcli.errors import InputError, UsageError

logger = logging.getLogger("swiftcli.server")

KINDS = {".jsonl": "jsonl", ".sqlite": "sqlite", ".db": "sqlite"}
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_KEEP = 5
_SCHEMA = ("CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, "
           "id TEXT, time TEXT, body TEXT NOT NULL)")


@dataclass(frozen=True)
class RequestLogConfig:
    """Where the log goes and how it rotates: beyond `max_bytes` the file moves to FILE.1.EXT, keeping `keep`."""

    path: str
    max_bytes: int = DEFAULT_MAX_BYTES
    keep: int = DEFAULT_KEEP

    def __post_init__(self) -> None:
        log_kind(self.path)
        if self.max_bytes < 1:
            raise UsageError(f"--log-requests-max-bytes must be at least 1, not {self.max_bytes}")
        if self.keep < 0:
            raise UsageError(f"--log-requests-keep must be at least 0, not {self.keep}")


def log_kind(path: str | Path, what: str = "request log") -> str:
    """"jsonl" or "sqlite", from the file name; anything else is a usage error."""
    kind = KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise UsageError(f"{what} {path}: the file name must end in .jsonl, .sqlite or .db",
                         "e.g. --log-requests requests.jsonl")
    return kind


def rotated(path: Path, index: int) -> Path:
    """FILE.jsonl -> FILE.INDEX.jsonl (index 0: FILE.jsonl itself)."""
    return path if index == 0 else path.with_name(f"{path.stem}.{index}{path.suffix}")


def log_files(path: Path) -> list[Path]:
    """The log's files that exist, oldest first: FILE.N.EXT ... FILE.1.EXT, FILE.EXT."""
    found = []
    index = 1
    while rotated(path, index).exists():
        found.append(rotated(path, index))
        index += 1
    return [*reversed(found), *([path] if path.exists() else [])]


class _Sink:
    """One open log file: JSON lines or SQLite."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kind = log_kind(path)
        self.text: TextIO | None = None
        self.db: sqlite3.Connection | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "jsonl":
            self.text = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the server's lifetime
        else:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute(_SCHEMA)

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def write(self, record: dict[str, Any]) -> None:
        body = json.dumps(record, ensure_ascii=False, default=str)
        if self.text is not None:
            self.text.write(body + "\n")
            self.text.flush()
        else:
            assert self.db is not None
            self.db.execute("INSERT INTO records (type, id, time, body) VALUES (?, ?, ?, ?)",
                            (record.get("type"), record.get("id"), record.get("time"), body))

    def close(self) -> None:
        if self.text is not None:
            self.text.close()
        if self.db is not None:
            self.db.close()


def rotate(path: Path, keep: int) -> None:
    """FILE -> FILE.1, FILE.1 -> FILE.2, ...; what would become FILE.(keep+1) is removed (keep 0: FILE itself)."""
    if keep == 0:
        path.unlink(missing_ok=True)
        return
    rotated(path, keep).unlink(missing_ok=True)
    for index in range(keep - 1, 0, -1):
        if rotated(path, index).exists():
            rotated(path, index).replace(rotated(path, index + 1))
    if path.exists():
        path.replace(rotated(path, 1))


class RequestLogWriter:
    """Appends records from any thread (`write` only queues) in a thread of its own, rotating by size."""

    def __init__(self, config: RequestLogConfig) -> None:
        self.config = config
        self.path = Path(config.path).expanduser()
        self.sink = _Sink(self.path)
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self.thread.start()

    def write(self, record: dict[str, Any]) -> None:
        self.queue.put(record)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then close the file."""
        self.queue.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        while (record := self.queue.get()) is not None:
            try:
                self._write(record)
            except Exception:  # noqa: BLE001 - a full disk must not stop the server; it says so in its log
                logger.exception("could not write to the request log")
        self.sink.close()

    def _write(self, record: dict[str, Any]) -> None:
        if self.sink.size() >= self.config.max_bytes:
            self.sink.close()
            rotate(self.path, self.config.keep)
            self.sink = _Sink(self.path)
        self.sink.write(record)


def read_log(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every record of the log and its rotated files, oldest first, with where it is (FILE:LINE or FILE:#SEQ).
    A missing file or a line that is not a JSON object is an InputError naming it."""
    path = Path(path).expanduser()
    log_kind(path)
    files = log_files(path)
    if not files:
        raise InputError(f"{path}: no such request log", "give the file that deploy --log-requests wrote")
    for file in files:
        yield from (_read_sqlite(file) if log_kind(file) == "sqlite" else _read_jsonl(file))


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            yield _parsed(line, f"{path}:{number}")


def _read_sqlite(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT seq, body FROM records ORDER BY seq").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a request log database ({exc})") from None
    for seq, body in rows:
        yield _parsed(body, f"{path}:#{seq}")


def _parsed(text: str, where: str) -> tuple[str, dict[str, Any]]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not a JSON record ({exc.msg})", "the line is corrupt; remove it") from None
    if not isinstance(record, dict) or record.get("type") not in ("request", "rating") or not record.get("id"):
        raise InputError(f"{where}: not a request log record (needs type request|rating and an id)")
    return where, record
