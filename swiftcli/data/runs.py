"""Inference over dataset files: every row to the engine as one batch, results as resumable JSON lines.

The result file holds one row per line, in input order: `{"system", "query", "response", "label", "history"}`.
A line is written and flushed as soon as it and every row before it are answered, so after a crash (even
kill -9) the file is a complete prefix of the results, perhaps plus one torn line. `ResultFile.resume` drops
the torn line, checks that the finished lines belong to the same rows, and the run continues after them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from swiftcli.config.spec import GenerationConfig
from swiftcli.data.fingerprint import (
    ResultLock,
    changed_fields,
    check_not_input,
    read_fingerprint,
    write_fingerprint,
)
from swiftcli.data.records import Record, Sample, read_samples
from swiftcli.engines.base import finished_results
from swiftcli.errors import InputError
from swiftcli.generation.core import encode_request
from swiftcli.generation.thinking import split_thinking

DEFAULT_DATASET_SEED = 42
DEFAULT_TEST_RATIO = 0.01


@dataclass(frozen=True)
class Row:
    record: Record
    sample: Sample


def load_rows(
    paths: Sequence[str | Path],
    sample: int = -1,
    seed: int = DEFAULT_DATASET_SEED,
    skip_bad_rows: bool = False,
    on_skip: Callable[[Record, InputError], None] | None = None,
) -> list[Row]:
    """Rows of the files in order; with sample >= 0, a seeded random `sample` of them, still in file order."""
    rows = [Row(r, s) for r, s in read_samples(paths, skip_bad_rows, on_skip)]
    return sample_rows(rows, sample, seed)


def sample_rows(rows: list[Row], sample: int, seed: int) -> list[Row]:
    """A seeded random sample of `sample` rows in their original order; all rows when sample is -1."""
    if 0 <= sample < len(rows):
        return [rows[i] for i in sorted(_permutation(len(rows), seed)[:sample])]
    return rows


def split_validation(rows: list[Row], test_ratio: float, seed: int) -> list[Row]:
    """The validation part of a train/validation split: ceil(ratio * n) rows chosen by a seeded permutation
    (the rule of `datasets.Dataset.train_test_split`), kept in file order."""

    if not 0 < test_ratio < 1:
        raise InputError(f"dataset_test_ratio must be between 0 and 1, got {test_ratio}")
    count = math.ceil(test_ratio * len(rows))
    return [rows[i] for i in sorted(_permutation(len(rows), seed)[:count])]


def _permutation(n: int, seed: int) -> list[int]:
    # lazy: keeps --help and start-up free of numpy
    import numpy as np

    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def result_row(sample: Sample, response: str) -> dict[str, Any]:
    row: dict[str, Any] = {"system": sample.system, "query": sample.query, "response": response,
                           "label": sample.response, "history": sample.history}
    if sample.images:
        row.update(images=sample.images, images_sha256=sample.image_sha256)
    if sample.videos:
        row.update(videos=sample.videos, videos_sha256=sample.video_sha256)
    return row


class ResultFile:
    """A JSON-lines result file written in input order; reopened, it resumes after its last complete line.

    With a `fingerprint`, the run's settings are recorded beside it (see `fingerprint`), and a resume with
    different settings is refused unless `overwrite`. The file is locked from `resume` to `close`.
    """

    def __init__(self, path: str | Path, fingerprint: dict[str, Any] | None = None, overwrite: bool = False,
                 inputs: Sequence[str | Path] = ()) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.overwrite = overwrite
        self.inputs = list(inputs)
        self._file: IO[str] | None = None
        self._pending: dict[int, dict[str, Any]] = {}
        self._lock: ResultLock | None = None
        self._keep = 0  # bytes of the existing file that hold complete, matching lines
        self.written = 0

    def resume(self, rows: Sequence[Row]) -> int:
        """Lock the file and return how many rows are already done; nothing is changed on disk until every
        complete line has been checked against `rows` (by position and content) and the fingerprint."""
        if self.path.is_dir():
            raise InputError(f"result file {self.path} is a directory", "pass a file path to --result_file")
        check_not_input(self.path, self.inputs)
        self._lock = ResultLock(self.path)
        self._lock.acquire()
        try:
            return self._resume(rows)
        except BaseException:
            self.close()
            raise

    def _resume(self, rows: Sequence[Row]) -> int:
        if not self.path.exists() or self.overwrite:
            return 0
        data = self.path.read_bytes()
        if not data.strip():
            return 0
        self._check_fingerprint()
        # Only "\n" ends a line: U+2028, U+2029 and U+0085 are text inside a row (str.splitlines splits on them).
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: empty, or a line whose writing was cut short
        done, self._keep = 0, 0
        for number, raw in enumerate(lines, 1):
            if raw.strip():
                row = _result_line(self.path, number, raw)
                self._match(row, rows, done, number)
                done += 1
            self._keep += len(raw) + 1
        if tail.strip():
            last = _complete_row(tail)
            if last is not None and done < len(rows) and _same_row(last, rows[done]):
                done += 1  # complete, only its newline is missing: kept
                self._keep += len(tail)
        self.written = done
        return done

    def _check_fingerprint(self) -> None:
        if self.fingerprint is None:
            return
        old = read_fingerprint(self.path)
        if old is None:
            raise InputError(f"{self.path} holds results but no record of the run that wrote them",
                             "pass --overwrite true to start over, or another --result_file")
        changed = changed_fields(old, self.fingerprint)
        if changed:
            raise InputError(f"{self.path} holds the results of another run: {', '.join(changed)} changed",
                             "rerun with the same settings to resume, --overwrite true to start over, "
                             "or pass another --result_file")

    def _match(self, row: dict[str, Any], rows: Sequence[Row], done: int, number: int) -> None:
        if done >= len(rows) or not _same_row(row, rows[done]):
            raise InputError(
                f"{self.path} holds results of other rows (line {number} does not match "
                f"{rows[done].record.where if done < len(rows) else 'any row'})",
                "resume with the same dataset and sampling options, --overwrite true, or another --result_file",
            )

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.overwrite or not self.path.exists():
            self._file = open(self.path, "w", encoding="utf-8")
        else:
            with open(self.path, "r+b") as f:  # drop a torn last line; give a complete one its newline
                f.truncate(self._keep)
                if self._keep and not _ends_with_newline(f, self._keep):
                    f.seek(self._keep)
                    f.write(b"\n")
            self._file = open(self.path, "a", encoding="utf-8")
        if self.fingerprint is not None:
            write_fingerprint(self.path, self.fingerprint)

    def add(self, index: int, row: dict[str, Any]) -> None:
        """Record row `index` (0-based over the whole dataset); writes every row now complete in order."""
        self._pending[index] = row
        while self.written in self._pending:
            self._write(self._pending.pop(self.written))

    def _write(self, row: dict[str, Any]) -> None:
        assert self._file is not None, "open() first"
        # One write call per line, then flush: a killed process leaves at most this one line torn.
        self._file.write(_json_line(row))
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _json_line(row: dict[str, Any]) -> str:
    try:
        line = json.dumps(row, ensure_ascii=False)
        line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON's \uXXXX escape keeps it (and the file valid UTF-8)
        line = json.dumps(row, ensure_ascii=True)
    return line + "\n"


def _result_line(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}:{number}: not a result line",
                         "pass --overwrite true to start over, or another --result_file") from None
    if not isinstance(row, dict):
        raise InputError(f"{path}:{number}: not a result line",
                         "pass --overwrite true to start over, or another --result_file")
    return row


def _complete_row(raw: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if isinstance(row, dict) else None


def _same_row(row: dict[str, Any], expected: Row) -> bool:
    sample = expected.sample
    return (row.get("query") == sample.query and row.get("system") == sample.system
            and row.get("label") == sample.response and (row.get("history") or []) == (sample.history or [])
            and (row.get("images_sha256") or []) == sample.image_sha256
            and (row.get("videos_sha256") or []) == sample.video_sha256)


def _ends_with_newline(f: IO[bytes], size: int) -> bool:
    f.seek(size - 1)
    return f.read(1) == b"\n"


class StreamWriter:
    """Results on a text stream (stdout), in input order; nothing to resume."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._pending: dict[int, dict[str, Any]] = {}
        self.written = 0
        self.path = None

    def add(self, index: int, row: dict[str, Any]) -> None:
        self._pending[index] = row
        while self.written in self._pending:
            self.stream.write(_json_line(self._pending.pop(self.written)))
            self.stream.flush()
            self.written += 1


