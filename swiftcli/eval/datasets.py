"""Evaluation datasets: which kind of task a file holds, each row's prompt and reference, few-shot examples.

Three kinds, told apart by a file's first row (or set with `kind=`):
- generation: any row `swiftcli.data.to_sample` reads with a reference answer (query/response, OpenAI messages
  ending with an assistant turn, alpaca instruction/input/output);
- multiple_choice: `question`, options as `choices` (a list, or an object keyed by letter) or columns `A`, `B`,
  ..., and `answer` (a letter, an option's text, or a 0-based option index as a JSON number);
- gsm8k: `question` and an `answer` that ends with `#### N`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftcli.data.records import IMAGE_TAG, Record, read_records, to_sample
from swiftcli.errors import InputError, UsageError
from swiftcli.eval.extract import parse_number
from swiftcli.generation.vision import split_tags

GENERATION = "generation"
MULTIPLE_CHOICE = "multiple_choice"
GSM8K = "gsm8k"
KINDS = (GENERATION, MULTIPLE_CHOICE, GSM8K)

EXPECTED_COLUMNS = (
    "generation: query/response, OpenAI messages ending with an assistant turn, or instruction/input/output; "
    "multiple_choice: question, choices (or A, B, ...), answer; gsm8k: question, answer ending in '#### N'"
)
GSM8K_ANSWER = re.compile(r"####\s*(\S+)\s*$")
LETTERS = string.ascii_uppercase
MC_INSTRUCTION = "Answer with the letter of the correct option."
GSM8K_INSTRUCTION = 'Solve the problem step by step, then give the final number on the last line as "#### N".'


class ColumnsError(InputError):
    """A row that lacks the columns its task kind needs."""


@dataclass
class EvalItem:
    """One row to score: the request to send and what a right answer is; `error` marks a row that cannot run."""

    dataset: str
    index: int
    line: int
    kind: str
    query: str = ""
    system: str | None = None
    history: list[list[str]] = field(default_factory=list)
    reference: str | None = None
    letters: str = ""
    choices: list[str] = field(default_factory=list)
    error: str | None = None
    # Multiple choice scored by loglikelihood: the bare question, and few-shot (question, right option) pairs.
    question: str = ""
    choice_shots: list[list[str]] = field(default_factory=list)
    # Image references of the row (paths made absolute against the dataset file), for its <image> tags.
    images: list[str] = field(default_factory=list)

    def request(self) -> dict[str, Any]:
        request: dict[str, Any] = {"query": self.query, "history": self.history, "system": self.system}
        if self.images:
            request["images"] = list(self.images)
        return request

    def messages(self, default_system: str | None = None) -> list[dict[str, Any]]:
        """The request as OpenAI chat messages (for --api-url); images as image_url parts (files inline)."""
        system = self.system if self.system is not None else default_system
        out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for query, response in self.history:
            out += [{"role": "user", "content": query}, {"role": "assistant", "content": response}]
        if not self.images:
            return [*out, {"role": "user", "content": self.query}]
        if any(IMAGE_TAG in q for q, _ in self.history):
            raise InputError("rows with images in earlier turns cannot be sent to a server yet")
        return [*out, {"role": "user", "content": image_parts(self.query, self.images)}]


@dataclass
class EvalDataset:
    """A dataset file ready to run: its items (few-shot rows left out) and what the summary records about it."""

    name: str
    path: Path
    sha256: str
    kind: str
    rows: int
    items: list[EvalItem]
    few_shot_lines: list[int]


@dataclass
class Parsed:
    """A row read as its task: prompt parts, the reference, and the answer shown in few-shot examples."""

    query: str
    reference: str
    shot_answer: str
    system: str | None = None
    history: list[list[str]] = field(default_factory=list)
    letters: str = ""
    choices: list[str] = field(default_factory=list)
    question: str = ""
    images: list[str] = field(default_factory=list)


def image_parts(query: str, images: list[str]) -> list[dict[str, Any]]:
    """OpenAI content parts for a question with images: each at its <image> tag, the rest before the text."""
    refs = [_inline(ref) for ref in images]
    parts = split_tags(query)
    tags = sum(p["type"] == "image" for p in parts)
    parts = [{"type": "image"}] * max(0, len(refs) - tags) + parts
    out: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "image":
            out.append({"type": "image_url", "image_url": {"url": refs.pop(0)}})
        else:
            out.append(part)
    return out


def _inline(ref: str) -> str:
    """A local image file as a data URI: a server reads no client paths."""
    if "://" in ref or ref.startswith("data:"):
        return ref
    media_type = mimetypes.guess_type(ref)[0] or "image/png"
    return f"data:{media_type};base64,{base64.b64encode(Path(ref).read_bytes()).decode()}"


def _row_images(data: dict[str, Any], base_dir: Path | None) -> list[str]:
    return to_sample({"query": "-", "images": data.get("images")}, base_dir).images if data.get("images") else []


def detect_kind(data: dict[str, Any]) -> str | None:
    """The task kind a row's columns ask for, or None when they fit none."""
    if "question" in data and "answer" in data:
        if "choices" in data or ("A" in data and "B" in data):
            return MULTIPLE_CHOICE
        if isinstance(data["answer"], str) and GSM8K_ANSWER.search(data["answer"]):
            return GSM8K
    try:
        sample = to_sample({k: v for k, v in data.items() if k not in ("images", "videos")})
    except InputError:
        return None
    return GENERATION if sample.response is not None else None


