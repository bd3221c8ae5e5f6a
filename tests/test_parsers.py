"""Tool-call and reasoning parsers on fixed texts, whole and streamed with a cut at every position."""

from __future__ import annotations

import json

import pytest

from swiftcli.errors import UsageError
from swiftcli.parsers import (
    ReasoningStream,
    ToolCallStream,
    get_reasoning_parser,
    get_tool_parser,
)
from swiftcli.parsers.tool_calls import NamedArgumentsParser

HERMES = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n'
          '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "Europe/Paris \\"x\\" {"}}\n'
          '</tool_call>')
LLAMA = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "noop", "parameters": {}}'
ARRAY = '[{"name": "get_weather", "arguments": {"city": "Paris", "n": [1, 2]}}, {"name": "b", "arguments": {}}]'


def _assemble(parser, text: str, cuts: list[int]) -> tuple[str, list[dict]]:
    """Feed the text in pieces cut at `cuts`; assemble content and calls as the openai client does."""
    stream = ToolCallStream(parser)
    content = ""
    calls: dict[int, dict] = {}
    bounds = [*cuts, len(text)]
    for i, end in enumerate(bounds):
        piece_content, deltas = stream.feed(text[:end], final=i == len(bounds) - 1)
        content += piece_content
        for delta in deltas:
            call = calls.setdefault(delta["index"], {"id": None, "name": "", "arguments": ""})
            if "id" in delta:
                assert call["id"] is None, "id and name come once, first"
                call["id"] = delta["id"]
                call["name"] += delta["function"]["name"]
            assert call["id"] is not None, "arguments before the call's id and name"
            call["arguments"] += delta["function"].get("arguments", "")
    return content, [calls[i] for i in sorted(calls)]


def _whole(parser, text: str) -> tuple[str, list[dict]]:
    parsed = parser.parse(text, final=True)
    return parsed.content, [{"name": c.name, "arguments": c.arguments} for c in parsed.calls]


@pytest.mark.parametrize(("name", "text", "content", "names"), [
    ("hermes", HERMES, "Let me check.\n", ["get_weather", "get_time"]),
    ("llama3_json", LLAMA, "", ["get_weather", "noop"]),
    ("json_array", ARRAY, "", ["get_weather", "b"]),
])
def test_tool_parser_whole_and_every_cut(name, text, content, names):
    parser = get_tool_parser(name)
    whole_content, whole_calls = _whole(parser, text)
    assert whole_content == content
    assert [c["name"] for c in whole_calls] == names
    for call in whole_calls:
        assert isinstance(json.loads(call["arguments"]), dict)
    for cut in range(len(text) + 1):
        streamed_content, streamed = _assemble(get_tool_parser(name), text, [cut])
        assert streamed_content == content, cut
        assert [{"name": c["name"], "arguments": c["arguments"]} for c in streamed] == whole_calls, cut
    # one character at a time
    streamed_content, streamed = _assemble(get_tool_parser(name), text, list(range(1, len(text))))
    assert [c["arguments"] for c in streamed] == [c["arguments"] for c in whole_calls]
    assert len({c["id"] for c in streamed}) == len(names)


@pytest.mark.parametrize("text", [
    "The weather in Paris is mild.",
    "Use <tool_call> tags like <tool_call>this</tool_call>.",
    '<tool_call>\n{"name": "f", "arguments": {"a": 1}\n',  # cut off: never closed
    '<tool_call>{"arguments": {}}</tool_call>',  # no name
])
def test_hermes_prose_and_broken_calls_are_content(text):
    parser = get_tool_parser("hermes")
    assert _whole(parser, text) == (text, [])
    for cut in range(len(text) + 1):
        content, _ = _assemble(get_tool_parser("hermes"), text, [cut])
        assert content == text, cut  # streamed, the text is never lost either
    if "<tool_call>" not in text:
        for cut in range(len(text) + 1):
            assert _assemble(get_tool_parser("hermes"), text, [cut]) == (text, [])


def test_llama_json_prose_is_content():
    parser = get_tool_parser("llama3_json")
    assert _whole(parser, "Paris is the capital.") == ("Paris is the capital.", [])
    assert _whole(parser, '{"name": "f"}') == ('{"name": "f"}', [])


def test_named_arguments_parser():
    parser = NamedArgumentsParser("get_weather")
    text = '{"city": "Paris"}'
    assert _whole(parser, text) == ("", [{"name": "get_weather", "arguments": text}])
    for cut in range(len(text) + 1):
        _, calls = _assemble(NamedArgumentsParser("get_weather"), text, [cut])
        assert calls[0]["arguments"] == text and calls[0]["name"] == "get_weather"


def test_unknown_parser_names_suggest():
    with pytest.raises(UsageError, match="hermes"):
        get_tool_parser("hermez")
    with pytest.raises(UsageError, match="qwen3"):
        get_reasoning_parser("qwen")


def _split_stream(parser, text: str, cuts: list[int]) -> tuple[str, str]:
    stream = ReasoningStream(parser)
    reasoning = content = ""
    bounds = [*cuts, len(text)]
    for i, end in enumerate(bounds):
        r, c = stream.feed(text[:end], final=i == len(bounds) - 1)
        reasoning += r
        content += c
    return reasoning, content


@pytest.mark.parametrize(("name", "text", "reasoning", "content"), [
    ("qwen3", "<think>\nThe user asks for a capital.\n</think>\n\nParis.", "The user asks for a capital.\n", "Paris."),
    ("qwen3", "Paris, no thinking.", "", "Paris, no thinking."),
    ("qwen3", "<think>\nStill thinking when the tokens ran o", "Still thinking when the tokens ran o", ""),
    ("qwen3", "Less than < and <thin are text", "", "Less than < and <thin are text"),
    ("deepseek_r1", "Thinking without the start tag.</think>Answer", "Thinking without the start tag.", "Answer"),
    ("deepseek_r1", "<think>a < b</thin k</think>\nB", "a < b</thin k", "B"),
])
def test_reasoning_whole_and_every_cut(name, text, reasoning, content):
    parser = get_reasoning_parser(name)
    assert parser.split(text) == (reasoning, content)
    for cut in range(len(text) + 1):
        assert _split_stream(parser, text, [cut]) == (reasoning, content), cut
    assert _split_stream(parser, text, list(range(1, len(text)))) == (reasoning, content)
