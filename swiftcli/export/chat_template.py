"""swiftcli's prompt format as a Jinja chat template, for checkpoints other servers will load.

swiftcli prompts with its own templates (ms-swift's formats), not with the tokenizer's chat_template. A merged
checkpoint served by `vllm serve`, TGI or transformers would otherwise be prompted with whatever chat template
the base tokenizer carries, which can differ (another default system prompt, other separators) and is a
classic cause of "the merged model answers differently elsewhere". `jinja_chat_template` writes the template
swiftcli used so that `apply_chat_template(messages, add_generation_prompt=True)` renders byte for byte what
`Template.render` does. As in swiftcli, the prompt after a user turn always ends with the answer prefix.
"""

from __future__ import annotations

import json
from typing import Any

from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.registry.templates import Part, Template, TemplateType, get_template


def _literal(text: str | None) -> str:
    # JSON string syntax is valid Jinja string syntax (escapes included), and keeps the output ASCII-safe.
    return "none" if text is None else json.dumps(text)


def _emit(text: str) -> str:
    return f"{{{{- {_literal(text)} -}}}}" if text else ""


def _joined(template: Template, parts: tuple[Part, ...]) -> str:
    """Parts as one text, token-id parts as their token strings (as `Template.render` shows them)."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            tokenizer = template._require_tokenizer()
            out.append("".join(tokenizer.convert_ids_to_tokens(template._token_ids(part))))
    return "".join(out)


def _split(text: str, placeholder: str) -> tuple[str, str]:
    before, found, after = text.partition(placeholder)
    return (before, after) if found else (text, "")


def _bos_text(template: Template) -> str:
    """What `Template` puts first for templates that add BOS themselves (only when the tokenizer adds one)."""
    tokenizer = template.tokenizer
    if not template.spec.auto_add_bos or tokenizer is None:
        return ""
    bos = tokenizer.bos_token_id
    if isinstance(bos, int) and bos in tokenizer.encode(""):
        return "".join(tokenizer.convert_ids_to_tokens([bos]))
    return ""


def jinja_chat_template(template: Template) -> str | None:
    """The template as Jinja (messages with system/user/assistant roles), or None for `hf` (already one)."""
    if template.template_type == TemplateType.hf:
        return None
    spec = template.spec
    prefix = _joined(template, spec.prefix)
    system_prefix = None if spec.system_prefix is None else _split(_joined(template, spec.system_prefix),
                                                                   "{{SYSTEM}}")
    query_before, query_after = _split(_joined(template, spec.prompt), "{{QUERY}}")
    separator = None if spec.chat_sep is None else _joined(template, spec.chat_sep)
    suffix = _joined(template, spec.suffix)
    no_system = "{{- raise_exception('this prompt format has no system prompt') -}}"
    single_round = "{{- raise_exception('this prompt format is single-round: send one user message') -}}"
    system_block = no_system if system_prefix is None else (
        f"{_emit(system_prefix[0])}{{{{- ns.system -}}}}{_emit(system_prefix[1])}")
    lines = [
        f"{{%- set ns = namespace(system={_literal(template.default_system)}, start=0) -%}}",
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set ns.system = messages[0]['content'] -%}{%- set ns.start = 1 -%}{%- endif -%}",
        _emit(_bos_text(template)),
        f"{{%- if ns.system -%}}{system_block}{{%- else -%}}{_emit(prefix)}{{%- endif -%}}",
        "{%- for message in messages[ns.start:] -%}",
        f"{{%- if message['role'] == 'user' -%}}{_emit(query_before)}{{{{- message['content'] -}}}}"
        f"{_emit(query_after)}",
        "{%- elif message['role'] == 'assistant' -%}{{- message['content'] -}}",
        f"{{%- if not loop.last -%}}{single_round if separator is None else _emit(separator)}"
        f"{{%- else -%}}{_emit(suffix)}{{%- endif -%}}",
        "{%- else -%}{{- raise_exception('unsupported role: ' + message['role']) -}}{%- endif -%}",
        "{%- endfor -%}",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def render_messages(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """What a server that uses the tokenizer's chat template sends to the model for `messages`."""
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def chat_template_for(spec: Any, trust_remote_code: bool = False) -> str | None:
    """The Jinja form of the template swiftcli prompts `spec` with (None when that is the tokenizer's own)."""
    if spec.template_type == TemplateType.hf:
        return None
    return jinja_chat_template(get_template(spec.template_type, load_tokenizer(spec, trust_remote_code),
                                            spec.default_system))
