"""OpenAI-style messages (tools, assistant tool calls, tool results, thinking) -> a template's prompt.

Registry templates take a conversation as (system, [(query, response)], query); tool results become the user turn
that follows a call, as Qwen's own template writes them, and tools go into the system prompt or first user
message (see tool_prompts). Llama 3 renders its `ipython` result turns itself. The `hf` template gets the
messages, `tools=` and the chat template kwargs as they are.

Thinking: Qwen3's template (`qwen3`) drops earlier turns' reasoning, keeps it for the turns after the last user
message (a tool loop), and with `enable_thinking=False` closes an empty think block in the generation prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swiftcli.errors import InputError, TemplateError
from swiftcli.registry.templates import THINKING_TEMPLATES, Template
from swiftcli.registry.tool_prompts import LLAMA3_JSON, ToolFormat, tool_format

Message = dict[str, Any]


def effective_template_kwargs(template: Template, kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The kwargs without `enable_thinking: false` on a template with no thinking switch: asking a model that
    never thinks not to think is already satisfied (clients send it to every model). `true` there stays refused."""
    if kwargs and kwargs.get("enable_thinking") is False and not template.has_thinking_switch:
        return {k: v for k, v in kwargs.items() if k != "enable_thinking"}
    return kwargs


def check_template_kwargs(template: Template, kwargs: dict[str, Any] | None) -> None:
    """Refuse, by name, template kwargs this template would ignore."""
    for key, value in (effective_template_kwargs(template, kwargs) or {}).items():
        if key == "enable_thinking":
            if value is not None and not isinstance(value, bool):
                raise InputError("chat_template_kwargs enable_thinking must be true or false")
            template.thinking(value)
        elif not template.is_hf:
            raise InputError(f"chat_template_kwargs {key!r} is not supported by template "
                             f"{template.template_type!r} (it takes enable_thinking only)")


def render_messages(template: Template, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None,
                    template_kwargs: dict[str, Any] | None = None) -> str:
    """The prompt text for a conversation that ends with a user or tool message."""
    check_template_kwargs(template, template_kwargs)
    template_kwargs = effective_template_kwargs(template, template_kwargs)
    if template.is_hf:
        return _hf_text(template, messages, tools, template_kwargs)
    if _llama3_tools(template, messages, tools):
        return _llama3_text(messages, tools or ())
    system, history, query, kept = to_turns(template, messages, tools)
    return template.render(query, history or None, system, enable_thinking=_thinking(template_kwargs),
                           keep_thinking_from=kept)


def encode_messages(template: Template, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None,
                    template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """Prompt token ids; registry templates tokenize their parts separately, as `Template.encode` does."""
    check_template_kwargs(template, template_kwargs)
    template_kwargs = effective_template_kwargs(template, template_kwargs)
    tokenizer = template._require_tokenizer()
    if template.is_hf or _llama3_tools(template, messages, tools):
        text = render_messages(template, messages, tools, template_kwargs)
        return list(tokenizer.encode(text, add_special_tokens=False))
    system, history, query, kept = to_turns(template, messages, tools)
    return template.encode(query, history or None, system, enable_thinking=_thinking(template_kwargs),
                           keep_thinking_from=kept)


def _thinking(kwargs: dict[str, Any] | None) -> bool | None:
    return (kwargs or {}).get("enable_thinking")


def _llama3_tools(template: Template, messages: Sequence[Message], tools: Sequence[Any] | None) -> bool:
    if tool_format(template.template_type) is not LLAMA3_JSON:
        return False
    return bool(tools) or any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


def _hf_text(template: Template, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
             kwargs: dict[str, Any] | None) -> str:
    import json

    from swiftcli.registry.tool_prompts import call_arguments

    msgs: list[Message] = []
    for m in messages:
        m = {k: v for k, v in m.items() if v is not None}
        if m.get("tool_calls"):
            # Templates expect arguments as a mapping (they `tojson` it); OpenAI sends a JSON string.
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(call_arguments(c))}}
                               for c in m["tool_calls"]]
        msgs.append(m)
    if template.default_system and msgs[0]["role"] not in ("system", "developer"):
        msgs.insert(0, {"role": "system", "content": template.default_system})
    extra = {k: v for k, v in (kwargs or {}).items() if v is not None}
    switch = template.thinking(extra.get("enable_thinking"))
    if switch is not None:
        extra["enable_thinking"] = switch
    if tools and not _renders_tools(template):
        raise TemplateError("this model's chat template does not show `tools` to the model",
                            "use a model whose chat template renders tools, or a registered --template_type")
    return str(template._require_tokenizer().apply_chat_template(
        msgs, tools=list(tools) if tools else None, tokenize=False, add_generation_prompt=True, **extra))


