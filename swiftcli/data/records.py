"""Dataset files for inference and evaluation: rows of jsonl, json or csv, and what each row asks.

`read_records(path)` yields every row with its file and 1-based line, raising `InputError` that names both on
malformed input. `to_sample(data)` turns one row into a `Sample(query, response, system, history)`; it accepts
ms-swift's columns (`query`/`response`/`system`/`history`), OpenAI `messages`, ShareGPT `conversations` and
alpaca's `instruction`/`input`/`output`, each with images (an `images` column or OpenAI image parts).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from swiftcli.errors import InputError

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
COLUMNS_HINT = (
    "rows need a 'query' (with optional 'response', 'system', 'history'), OpenAI 'messages', "
    "or alpaca 'instruction'/'input'/'output'"
)


@dataclass(frozen=True)
class Record:
    """One row of a dataset file: where it is and what it holds."""

    path: Path
    line: int
    data: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Sample:
    """One inference request of a dataset row; `response` is the reference answer (the label), if any."""

    query: str
    response: str | None = None
    system: str | None = None
    history: list[list[str]] = field(default_factory=list)
    # Image references (paths made absolute against the dataset file, URLs, data URIs) and the sha256 of each
    # image's bytes (of a URL's text), so that a changed image makes a changed row.
    images: list[str] = field(default_factory=list)
    image_sha256: list[str] = field(default_factory=list)
    # Videos (a `videos` column, with `<video>` tags in the text), referenced and hashed as the images are.
    videos: list[str] = field(default_factory=list)
    video_sha256: list[str] = field(default_factory=list)

    def request(self) -> dict[str, Any]:
        """The row as a request for `swiftcli.generation.infer`."""
        request: dict[str, Any] = {"query": self.query, "history": self.history, "system": self.system}
        if self.images:
            request["images"] = list(self.images)
        if self.videos:
            request["videos"] = list(self.videos)
        return request


def dataset_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown dataset format {path.suffix or '(no extension)'!r}",
                         "use a .jsonl, .json or .csv file")
    return fmt


def read_records(path: str | Path) -> Iterator[Record]:
    """Yield each row of a .jsonl, .json or .csv file in file order; blank jsonl lines are skipped."""
    path = Path(path)
    fmt = dataset_format(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise InputError(f"dataset file {path} {what}", "check the path (and the current directory)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 text", "save the file as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read dataset file {path}: {exc.strerror or exc}") from None
    if fmt == "jsonl":
        yield from _jsonl(path, text)
    elif fmt == "json":
        yield from _json(path, text)
    else:
        yield from _csv(path, text)


def _jsonl(path: Path, text: str) -> Iterator[Record]:
    # Only "\n" (or "\r\n") ends a line: str.splitlines would also split on U+2028, U+2029 and U+0085, which
    # JSON allows unescaped inside strings.
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg}, column {exc.colno})",
                             "each line of a .jsonl file must be one JSON object") from None
        yield Record(path, number, _object(data, path, number))


def _json(path: Path, text: str) -> Iterator[Record]:
    """A JSON array of objects; each record's line is where its object starts in the file."""
    decoder = json.JSONDecoder()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if isinstance(whole, dict):
        # A single object is one row, as some exporters write it.
        yield Record(path, 1 + text[: len(text) - len(text.lstrip())].count("\n"), whole)
        return
    if not isinstance(whole, list):
        raise InputError(f"{path}:1: a .json dataset must be an array of objects, not {type(whole).__name__}",
                         "or write one object per line in a .jsonl file")
    # Walk the array again to learn where each element starts, for error messages that point at a line.
    pos = text.index("[") + 1
    for item in whole:
        while text[pos] in " \t\r\n,":
            pos += 1
        line = text.count("\n", 0, pos) + 1
        _, pos = decoder.raw_decode(text, pos)
        yield Record(path, line, _object(item, path, line))


