"""Reasoning parsers: split a `<think>…</think>` block off the answer, for whole texts and growing streams.

A parser is a pure function of the text generated so far (`split(text, final)`), so streaming re-splits the
cumulative text and sends what is new (`ReasoningStream`): the result is the same wherever the stream was cut.
While a stream may still be inside a tag, the partial tag is held back rather than sent as text.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from swiftcli.errors import UsageError


def held_back(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag` (so must wait for more text)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


@dataclass(frozen=True)
class ReasoningParser:
    """Thinking between `start` and `end` tags at the start of the output.

    `start_optional`: the chat template already put the start tag in the prompt (DeepSeek-R1), so everything up
    to the end tag is reasoning, and an answer cut off before the end tag is all reasoning.
    """

    name: str
    start: str = "<think>"
    end: str = "</think>"
    start_optional: bool = False

    def split(self, text: str, final: bool = True) -> tuple[str, str]:
        """(reasoning, content) of the text so far; `final=False` holds back what may still become a tag."""
        stripped = text.lstrip()
        if stripped.startswith(self.start):
            return self._body(stripped[len(self.start):], final)
        if not final and self.start.startswith(stripped):
            return "", ""  # empty or a partial start tag: wait
        if self.start_optional:
            return self._body(text, final)
        return "", stripped

    def _body(self, body: str, final: bool) -> tuple[str, str]:
        at = body.find(self.end)
        if at < 0:
            keep = 0 if final else held_back(body, self.end)
            return body[:len(body) - keep].lstrip("\n"), ""
        return body[:at].lstrip("\n"), body[at + len(self.end):].lstrip()


class ReasoningStream:
    """Turns a growing text into (reasoning delta, content delta) pairs."""

    def __init__(self, parser: ReasoningParser) -> None:
        self.parser = parser
        self.reasoning_sent = 0
        self.content_sent = 0
        self.content = ""

    def feed(self, text: str, final: bool = False) -> tuple[str, str]:
        reasoning, content = self.parser.split(text, final)
        self.content = content
        new_reasoning = reasoning[self.reasoning_sent:]
        new_content = content[self.content_sent:]
        self.reasoning_sent = max(self.reasoning_sent, len(reasoning))
        self.content_sent = max(self.content_sent, len(content))
        return new_reasoning, new_content


_PARSERS: dict[str, ReasoningParser] = {}


def register_reasoning_parser(parser: ReasoningParser, *, exist_ok: bool = False) -> None:
    if parser.name in _PARSERS and not exist_ok:
        raise ValueError(f"reasoning parser {parser.name!r} is already registered")
    _PARSERS[parser.name] = parser


def reasoning_parser_names() -> list[str]:
    return sorted(_PARSERS)


def get_reasoning_parser(name: str) -> ReasoningParser:
    if name not in _PARSERS:
        close = difflib.get_close_matches(name, reasoning_parser_names(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(reasoning_parser_names())}"
        raise UsageError(f"unknown reasoning parser {name!r}", hint)
    return _PARSERS[name]


register_reasoning_parser(ReasoningParser("deepseek_r1", start_optional=True))
register_reasoning_parser(ReasoningParser("qwen3"))
