"""Output parsers: tool calls and reasoning blocks out of model text, for whole answers and streams.

Parsers are registered by name (`--tool_call_parser hermes`, `--reasoning_parser qwen3`); third parties call
`register_tool_parser` / `register_reasoning_parser` the same way the built-ins do.
"""

from __future__ import annotations

from swiftcli.parsers.reasoning import (
    ReasoningParser,
    ReasoningStream,
    get_reasoning_parser,
    reasoning_parser_names,
    register_reasoning_parser,
)
from swiftcli.parsers.tool_calls import (
    ParsedCalls,
    ToolCall,
    ToolCallParser,
    ToolCallStream,
    get_tool_parser,
    register_tool_parser,
    tool_parser_names,
)

__all__ = [
    "ParsedCalls",
    "ReasoningParser",
    "ReasoningStream",
    "ToolCall",
    "ToolCallParser",
    "ToolCallStream",
    "get_reasoning_parser",
    "get_tool_parser",
    "reasoning_parser_names",
    "register_reasoning_parser",
    "register_tool_parser",
    "tool_parser_names",
]