def _csv(path: Path, text: str) -> Iterator[Record]:
    # A StringIO ends lines at \n, \r and \r\n only (not at U+2028 like str.splitlines).
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"{path}:1: malformed CSV header ({exc})") from None
    header = [h.strip() for h in header]
    if not any(header) or len(set(header)) != len(header):
        raise InputError(f"{path}:1: the CSV header must name each column once", f"got {header}")
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{path}:{start}: malformed CSV ({exc})") from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise InputError(f"{path}:{start}: {len(row)} fields, but the header has {len(header)}",
                             "quote fields that contain commas or line breaks")
        yield Record(path, start, dict(zip(header, row, strict=True)))


def _object(data: Any, path: Path, line: int) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError(f"{path}:{line}: each row must be a JSON object, not {type(data).__name__}",
                         COLUMNS_HINT)
    return data


def to_sample(data: dict[str, Any], base_dir: Path | None = None) -> Sample:
    """The request a row asks for; raises InputError (without a location: see `read_samples`) on bad rows.

    Images come from an `images` column (ms-swift's rows, with `<image>` tags in the text; alpaca rows) or from
    OpenAI image content parts, videos from a `videos` column; relative paths are taken from `base_dir` (the
    dataset file's folder).
    """
    sample = _text_sample(data)
    images = [*sample.images, *_image_column(data.get("images"))]
    videos = _image_column(data.get("videos"), "videos")
    if images:
        refs = [_absolute(ref, base_dir) for ref in images]
        sample = replace(sample, images=refs, image_sha256=[media_ref_hash(ref) for ref in refs])
    if videos:
        refs = [_absolute(ref, base_dir) for ref in videos]
        sample = replace(sample, videos=refs, video_sha256=[media_ref_hash(ref) for ref in refs])
    return sample


def _text_sample(data: dict[str, Any]) -> Sample:
    if "messages" in data and data["messages"] not in (None, ""):
        return _from_messages(_maybe_json(data["messages"], "messages"), "role", "content")
    if "conversations" in data and data["conversations"] not in (None, ""):
        return _from_messages(_maybe_json(data["conversations"], "conversations"), "from", "value")
    system = _text(data.get("system"), "system")
    history = _history(data.get("history"))
    if _present(data.get("instruction")):
        instruction = _text(data["instruction"], "instruction") or ""
        extra = _text(data.get("input"), "input")
        prompt = f"{instruction}\n{extra}" if extra else instruction
        return Sample(prompt, _text(data.get("output"), "output"), system, history)
    query = _first(data, ("query", "prompt", "question"))
    if query is None:
        raise InputError("the row has no query", COLUMNS_HINT)
    response = _first(data, ("response", "label", "answer", "output"))
    return Sample(query, response, system, history)


def read_samples(paths: Iterable[str | Path], skip_bad_rows: bool = False,
                 on_skip: Any = None) -> Iterator[tuple[Record, Sample]]:
    """Records and their samples from several files; a bad row raises InputError naming its file and line,
    or, with skip_bad_rows, is passed to on_skip(record, error) and left out."""
    for path in paths:
        for record in read_records(path):
            try:
                sample = to_sample(record.data, Path(path).parent)
                _check_text(sample)
            except InputError as exc:
                located = InputError(f"{record.where}: {exc.message}", exc.hint or "or pass --skip_bad_rows true")
                if not skip_bad_rows:
                    raise located from None
                if on_skip is not None:
                    on_skip(record, located)
                continue
            yield record, sample


def _check_text(sample: Sample) -> None:
    """A lone UTF-16 surrogate (a `\\ud800` escape in JSON) is not text: no tokenizer takes it."""
    texts = [sample.query, sample.system or "", sample.response or ""]
    texts += [part for pair in sample.history for part in pair]
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"the row holds a lone surrogate (U+{ord(text[exc.start]):04X}), which is not "
                             "valid Unicode text") from None


_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
          "bot": "assistant"}