@dataclass
class RunStats:
    rows: int = 0
    resumed: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0
    result_path: str | None = None
    skipped: list[str] = field(default_factory=list)

    def count(self, prompt_tokens: int, output_tokens: int, started: float) -> None:
        """One more row answered; `started` is the run's perf_counter() at its start."""
        self.rows += 1
        self.prompt_tokens += prompt_tokens
        self.output_tokens += output_tokens
        self.seconds = time.perf_counter() - started

    @property
    def output_tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "resumed": self.resumed, "skipped": len(self.skipped),
                "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "seconds": round(self.seconds, 3), "output_tokens_per_second": round(self.output_tokens_per_second, 2),
                "startup_seconds": round(self.startup_seconds, 3), "result_file": self.result_path}


def run_rows(
    engine: Any,
    template: Any,
    rows: Sequence[Row],
    config: GenerationConfig,
    writer: ResultFile | StreamWriter,
    start: int = 0,
    stats: RunStats | None = None,
    on_row: Callable[[RunStats], None] | None = None,
    skip_bad_rows: bool = False,
    structured_output: dict[str, Any] | None = None,
) -> RunStats:
    """Answer rows[start:] as one batch, handing each finished row to `writer` (which keeps input order).

    On KeyboardInterrupt the engine requests are aborted and the interrupt propagates; what the writer
    has written stays a valid prefix.
    """

    stats = stats or RunStats()
    t0 = time.perf_counter()
    constraint = {"structured_outputs": structured_output} if structured_output else {}
    todo, encoded = [], []
    for i, row in list(enumerate(rows))[start:]:
        try:
            encoded.append(encode_request(template, {**row.sample.request(), **constraint}, config))
        except Exception as exc:  # noqa: BLE001 - a row the template or tokenizer cannot take
            problem = f"{row.record.where}: the row cannot be encoded ({_first_line(exc)})"
            if not skip_bad_rows:
                raise InputError(problem, "fix the row, or pass --skip_bad_rows true") from None
            # It still gets its line, so that result lines keep matching rows by position.
            writer.add(i, {**result_row(row.sample, ""), "response": None, "error": problem})
            stats.skipped.append(problem)
            continue
        todo.append((i, row))
    index = {e.request_id: i for (i, _), e in zip(todo, encoded, strict=True)}
    if not encoded:
        return stats
    stream = finished_results(engine, encoded)
    try:
        for state in stream:
            i = index[state.request_id]
            reasoning, answer = split_thinking(template, state.outputs[0].text if state.outputs else "")
            line = result_row(rows[i].sample, answer)
            if reasoning is not None:
                line["reasoning"] = reasoning  # thinking apart from the answer
            writer.add(i, line)
            stats.count(state.prompt_tokens, state.output_tokens, t0)
            if on_row is not None:
                on_row(stats)
    finally:
        _close_quietly(stream)
    stats.seconds = time.perf_counter() - t0
    return stats


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _close_quietly(stream: Any) -> None:
    # After Ctrl-C in a terminal the engine process may already be gone; aborting it then must not hide
    # the interrupt behind a second error.
    try:
        stream.close()
    except Exception:  # noqa: BLE001
        pass


