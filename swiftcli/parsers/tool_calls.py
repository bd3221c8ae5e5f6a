"""Tool-call parsers: model text -> (content, calls), for whole answers and for streams cut at any byte.

Like the reasoning parsers, a parser is a pure function of the text so far (`parse(text, final)`); `ToolCallStream`
re-parses the cumulative text and sends OpenAI's deltas: a call's index, id and name once the name is complete,
then its argument text as it grows. Arguments are passed on as the JSON text the model wrote.
"""

from __future__ import annotations

import difflib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from swiftcli.errors import UsageError
from swiftcli.parsers.reasoning import held_back

NAME_KEYS = ("name",)
ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass
class ToolCall:
    """A call as far as it is written: `name` is None until its string is complete."""

    name: str | None
    arguments: str = ""
    complete: bool = False


@dataclass
class ParsedCalls:
    content: str
    calls: list[ToolCall] = field(default_factory=list)


class Malformed(ValueError):
    """The text is not (the start of) a JSON call object."""


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _string_end(text: str, i: int) -> int | None:
    """Index after the JSON string starting at text[i] == '"', None when it is not closed yet."""
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == '"':
            return j + 1
        j += 1
    return None


def value_end(text: str, i: int) -> int | None:
    """Index after the JSON value starting at text[i], None when the value may still grow."""
    if text[i] == '"':
        return _string_end(text, i)
    if text[i] in "{[":
        depth, j = 0, i
        while j < len(text):
            ch = text[j]
            if ch == '"':
                end = _string_end(text, j)
                if end is None:
                    return None
                j = end
                continue
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return None
    j = i
    while j < len(text) and text[j] not in ",}] \t\r\n":
        j += 1
    return j if j < len(text) else None


def scan_call(text: str, i: int) -> tuple[ToolCall, int | None]:
    """The call object starting at text[i] == '{' and the index after it (None while it is open)."""
    call = ToolCall(None)
    args_done = False
    j = i + 1
    while True:
        j = _skip_ws(text, j)
        if j >= len(text):
            return call, None
        if text[j] == "}":
            call.complete = call.name is not None and args_done
            if not call.complete:
                raise Malformed("a call needs a name and arguments")
            return call, j + 1
        if text[j] == ",":
            j += 1
            continue
        if text[j] != '"':
            raise Malformed(f"unexpected {text[j]!r} in a call object")
        key_end = _string_end(text, j)
        if key_end is None:
            return call, None
        key = json.loads(text[j:key_end])
        j = _skip_ws(text, key_end)
        if j >= len(text):
            return call, None
        if text[j] != ":":
            raise Malformed("expected ':' after a key")
        j = _skip_ws(text, j + 1)
        if j >= len(text):
            return call, None
        end = value_end(text, j)
        if key in NAME_KEYS and end is not None:
            name = json.loads(text[j:end])
            if not isinstance(name, str):
                raise Malformed("a call's name must be a string")
            call.name = name
        elif key in ARGUMENT_KEYS:
            if text[j] not in "{":
                raise Malformed("a call's arguments must be a JSON object")
            call.arguments = text[j:end if end is not None else len(text)]
            args_done = end is not None
        if end is None:
            return call, None
        j = end


def scan_calls(text: str, i: int = 0, separators: str = ",;[]") -> list[ToolCall]:
    """Successive call objects from text[i], between separators (a JSON array, or `;`-separated objects)."""
    calls: list[ToolCall] = []
    while True:
        while i < len(text) and (text[i] in separators or text[i] in " \t\r\n"):
            i += 1
        if i >= len(text):
            return calls
        if text[i] != "{":
            raise Malformed(f"unexpected {text[i]!r} between calls")
        call, end = scan_call(text, i)
        calls.append(call)
        if end is None:
            return calls
        i = end


class ToolCallParser:
    """Base class: `parse(text, final)` -> ParsedCalls. A text that is not valid calls is all content."""

    name = ""

    def parse(self, text: str, final: bool = True) -> ParsedCalls:
        raise NotImplementedError