def parse_row(data: dict[str, Any], kind: str, base_dir: Path | None = None) -> Parsed:
    if kind == MULTIPLE_CHOICE:
        parsed = _multiple_choice(data)
    elif kind == GSM8K:
        parsed = _gsm8k(data)
    else:
        return _generation(data, base_dir)
    parsed.images = _row_images(data, base_dir)
    return parsed


def _generation(data: dict[str, Any], base_dir: Path | None = None) -> Parsed:
    sample = to_sample(data, base_dir)
    if sample.response is None:
        raise ColumnsError("the row has no reference answer", "add a 'response' or a final assistant message")
    return Parsed(sample.query, sample.response, sample.response, sample.system, sample.history,
                  images=sample.images)


def _question(data: dict[str, Any]) -> str:
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ColumnsError("the row has no 'question' text")
    return question.strip()


def _multiple_choice(data: dict[str, Any]) -> Parsed:
    question = _question(data)
    if "answer" not in data:
        raise ColumnsError("the row has no 'answer'")
    choices = _choices(data)
    letters = LETTERS[: len(choices)]
    letter = _answer_letter(data["answer"], choices, letters)
    options = "\n".join(f"{ch}. {text}" for ch, text in zip(letters, choices, strict=False))
    query = f"{question}\n\n{options}\n\n{MC_INSTRUCTION}"
    return Parsed(query, letter, f"The answer is {letter}.", _system(data), letters=letters, choices=choices,
                  question=question)


def _choices(data: dict[str, Any]) -> list[str]:
    raw = data.get("choices")
    if isinstance(raw, str) and raw.strip()[:1] in ("[", "{"):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise InputError("the 'choices' column is not valid JSON") from None
    if raw is None:
        raw = []
        for letter in LETTERS:
            if letter not in data or data[letter] in (None, ""):
                break
            raw.append(data[letter])
    elif isinstance(raw, dict):
        keys = [str(k).strip().upper() for k in raw]
        if keys != list(LETTERS[: len(keys)]):
            raise InputError("'choices' as an object must be keyed A, B, C, ... in order")
        raw = list(raw.values())
    if not isinstance(raw, list):
        raise InputError("'choices' must be a list of option texts")
    if not 2 <= len(raw) <= len(LETTERS):
        raise ColumnsError(
            f"a multiple-choice row needs 2 to {len(LETTERS)} options, got {len(raw)}",
            "give 'choices' as a list or columns A, B, C, ...",
        )
    if not all(isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in raw):
        raise InputError("each option must be text")
    return [str(c).strip() for c in raw]


def _answer_letter(answer: Any, choices: list[str], letters: str) -> str:
    if isinstance(answer, int) and not isinstance(answer, bool):
        if 0 <= answer < len(choices):
            return letters[answer]
        raise InputError(f"answer index {answer} is out of range for {len(choices)} options")
    if isinstance(answer, str):
        text = answer.strip()
        letter = text.strip("().: ").upper()
        if len(letter) == 1 and letter in letters:
            return letter
        for ch, choice in zip(letters, choices, strict=False):
            if text == choice:
                return ch
    raise InputError(
        f"answer {answer!r} is not one of the options {', '.join(letters)}",
        "give the letter, the option's text, or a 0-based index",
    )


