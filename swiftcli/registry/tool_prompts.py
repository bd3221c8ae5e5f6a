"""How each template family writes tools into the prompt, and which parsers read the model's answers.

- hermes: Qwen2.5 / Qwen3's own format (tools in the system prompt inside `<tools>`, calls as `<tool_call>` blocks,
  results as a user turn of `<tool_response>` blocks). Templates without a tool format of their own get it too,
  as ms-swift's `--agent_template hermes` does.
- llama3_json: Llama 3.1+'s format (tools as JSON in the first user message, calls as `{"name", "parameters"}`,
  results in an `ipython` turn).
The tokenizer's own template (`hf`) renders tools itself: it gets `tools=`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.registry.templates import TemplateType

HERMES_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
HERMES_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)
LLAMA3_INTRO = (
    "Given the following functions, please respond with a JSON for a function call with its proper arguments that "
    "best answers the given prompt.\n\nRespond in the format "
    '{"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.\n\n'
)


def tojson(value: Any, indent: int | None = None) -> str:
    """JSON as chat templates write it (transformers' `tojson`: non-ASCII kept, default separators)."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def call_arguments(call: dict[str, Any]) -> str:
    """A call's arguments as JSON text (OpenAI sends a string; some clients send an object)."""
    args = call.get("function", call).get("arguments")
    if args is None:
        return "{}"
    return args if isinstance(args, str) else tojson(args)


def call_name(call: dict[str, Any]) -> str:
    return str(call.get("function", call).get("name", ""))


@dataclass(frozen=True)
class ToolFormat:
    """The hermes format; subclasses change what differs."""

    name: str = "hermes"
    parser: str = "hermes"

    def system(self, system: str | None, tools: Sequence[dict[str, Any]]) -> str:
        block = HERMES_INTRO + "".join("\n" + tojson(tool) for tool in tools) + HERMES_OUTRO
        return f"{system}\n\n{block}" if system else block

    def first_user(self, query: str, tools: Sequence[dict[str, Any]]) -> str:
        return query

    def assistant(self, content: str, tool_calls: Sequence[dict[str, Any]]) -> str:
        text = content
        for i, call in enumerate(tool_calls):
            if i or content:
                text += "\n"
            text += f'<tool_call>\n{{"name": "{call_name(call)}", "arguments": {call_arguments(call)}}}\n</tool_call>'
        return text

    def tool_results(self, results: Sequence[str]) -> str:
        """The user turn that carries consecutive tool results."""
        return "\n".join(f"<tool_response>\n{result}\n</tool_response>" for result in results)


@dataclass(frozen=True)
class Llama3JsonFormat(ToolFormat):
    name: str = "llama3_json"
    parser: str = "llama3_json"

    def system(self, system: str | None, tools: Sequence[dict[str, Any]]) -> str:
        return system or ""

    def first_user(self, query: str, tools: Sequence[dict[str, Any]]) -> str:
        return LLAMA3_INTRO + "".join(tojson(tool, indent=4) + "\n\n" for tool in tools) + query

    def assistant(self, content: str, tool_calls: Sequence[dict[str, Any]]) -> str:
        if not tool_calls:
            return content
        # Llama 3.1's template writes one call per assistant turn; several are joined as the model writes them.
        return "; ".join(f'{{"name": "{call_name(c)}", "parameters": {call_arguments(c)}}}' for c in tool_calls)


HERMES = ToolFormat()
LLAMA3_JSON = Llama3JsonFormat()
_FORMATS: dict[str, ToolFormat] = {TemplateType.llama3: LLAMA3_JSON}
_REASONING: dict[str, str] = {TemplateType.qwen3: "qwen3"}


def tool_format(template_type: str) -> ToolFormat:
    """The template family's own tool format, else hermes."""
    return _FORMATS.get(template_type, HERMES)


def register_tool_format(template_type: str, fmt: ToolFormat) -> None:
    _FORMATS[template_type] = fmt


def default_tool_parser(template_type: str) -> str:
    return tool_format(template_type).parser


def default_reasoning_parser(template_type: str) -> str | None:
    """Templates whose models think by default (Qwen3) name their reasoning parser; others have none."""
    return _REASONING.get(template_type)
