"""Tools, tool calls, tool results and thinking in registry templates, on fixed strings written from the families'
own chat templates (Qwen2.5, Qwen3, Llama 3.1)."""

from __future__ import annotations

import json

import pytest

from swiftcli.errors import InputError, TemplateError
from swiftcli.registry.conversation import render_messages
from swiftcli.registry.templates import LLAMA_DEFAULT_SYSTEM, get_template
from swiftcli.registry.tool_prompts import default_reasoning_parser, default_tool_parser

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TOOLS_BLOCK = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    + json.dumps(WEATHER) + "\n</tools>\n\nFor each function call, return a json object with function name and "
    'arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, '
    '"arguments": <args-json-object>}\n</tool_call>'
)
LOOP = [{"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "reasoning_content": "Need the tool.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]


def test_qwen3_thinking_switch():
    t = get_template("qwen3")
    user = [{"role": "user", "content": "Hi"}]
    assert render_messages(t, user) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert render_messages(t, user, template_kwargs={"enable_thinking": True}) == \
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert render_messages(t, user, template_kwargs={"enable_thinking": False}) == \
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    off = get_template("qwen3", enable_thinking=False)
    assert off.render("Hi").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert off.render("Hi", enable_thinking=True).endswith("<|im_start|>assistant\n")


def test_qwen3_drops_earlier_reasoning():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "<think>\nR1\n</think>\n\nA1"}, {"role": "user", "content": "Q2"}]
    assert render_messages(get_template("qwen3"), messages) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n")


def test_qwen3_tool_loop_keeps_reasoning_after_the_last_question():
    assert render_messages(get_template("qwen3"), LOOP, [WEATHER]) == (
        f"<|im_start|>system\n{TOOLS_BLOCK}<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nNeed the tool.\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n18C\n</tool_response><|im_end|>\n<|im_start|>assistant\n")


def test_qwen2_5_tools_default_system_and_parallel_calls():
    second = {**CALL, "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}}
    messages = [{"role": "user", "content": "Paris and Lyon?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [CALL, second]},
                {"role": "tool", "content": "18C"}, {"role": "tool", "content": "20C"}]
    assert render_messages(get_template("qwen2_5"), messages, [WEATHER]) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n"
        f"{TOOLS_BLOCK}<|im_end|>\n<|im_start|>user\nParis and Lyon?<|im_end|>\n<|im_start|>assistant\nChecking.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n18C\n</tool_response>\n<tool_response>\n20C\n</tool_response>"
        "<|im_end|>\n<|im_start|>assistant\n")


def test_llama3_json_tools_and_ipython_results():
    messages = [{"role": "system", "content": "S"}, *[m for m in LOOP if m["role"] != "assistant"][:1],
                {"role": "assistant", "content": None, "tool_calls": [CALL]}, {"role": "tool", "content": "18C"}]
    text = render_messages(get_template("llama3"), messages, [WEATHER])
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for "
        "a function call with its proper arguments that best answers the given prompt.\n\nRespond in the format "
        '{"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.'
        f"\n\n{json.dumps(WEATHER, indent=4)}\n\nWeather in Paris?<|eot_id|>"
        '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", "parameters": {"city": "Paris"}}'
        "<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n18C<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert default_tool_parser("llama3") == "llama3_json"


def test_other_templates_get_hermes_tools():
    text = render_messages(get_template("llama"), LOOP, [WEATHER])
    system = f"{LLAMA_DEFAULT_SYSTEM}\n\n{TOOLS_BLOCK}"  # the template's default system, then the tools
    assert text.startswith(f"<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\nWeather in Paris? [/INST]")
    assert "<tool_response>\n18C\n</tool_response> [/INST]" in text
    assert default_tool_parser("smollm2") == "hermes"
    assert default_reasoning_parser("qwen3") == "qwen3" and default_reasoning_parser("qwen2_5") is None


def test_bad_conversations_and_kwargs_are_refused():
    t = get_template("qwen3")
    with pytest.raises(InputError, match="last message"):
        render_messages(t, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(InputError, match=r"messages\[1\]"):
        render_messages(t, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(InputError, match="foo"):
        render_messages(t, [{"role": "user", "content": "a"}], template_kwargs={"foo": 1})
    with pytest.raises(TemplateError, match="thinking"):
        render_messages(get_template("qwen2_5"), [{"role": "user", "content": "a"}],
                        template_kwargs={"enable_thinking": True})
    # Not thinking on a model that never thinks is already so: the prompt is the plain one.
    plain = get_template("qwen2_5")
    assert render_messages(plain, [{"role": "user", "content": "a"}], template_kwargs={"enable_thinking": False}) \
        == render_messages(plain, [{"role": "user", "content": "a"}])


def test_qwen3_chat_history_drops_thinking():
    t = get_template("qwen3")
    assert t.render("Q2", [["Q1", "<think>\nR1\n</think>\n\nA1"]]) == (
        "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n")


def test_a_tokenizer_template_that_ignores_tools_is_refused(embedded_spec):
    """The embedded model's own chat template has no tool section: sending `tools` through it would be silently
    ignored, so it is refused by name; a template that renders them is used as it is."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_spec.model_dir)
    user = [{"role": "user", "content": "Weather in Paris?"}]
    plain = get_template("hf", tokenizer)
    assert render_messages(plain, user).endswith("<|im_start|>assistant\n")
    with pytest.raises(TemplateError, match="does not show `tools`"):
        render_messages(plain, user, [WEATHER])
    tokenizer.chat_template = ("{% if tools %}TOOLS: {% for t in tools %}{{ t.function.name }} {% endfor %}\n"
                               "{% endif %}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    rendering = get_template("hf", tokenizer)
    assert render_messages(rendering, user, [WEATHER]) == "TOOLS: get_weather user: Weather in Paris?\nassistant: "