_PROBE_TOOL = {"type": "function", "function": {"name": "probe_tool_7d1f", "description": "probe",
                                                 "parameters": {"type": "object", "properties": {}}}}


def _renders_tools(template: Template) -> bool:
    """Whether the tokenizer's chat template puts a tool list in the prompt (many ignore `tools` silently)."""
    known = template.__dict__.get("_renders_tools")
    if known is None:
        tokenizer = template._require_tokenizer()
        probe = [{"role": "user", "content": "x"}]
        text = tokenizer.apply_chat_template(probe, tools=[_PROBE_TOOL], tokenize=False, add_generation_prompt=True)
        known = template.__dict__["_renders_tools"] = "probe_tool_7d1f" in str(text)
    return bool(known)


def to_turns(template: Template, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None
             ) -> tuple[str | None, list[tuple[str, str]], str, int | None]:
    """Messages -> (system, [(query, response)], query, first round whose thinking is kept): the shape every
    registry template renders."""
    fmt = tool_format(template.template_type)
    msgs = list(messages)
    system = None
    offset = 0
    if msgs and msgs[0]["role"] in ("system", "developer"):
        system = msgs.pop(0).get("content") or ""
        offset = 1
    if tools:
        base = system if system is not None else template.default_system
        system = fmt.system(base, tools) or None
    thinking = template.template_type in THINKING_TEMPLATES
    last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=-1)
    turns: list[tuple[str, str]] = []  # ("q" | "r", text)
    kept: int | None = None
    i = 0
    while i < len(msgs):
        role = msgs[i]["role"]
        if role == "tool":
            j = i
            while j < len(msgs) and msgs[j]["role"] == "tool":
                j += 1
            turns.append(("q", fmt.tool_results([m.get("content") or "" for m in msgs[i:j]])))
            i = j
            continue
        if role == "user":
            content = msgs[i].get("content") or ""
            first = not any(kind == "q" for kind, _ in turns)
            turns.append(("q", fmt.first_user(content, tools) if first and tools else content))
        elif role == "assistant":
            keep = thinking and i > last_user
            if keep and kept is None:
                kept = sum(kind == "r" for kind, _ in turns)
            turns.append(("r", _assistant(fmt, msgs[i], keep)))
        else:
            raise InputError(f"messages[{i + offset}] has role {role!r}: a system message comes first only")
        i += 1
    return system, _pairs(turns, offset), turns[-1][1] if turns else "", kept


def _assistant(fmt: ToolFormat, message: Message, keep_reasoning: bool) -> str:
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content")
    if reasoning is None:
        reasoning = message.get("reasoning")
    if reasoning is None and "</think>" in content:
        head, _, content = content.rpartition("</think>")
        content = content.lstrip("\n")
        reasoning = head.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
    text = fmt.assistant(content, message.get("tool_calls") or [])
    if keep_reasoning and reasoning:
        return f"<think>\n{reasoning.strip(chr(10))}\n</think>\n\n" + text.lstrip("\n")
    return text


def _pairs(turns: list[tuple[str, str]], offset: int) -> list[tuple[str, str]]:
    expected = "q"
    for i, (kind, _) in enumerate(turns):
        if kind != expected:
            want = "a user or tool message" if expected == "q" else "an assistant message"
            raise InputError(f"messages[{i + offset}]: expected {want} (system first, then user and assistant in "
                             "turn, tool results after the assistant's calls, ending with a user or tool message)")
        expected = "r" if expected == "q" else "q"
    if not turns or turns[-1][0] != "q":
        raise InputError("the last message must be from the user or a tool")
    return [(turns[k][1], turns[k + 1][1]) for k in range(0, len(turns) - 1, 2)]


def _llama3_text(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> str:
    """Llama 3.1's own rendering with tools: JSON tools in the first user message, results as `ipython`."""
    def turn(role: str, text: str) -> str:
        return f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>"

    parts = ["<|begin_of_text|>"]
    first_user = True
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role in ("system", "developer"):
            parts.append(turn("system", content))
        elif role == "user":
            parts.append(turn("user", LLAMA3_JSON.first_user(content, tools) if first_user and tools else content))
            first_user = False
        elif role == "assistant":
            parts.append(turn("assistant", LLAMA3_JSON.assistant(content, m.get("tool_calls") or [])))
        elif role == "tool":
            parts.append(turn("ipython", content))
    if messages[-1]["role"] not in ("user", "tool"):
        raise InputError("the last message must be from the user or a tool")
    return "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"