def _from_messages(messages: Any, role_key: str, content_key: str) -> Sample:
    if not isinstance(messages, list) or not messages:
        raise InputError("'messages' must be a non-empty list of {role, content} objects")
    images: list[str] = []
    system: str | None = None
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InputError(f"message {i + 1} is not an object")
        role = _ROLES.get(str(message.get(role_key, "")).lower())
        if role is None:
            raise InputError(f"message {i + 1} has an unknown role {message.get(role_key)!r}",
                             "roles are system, user and assistant")
        content = _content(message.get(content_key), i + 1, images)
        if role == "system":
            if turns or system is not None:
                raise InputError(f"message {i + 1}: a system message must come first")
            system = content
        else:
            turns.append((role, content))
    response: str | None = None
    if turns and turns[-1][0] == "assistant":
        response = turns.pop()[1]
    if not turns or turns[-1][0] != "user":
        raise InputError("the row has no query: 'messages' needs a user message")
    query = turns.pop()[1]
    history: list[list[str]] = []
    if len(turns) % 2:
        raise InputError("'messages' must alternate user and assistant turns")
    for (r1, q), (r2, a) in zip(turns[::2], turns[1::2], strict=True):
        if (r1, r2) != ("user", "assistant"):
            raise InputError("'messages' must alternate user and assistant turns")
        history.append([q, a])
    return Sample(query, response, system, history, images)


def _content(value: Any, number: int, images: list[str]) -> str:
    """A message's text; OpenAI image parts become `<image>` tags where they stand, their URLs go to `images`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict):
                continue
            if part.get("type") in ("text", "input_text"):
                texts.append(str(part.get("text", "")))
            elif part.get("type") in IMAGE_PART_TYPES:
                images.append(_part_url(part, number))
                texts.append(IMAGE_TAG)
        if texts:
            return "".join(texts)
    raise InputError(f"message {number} has no text content")


IMAGE_TAG = "<image>"
IMAGE_PART_TYPES = ("image_url", "input_image", "image")


def _part_url(part: dict[str, Any], number: int) -> str:
    value = part.get("image_url", part.get("image"))
    if isinstance(value, dict):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise InputError(f"message {number}: an image part needs a URL, path or data URI")
    return value


def _image_column(value: Any, column: str = "images") -> list[str]:
    value = _maybe_json(value, column)
    if value in (None, "", []):
        return []
    items = [value] if isinstance(value, str | dict) else value
    if not isinstance(items, list):
        raise InputError(f"'{column}' must be a list of paths or URLs")
    refs = []
    for item in items:
        if isinstance(item, dict):  # ms-swift also writes {"path": ...} or {"bytes": ...}
            item = item.get("path") or item.get("url")
        if not isinstance(item, str) or not item:
            raise InputError(f"'{column}' must be a list of paths or URLs")
        refs.append(item)
    return refs


def _absolute(ref: str, base_dir: Path | None) -> str:
    if "://" in ref or ref.startswith("data:") or base_dir is None:
        return ref
    path = Path(ref).expanduser()
    return str(path if path.is_absolute() else (base_dir / path).resolve())


def media_ref_hash(ref: str) -> str:
    """sha256 of the image's bytes (a file or data URI: the same picture hashes the same), or of a URL's text."""
    if ref.startswith("data:"):
        _, _, payload = ref.partition(",")
        try:
            return hashlib.sha256(base64.b64decode(payload, validate=True)).hexdigest()
        except (binascii.Error, ValueError):
            raise InputError("an image data URI is not valid base64") from None
    if "://" in ref and not ref.startswith("file://"):
        return hashlib.sha256(ref.encode()).hexdigest()
    path = Path(ref.removeprefix("file://"))
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise InputError(f"image file {ref} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read image file {ref}: {exc.strerror}") from None


def _history(value: Any) -> list[list[str]]:
    value = _maybe_json(value, "history")
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
        for pair in value
    ):
        raise InputError("'history' must be a list of [query, response] pairs")
    return [list(pair) for pair in value]


def _maybe_json(value: Any, name: str) -> Any:
    # CSV cells hold structured columns as JSON text.
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"the '{name}' column is not valid JSON") from None
    return value


def _present(value: Any) -> bool:
    return value is not None and value != ""


def _text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InputError(f"'{name}' must be a string, not {type(value).__name__}")
    return value


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if _present(data.get(key)):
            return _text(data[key], key)
    return None
