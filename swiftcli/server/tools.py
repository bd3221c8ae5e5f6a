"""Tool calling and reasoning for /v1/chat/completions: what the prompt shows, what constrains the output,
and how the answer becomes `content`, `reasoning_content` and `tool_calls` (whole, or as stream deltas).

`tool_choice`:
- `none`: no tools in the prompt, no parsing.
- `auto` (the default with tools): tools in the prompt; the server's tool-call parser reads the answer.
- `required`: constrained decoding to a JSON array of calls `[{"name", "arguments"}]` (one item at most with
  `parallel_tool_calls: false`), so even a small model returns valid calls.
- `{"type": "function", "function": {"name": ...}}`: constrained to that function's parameters schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from swiftcli.parsers import (
    ReasoningParser,
    ReasoningStream,
    ToolCallParser,
    ToolCallStream,
    get_reasoning_parser,
    get_tool_parser,
)
from swiftcli.parsers.tool_calls import JsonArrayParser, NamedArgumentsParser, calls_json
from swiftcli.registry.tool_prompts import default_reasoning_parser, default_tool_parser
from swiftcli.server.errors import APIError
from swiftcli.server.protocol import ChatCompletionRequest

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass
class ToolPlan:
    prompt_tools: list[dict[str, Any]] | None = None
    guided: dict[str, Any] | None = None
    tool_parser: ToolCallParser | None = None
    reasoning_parser: ReasoningParser | None = None
    single_call: bool = False

    @property
    def parses(self) -> bool:
        return self.tool_parser is not None or self.reasoning_parser is not None


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    return tool["function"].get("parameters") or _ANY_OBJECT


def required_schema(tools: list[dict[str, Any]], single: bool) -> dict[str, Any]:
    """JSON schema of a non-empty array of calls to the given tools (name first, so streams name calls early)."""
    items = [{"type": "object", "properties": {"name": {"type": "string", "enum": [t["function"]["name"]]},
                                               "arguments": _parameters(t)},
              "required": ["name", "arguments"], "additionalProperties": False} for t in tools]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
    if single:
        schema["maxItems"] = 1
    return schema


def plan_tools(req: ChatCompletionRequest, tool_parser: ToolCallParser,
               reasoning_parser: ReasoningParser | None, constraint: dict[str, Any] | None) -> ToolPlan:
    tools = [t.model_dump(exclude_none=True) for t in req.tools or []]
    choice = req.tool_choice if req.tool_choice is not None else ("auto" if tools else "none")
    single = req.parallel_tool_calls is False
    plan = ToolPlan(guided=constraint, reasoning_parser=reasoning_parser, single_call=single)
    if choice == "none":
        return plan
    if not tools:
        raise APIError(400, "tool_choice needs tools", param="tool_choice")
    plan.prompt_tools = tools
    if choice == "auto":
        plan.tool_parser = tool_parser
        return plan
    if constraint is not None:
        raise APIError(400, "tool_choice required or named constrains the output already; drop response_format "
                       "and structured outputs", param="tool_choice")
    if choice == "required":
        plan.guided = {"json": required_schema(tools, single)}
        plan.tool_parser = JsonArrayParser()
        return plan
    name = choice.function.name  # type: ignore[union-attr]
    match = [t for t in tools if t["function"]["name"] == name]
    if not match:
        raise APIError(400, f"tool_choice names {name!r}, which is not in tools", param="tool_choice")
    plan.guided = {"json": _parameters(match[0])}
    plan.tool_parser = NamedArgumentsParser(name)
    return plan


def server_parsers(settings: Any, template: Any) -> tuple[ToolCallParser, ReasoningParser | None]:
    """The server's parsers: the names it was started with, else the template family's defaults."""
    template_type = template.template_type
    tool_parser = get_tool_parser(settings.tool_call_parser or default_tool_parser(template_type))
    reasoning = settings.reasoning_parser or default_reasoning_parser(template_type)
    return tool_parser, get_reasoning_parser(reasoning) if reasoning else None


def whole_message(plan: ToolPlan, text: str, finish_reason: str | None) -> tuple[dict[str, Any], str | None]:
    """The assistant message for a finished answer, and its finish_reason."""
    reasoning, content = (plan.reasoning_parser.split(text) if plan.reasoning_parser else (None, text))
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if plan.reasoning_parser is not None:
        message["reasoning_content"] = message["reasoning"] = reasoning or None
    if plan.tool_parser is None:
        return message, finish_reason
    parsed = plan.tool_parser.parse(content, final=True)
    calls = parsed.calls[:1] if plan.single_call else parsed.calls
    if not calls:
        return message, finish_reason
    message["content"] = parsed.content if parsed.content.strip() else None
    message["tool_calls"] = calls_json(calls)
    return message, "tool_calls" if finish_reason == "stop" else finish_reason


@dataclass
class ChoiceStream:
    """One choice's stream: cumulative text in, delta fields out."""

    plan: ToolPlan
    reasoning: ReasoningStream | None = None
    tools: ToolCallStream | None = None
    content: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.plan.reasoning_parser is not None:
            self.reasoning = ReasoningStream(self.plan.reasoning_parser)
        if self.plan.tool_parser is not None:
            self.tools = ToolCallStream(self.plan.tool_parser)

    def feed(self, text: str, final: bool) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        content_text = text
        if self.reasoning is not None:
            new_reasoning, _ = self.reasoning.feed(text, final)
            content_text = self.reasoning.content
            if new_reasoning:
                delta["reasoning_content"] = delta["reasoning"] = new_reasoning
        if self.tools is None:
            new_content = content_text[len(self.content):]
            self.content = content_text
        else:
            new_content, calls = self.tools.feed(content_text, final)
            if self.plan.single_call:
                calls = [c for c in calls if c["index"] == 0]
            if calls:
                delta["tool_calls"] = calls
        if new_content:
            delta["content"] = new_content
        return delta

    def finish_reason(self, finish_reason: str) -> str:
        called = self.tools is not None and self.tools.called
        return "tool_calls" if finish_reason == "stop" and called else finish_reason