def _gsm8k(data: dict[str, Any]) -> Parsed:
    question = _question(data)
    answer = data.get("answer")
    match = GSM8K_ANSWER.search(answer) if isinstance(answer, str) else None
    if match is None or not isinstance(answer, str) or parse_number(match.group(1)) is None:
        raise ColumnsError("the answer does not end with '#### N' (a number)")
    reference = match.group(1).replace(",", "")
    # The calculator notes (<<48/2=24>>) of GSM8K's solutions are noise in a few-shot example.
    shot = re.sub(r"<<[^>]*>>", "", answer).strip()
    return Parsed(f"{question}\n{GSM8K_INSTRUCTION}", reference, shot, _system(data))


def _system(data: dict[str, Any]) -> str | None:
    system = data.get("system")
    return system if isinstance(system, str) and system else None


def dataset_names(paths: Sequence[str | Path]) -> list[str]:
    """Short names for the summary: file stems, or the paths where two stems clash."""
    stems = [Path(p).stem for p in paths]
    return [stem if stems.count(stem) == 1 else str(p) for stem, p in zip(stems, paths, strict=True)]


def load_dataset(
    path: str | Path, name: str, kind: str | None = None, few_shot: int = 0, limit: int | None = None, seed: int = 0
) -> EvalDataset:
    """Read a file into items; few-shot examples are drawn (with `seed`) from its good rows and not scored."""
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise UsageError(f"--eval-type must be one of {', '.join(KINDS)}, not {kind!r}")
    records = list(read_records(path))
    if not records:
        raise InputError(f"{path} has no rows", "an evaluation dataset needs at least one row")
    first = records[0]
    if kind is None:
        kind = detect_kind(first.data)
        if kind is None:
            raise InputError(
                f"{first.where}: cannot tell what to evaluate from the columns "
                f"{', '.join(map(repr, first.data)) or '(none)'}",
                f"expected {EXPECTED_COLUMNS}",
            )
    parsed: list[Parsed | InputError] = []
    for record in records:
        try:
            parsed.append(parse_row(record.data, kind, path.parent))
        except InputError as exc:
            parsed.append(exc)
    if isinstance(parsed[0], ColumnsError) and all(isinstance(p, InputError) for p in parsed):
        raise InputError(f"{first.where}: {parsed[0].message} for --eval-type {kind}", f"expected {EXPECTED_COLUMNS}")
    good = [i for i, p in enumerate(parsed) if isinstance(p, Parsed)]
    if few_shot > 0 and few_shot >= len(good):
        raise UsageError(
            f"--eval-few-shot {few_shot} leaves no row of {path} to score ({len(good)} usable rows)",
            "lower --eval-few-shot",
        )
    if few_shot > 0 and any(isinstance(p, Parsed) and p.images for p in parsed):
        raise UsageError(f"--eval_few_shot with images is not supported ({path} has rows with images)",
                         "drop --eval_few_shot")
    shots = sorted(random.Random(seed).sample(good, few_shot)) if few_shot > 0 else []
    shot_pairs = [[p.query, p.shot_answer] for i in shots if isinstance(p := parsed[i], Parsed)]
    choice_shots = [[p.question, p.choices[p.letters.index(p.reference)]] for i in shots
                    if isinstance(p := parsed[i], Parsed) and p.choices]
    items: list[EvalItem] = []
    for i, (record, row) in enumerate(zip(records, parsed, strict=True)):
        if i in shots:
            continue
        if limit is not None and len(items) >= limit:
            break
        items.append(_item(name, len(items), record, kind, row, shot_pairs, choice_shots))
    return EvalDataset(
        name,
        path,
        hashlib.sha256(path.read_bytes()).hexdigest(),
        kind,
        len(records),
        items,
        [records[i].line for i in shots],
    )


def _item(
    name: str, index: int, record: Record, kind: str, row: Parsed | InputError, shots: list[list[str]],
    choice_shots: list[list[str]] | None = None,
) -> EvalItem:
    if isinstance(row, InputError):
        return EvalItem(name, index, record.line, kind, error=str(row))
    return EvalItem(
        name,
        index,
        record.line,
        kind,
        row.query,
        row.system,
        [*shots, *row.history],
        row.reference,
        row.letters,
        row.choices,
        question=row.question,
        choice_shots=choice_shots or [],
        images=row.images,
    )
