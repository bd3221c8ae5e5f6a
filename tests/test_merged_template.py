"""Merged checkpoints carry the prompt format swiftcli used: the tokenizer's chat template of the merge renders a
conversation byte for byte (and token for token) as swiftcli's template does."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from swiftcli.export.chat_template import jinja_chat_template, render_messages
from swiftcli.registry import templates

HISTORY = [["Hi!", "Hello! How can I help?"], ["What is 2+2?", "4"]]
QUERY = 'And the capital of France? Answer in "quotes" {{not jinja}} — ünïcode'


def messages(system: str | None, history: list[list[str]], query: str) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system}] if system is not None else []
    for q, r in history:
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": r}]
    return [*out, {"role": "user", "content": query}]


@pytest.fixture(scope="module")
def tokenizer(embedded_spec):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_spec.model_dir)


# chatglm3's parts are token ids of its own vocabulary; every other built-in format renders with any tokenizer.
NAMES = [n for n in templates.names() if n not in ("hf", "chatglm3")]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("system", [None, "", "Be brief."])
def test_every_template_renders_the_same_through_jinja(tokenizer, name, system):
    template = templates.get_template(name, tokenizer)
    if system and not template.support_system:
        pytest.skip("this format has no system prompt")
    history = HISTORY if template.support_multi_round else []
    copy: Any = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    copy.chat_template = jinja_chat_template(template)
    assert render_messages(copy, messages(system, history, QUERY)) == template.render(QUERY, history, system)


def test_formats_refuse_what_they_cannot_render(tokenizer):
    from jinja2.exceptions import TemplateError

    copy: Any = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    copy.chat_template = jinja_chat_template(templates.get_template("default-generation", tokenizer))
    with pytest.raises(TemplateError, match="single-round"):
        render_messages(copy, messages(None, HISTORY, QUERY))
    with pytest.raises(TemplateError, match="no system prompt"):
        render_messages(copy, messages("sys", [], QUERY))


@pytest.fixture(scope="module")
def merged(lora_run, tmp_path_factory):
    """checkpoint-10 with a system prompt of its own in sft_args.json (as ms-swift records --system), merged."""
    from swiftcli.export.merge import merge_lora

    root = tmp_path_factory.mktemp("merged-template")
    ckpt = root / "v0" / "checkpoint-10"
    shutil.copytree(lora_run / "checkpoint-10", ckpt)
    args = json.loads((ckpt / "sft_args.json").read_text())
    (ckpt / "sft_args.json").write_text(json.dumps({**args, "system": "You are a terse pirate."}))
    return merge_lora(ckpt, root / "merged", verify=False).output_dir


@pytest.mark.slow
def test_merged_checkpoint_prompts_exactly_as_swiftcli(merged):
    from transformers import AutoTokenizer

    from swiftcli.engines.tokenizer import load_tokenizer
    from swiftcli.hub.resolve import resolve_model

    assert (merged / "chat_template.jinja").is_file()
    assert "chat_template" not in json.loads((merged / "tokenizer_config.json").read_text())
    spec = resolve_model(ckpt_dir=merged)  # how swiftcli itself prompts the merge
    template = templates.get_template(spec.template_type, load_tokenizer(spec), spec.default_system)
    other = AutoTokenizer.from_pretrained(merged)  # what vllm serve / any transformers server loads
    for system in (None, "Answer in French."):
        conversation = messages(system, HISTORY, QUERY)
        text = template.render(QUERY, HISTORY, system)
        assert render_messages(other, conversation).encode() == text.encode()
        ids = other.apply_chat_template(conversation, tokenize=True, add_generation_prompt=True, return_dict=False)
        assert list(ids) == template.encode(QUERY, HISTORY, system)
    # The checkpoint's own system prompt is the default of the merged template too.
    assert "You are a terse pirate." in render_messages(other, messages(None, [], "Hi"))