class HermesParser(ToolCallParser):
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks (Qwen2.5, Qwen3, Hermes, ms-swift's
    hermes agent template). Text before the first block is the content."""

    name = "hermes"
    open_tag = "<tool_call>"
    close_tag = "</tool_call>"

    def parse(self, text: str, final: bool = True) -> ParsedCalls:
        first = text.find(self.open_tag)
        if first < 0:
            keep = 0 if final else held_back(text, self.open_tag)
            return ParsedCalls(text[:len(text) - keep])
        calls: list[ToolCall] = []
        pos = first
        try:
            while pos >= 0:
                start = pos + len(self.open_tag)
                close = text.find(self.close_tag, start)
                block = text[start:close if close >= 0 else len(text)]
                call = self._block_call(block, closed=close >= 0)
                if call is not None:
                    calls.append(call)
                pos = text.find(self.open_tag, close) if close >= 0 else -1
        except (Malformed, json.JSONDecodeError):
            return ParsedCalls(text)
        if final and not all(c.complete for c in calls):
            return ParsedCalls(text)
        return ParsedCalls(text[:first], calls)

    @staticmethod
    def _block_call(block: str, closed: bool) -> ToolCall | None:
        """The one call in a block; text after it may only be a partial close tag while the block is open."""
        i = _skip_ws(block, 0)
        if i >= len(block):
            if closed:
                raise Malformed("an empty call block")
            return None
        if block[i] != "{":
            raise Malformed("a call block must hold a JSON object")
        call, end = scan_call(block, i)
        if closed and (end is None or block[end:].strip()):
            raise Malformed("a closed block without exactly one whole call")
        return call


class JsonCallsParser(ToolCallParser):
    """Llama 3.1+ JSON calls: the answer is `{"name": ..., "parameters": {...}}` objects (separated by `;`),
    optionally after `<|python_tag|>`; any other answer is content."""

    name = "llama3_json"
    prefix = "<|python_tag|>"

    def parse(self, text: str, final: bool = True) -> ParsedCalls:
        body = text.lstrip()
        if body.startswith(self.prefix):
            body = body[len(self.prefix):].lstrip()
        elif not final and self.prefix.startswith(body):
            return ParsedCalls("")
        if not body and not final:
            return ParsedCalls("")
        if not body.startswith("{"):
            return ParsedCalls(text)
        try:
            calls = scan_calls(body)
        except (Malformed, json.JSONDecodeError):
            return ParsedCalls(text)
        if final and not (calls and all(c.complete for c in calls)):
            return ParsedCalls(text)
        return ParsedCalls("", calls)


class JsonArrayParser(ToolCallParser):
    """`[{"name": ..., "arguments": {...}}, ...]`: what `tool_choice: required` constrains the model to write."""

    name = "json_array"

    def parse(self, text: str, final: bool = True) -> ParsedCalls:
        try:
            calls = scan_calls(text)
        except (Malformed, json.JSONDecodeError):
            return ParsedCalls(text)
        if final and not (calls and all(c.complete for c in calls)):
            return ParsedCalls(text)
        return ParsedCalls("", calls)


class NamedArgumentsParser(ToolCallParser):
    """The whole answer is the arguments of one named function (`tool_choice: {"function": {"name": ...}}`)."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.name = f"named:{function}"

    def parse(self, text: str, final: bool = True) -> ParsedCalls:
        args = text.strip() if final else text.lstrip()
        if final:
            try:
                json.loads(args)
            except json.JSONDecodeError:
                return ParsedCalls(text)  # cut off before the arguments were whole
        return ParsedCalls("", [ToolCall(self.function, args, final)])


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def calls_json(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Whole calls in OpenAI's `message.tool_calls` shape."""
    return [{"id": new_call_id(), "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


class ToolCallStream:
    """Turns a growing text into (content delta, [OpenAI tool-call deltas])."""

    def __init__(self, parser: ToolCallParser) -> None:
        self.parser = parser
        self.content_sent = 0
        self.args_sent: list[int] = []

    @property
    def called(self) -> bool:
        return bool(self.args_sent)

    def feed(self, text: str, final: bool = False) -> tuple[str, list[dict[str, Any]]]:
        parsed = self.parser.parse(text, final)
        new_content = parsed.content[self.content_sent:]
        self.content_sent = max(self.content_sent, len(parsed.content))
        deltas: list[dict[str, Any]] = []
        for index, call in enumerate(parsed.calls):
            if call.name is None:
                break  # a later call waits until this one has its name
            delta: dict[str, Any] | None = None
            if index >= len(self.args_sent):
                self.args_sent.append(0)
                delta = {"index": index, "id": new_call_id(), "type": "function",
                         "function": {"name": call.name, "arguments": ""}}
            fragment = call.arguments[self.args_sent[index]:]
            if fragment:
                self.args_sent[index] = len(call.arguments)
                delta = delta or {"index": index, "function": {}}
                delta["function"]["arguments"] = fragment
            if delta is not None:
                deltas.append(delta)
        return new_content, deltas


_PARSERS: dict[str, type[ToolCallParser]] = {}


def register_tool_parser(parser: type[ToolCallParser], *, exist_ok: bool = False) -> None:
    if parser.name in _PARSERS and not exist_ok:
        raise ValueError(f"tool call parser {parser.name!r} is already registered")
    _PARSERS[parser.name] = parser


def tool_parser_names() -> list[str]:
    return sorted(_PARSERS)


def get_tool_parser(name: str) -> ToolCallParser:
    if name not in _PARSERS:
        close = difflib.get_close_matches(name, tool_parser_names(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(tool_parser_names())}"
        raise UsageError(f"unknown tool call parser {name!r}", hint)
    return _PARSERS[name]()


register_tool_parser(HermesParser)
register_tool_parser(JsonCallsParser)
register_tool_parser(JsonArrayParser)