def checkpoint_datasets(args: dict[str, Any], ckpt_dir: Path) -> tuple[list[str], bool, float, int]:
    """The datasets named in a checkpoint's sft_args.json/args.json: (files, is_validation_set, test_ratio, seed).

    `val_dataset` files are used whole; otherwise the validation split of `dataset`. Entries may carry
    ms-swift's `#N` sample suffix, which is dropped. Hub dataset names cannot be loaded offline.
    """
    seed = int(args.get("dataset_seed", DEFAULT_DATASET_SEED))
    ratio = float(args.get("dataset_test_ratio", args.get("split_dataset_ratio", DEFAULT_TEST_RATIO)) or 0)
    val = _as_list(args.get("val_dataset")) + _as_list(args.get("custom_val_dataset_path"))
    train = _as_list(args.get("dataset")) + _as_list(args.get("custom_train_dataset_path"))
    names, whole = (val, True) if val else (train, False)
    if not names:
        raise InputError(f"the checkpoint's arguments in {ckpt_dir} name no dataset",
                         "pass --val_dataset FILE instead of --load_dataset_config true")
    files = []
    for name in names:
        name = name.split("#", 1)[0]
        path = Path(name).expanduser()
        if not path.is_absolute() and not path.exists() and (ckpt_dir / path).exists():
            path = ckpt_dir / path
        if not path.exists():
            looks_hub = "/" in name and not name.startswith((".", "/", "~")) and path.suffix.lower() not in (
                ".jsonl", ".json", ".csv")
            what = "a hub dataset, which cannot be downloaded offline" if looks_hub else "not a file here"
            raise InputError(f"dataset {name!r} from the checkpoint's arguments is {what}",
                             "pass a local copy with --val_dataset FILE")
        files.append(str(path))
    if not whole and ratio <= 0:
        raise InputError("the checkpoint's arguments keep no validation split (dataset_test_ratio is 0)",
                         "pass --val_dataset FILE")
    return files, whole, ratio, seed


def _as_list(value: Any) -> list[str]:
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    return [str(value)]
