"""Final answers out of free text: an option letter for multiple choice, a number for math word problems."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"


def _letter_class(letters: str) -> str:
    return f"[{re.escape(letters)}]"


def extract_choice(text: str, letters: str, choices: Sequence[str] = ()) -> str | None:
    """The option letter an answer picks, or None.

    In order: an explicit "answer is B" / "Answer: (B)" (the last one wins, as models correct themselves); a
    letter that opens the answer ("B", "(B)", "B. Paris"); a bracketed "(B)"; the one option whose text the answer
    quotes; a lone capital letter. An article ("A cat ...") is not taken for option A.
    """
    if not text or not letters:
        return None
    text = unicodedata.normalize("NFKC", text)
    cls = _letter_class(letters)
    for word in ("answer", "option|choice"):
        # A lower-case letter counts only where it cannot be a word: "answer: b." but not "answer is a good".
        explicit = re.compile(
            rf"(?i:{word})(?:\s+is)?(?:\s+option)?\s*[:=]?\s*[\(\[]?"
            rf"(?:({cls})(?![A-Za-z])|({cls.lower()})(?=[\)\].,:]|\s*$))"
        )
        found = [(m.group(1) or m.group(2)).upper() for m in explicit.finditer(text)]
        found = [f for f in found if f in letters]
        if found:
            return found[-1]
    opening = re.match(rf"\s*[\(\[]?({cls})(?:[\)\].:,]|\s|$)", text)
    if opening and not _is_article(text, opening.end(1)):
        return opening.group(1)
    bracketed = re.search(rf"[\(\[]({cls})[\)\]]", text)
    if bracketed:
        return bracketed.group(1)
    quoted = _quoted_choice(text, letters, choices)
    if quoted:
        return quoted
    for m in re.finditer(rf"(?<![A-Za-z])({cls})(?![A-Za-z])", text):
        if not _is_article(text, m.end(1)):
            return m.group(1)
    return None


def _is_article(text: str, end: int) -> bool:
    # "A cat", "I think": a capital letter followed by a space and a lower-case word reads as a word.
    return bool(re.match(r"\s+[a-z]", text[end : end + 2]))


def _quoted_choice(text: str, letters: str, choices: Sequence[str]) -> str | None:
    lowered = text.lower()
    hits = [
        letter
        for letter, choice in zip(letters, choices, strict=False)
        if choice.strip() and re.search(rf"(?<!\w){re.escape(choice.strip().lower())}(?!\w)", lowered)
    ]
    return hits[0] if len(hits) == 1 else None


def parse_number(text: str) -> Decimal | None:
    """A number as written in an answer ("1,234", "$5", "-3.50", "12.") as a Decimal; None if it is none."""
    cleaned = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def extract_number(text: str) -> Decimal | None:
    """The final numeric answer: after the last "####", else "the answer is N" or \\boxed{N}, else the last number."""
    if not text:
        return None
    text = unicodedata.normalize("NFKC", text)
    for pattern in (rf"####\s*({NUMBER})", rf"answer\s+is\s*:?\s*({NUMBER})", rf"\\boxed\{{\s*({NUMBER})\s*\}}"):
        matches = re.findall(pattern, text, re.IGNORECASE)
        if matches:
            return parse_number(matches[-1])
    numbers = re.findall(NUMBER, text)
    return parse_number(numbers[-1]) if numbers else None


def numbers_equal(a: Decimal | None, b: Decimal | None) -> bool:
    return a is not None and b is not None and a == b
