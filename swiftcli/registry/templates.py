"""Chat templates: the prompt formats of ms-swift 2.x, byte for byte, plus the tokenizer's own (`hf`).

A template is data (`TemplateSpec`): a prefix, a per-round prompt, a separator between rounds (None for
single-round templates) and a suffix that ends an answer. Parts are strings with `{{SYSTEM}}` and
`{{QUERY}}` placeholders, or token lists (ints, or tokenizer attribute names such as "eos_token_id").
`Template` binds a spec to a tokenizer and turns requests into prompt text or token ids.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from swiftcli.errors import TemplateError

Part = str | tuple[int | str, ...]
History = Sequence[Sequence[str]]

DEFAULT_SYSTEM = "You are a helpful assistant."
QWEN2_5_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
LLAMA_DEFAULT_SYSTEM = (
    "You are a helpful, respectful and honest assistant. "
    "Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, "
    "explain why instead of answering something not correct. "
    "If you don't know the answer to a question, please don't share false information."
)


class TemplateType:
    default_generation = "default-generation"
    default = "default"
    qwen = "qwen"
    chatml = "chatml"
    qwen2_5 = "qwen2_5"
    qwen3 = "qwen3"
    yi = "yi"
    chatglm3 = "chatglm3"
    llama = "llama"
    llama3 = "llama3"
    smollm2 = "smollm2"
    hf = "hf"


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    prefix: tuple[Part, ...]
    prompt: tuple[Part, ...]
    chat_sep: tuple[Part, ...] | None
    suffix: tuple[Part, ...]
    default_system: str | None = None
    system_prefix: tuple[Part, ...] | None = None
    auto_add_bos: bool = False
    extra_stop: tuple[str, ...] = field(default_factory=tuple)


_TEMPLATES: dict[str, TemplateSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: TemplateSpec, *, aliases: Sequence[str] = (), exist_ok: bool = False) -> None:
    """Add a template; third parties call this the same way the built-ins do."""
    if spec.name in _TEMPLATES and not exist_ok:
        raise ValueError(f"template {spec.name!r} is already registered")
    _TEMPLATES[spec.name] = spec
    for alias in aliases:
        _ALIASES[alias] = spec.name


def alias_hf_template(name: str) -> None:
    """Accept `name` for the model's own chat template (`hf`): for models whose processor ships the template."""
    _ALIASES[name] = TemplateType.hf


def names() -> list[str]:
    return sorted([*_TEMPLATES, *_ALIASES])


def get(name: str) -> TemplateSpec:
    key = _ALIASES.get(name, name)
    if key == TemplateType.hf:
        return _HF_SPEC
    if key not in _TEMPLATES:
        close = difflib.get_close_matches(name, names(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known templates: {', '.join(names())}"
        raise TemplateError(f"unknown template_type {name!r}", hint)
    return _TEMPLATES[key]


_CHATML_PROMPT = ("<|im_start|>user\n{{QUERY}}<|im_end|>\n<|im_start|>assistant\n",)
_CHATML_SYSTEM = ("<|im_start|>system\n{{SYSTEM}}<|im_end|>\n",)


def _chatml(name: str, system: str | None, auto_add_bos: bool = False) -> TemplateSpec:
    return TemplateSpec(
        name, (), _CHATML_PROMPT, ("<|im_end|>\n",), ("<|im_end|>",), system, _CHATML_SYSTEM, auto_add_bos
    )


register(
    TemplateSpec(
        TemplateType.default,
        (),
        ("### Human:\n", "{{QUERY}}\n\n", "### Assistant:\n"),
        ("\n\n",),
        (("eos_token_id",),),
        DEFAULT_SYSTEM,
        ("{{SYSTEM}}\n\n",),
    )
)
register(
    TemplateSpec(
        TemplateType.default_generation, (), ("{{QUERY}}",), None, (("eos_token_id",),), auto_add_bos=True
    )
)
register(_chatml(TemplateType.qwen, DEFAULT_SYSTEM))
register(_chatml(TemplateType.chatml, DEFAULT_SYSTEM, auto_add_bos=True))
register(_chatml(TemplateType.qwen2_5, QWEN2_5_SYSTEM))
register(_chatml(TemplateType.qwen3, None))
register(_chatml(TemplateType.yi, None))
register(_chatml(TemplateType.smollm2, SMOLLM2_SYSTEM))
register(
    TemplateSpec(
        TemplateType.chatglm3,
        ((64790, 64792),),
        ((64795,), "\n {{QUERY}}", (64796,), "\n"),
        (),
        ((64795,),),
        None,
        ((64790, 64792, 64794), "\n {{SYSTEM}}"),
        extra_stop=("<|observation|>",),
    )
)
register(
    TemplateSpec(
        TemplateType.llama,
        ("<s>[INST] ",),
        ("{{QUERY}} [/INST]",),
        ("</s><s>[INST] ",),
        ("</s>",),
        LLAMA_DEFAULT_SYSTEM,
        ("<s>[INST] <<SYS>>\n{{SYSTEM}}\n<</SYS>>\n\n",),
    )
)
register(
    TemplateSpec(
        TemplateType.llama3,
        ("<|begin_of_text|>",),
        (
            "<|start_header_id|>user<|end_header_id|>\n\n{{QUERY}}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        ("<|eot_id|>",),
        ("<|eot_id|>",),
        None,
        ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{{SYSTEM}}<|eot_id|>",),
    )
)
# The tokenizer's own chat template: rendered with apply_chat_template, so its parts are unused.
_HF_SPEC = TemplateSpec(TemplateType.hf, (), (), (), (), None, ())


# Templates whose generation prompt has Qwen3's thinking switch: with enable_thinking=False the prompt closes an
# empty think block, so the model answers directly.
THINKING_TEMPLATES = frozenset({TemplateType.qwen3})
NO_THINKING = "<think>\n\n</think>\n\n"


class Template:
    """A template bound to a tokenizer: `render` gives the exact prompt text, `encode` its token ids.

    `enable_thinking` (None: the template's default) is the thinking switch of Qwen3-style templates.
    """

    def __init__(self, spec: TemplateSpec, tokenizer: Any = None, default_system: str | None = None, *,
                 enable_thinking: bool | None = None) -> None:
        self.spec = spec
        self.template_type = spec.name
        self.tokenizer = tokenizer
        self.enable_thinking = enable_thinking
        # None keeps the template's own default; "" means no system prompt at all.
        if default_system is None:
            self.default_system = spec.default_system
        elif default_system == "":
            self.default_system = None
        else:
            self._check_system_supported()
            self.default_system = default_system

    @property
    def is_hf(self) -> bool:
        return self.spec.name == TemplateType.hf

    @property
    def support_multi_round(self) -> bool:
        return self.is_hf or self.spec.chat_sep is not None

    @property
    def support_system(self) -> bool:
        return self.is_hf or self.spec.system_prefix is not None

    def _check_system_supported(self) -> None:
        if not self.support_system:
            raise TemplateError(
                f"template {self.spec.name!r} has no system prompt", "drop --system or choose another template"
            )

    def _resolve_system(self, system: str | None) -> str | None:
        if system is None:
            return self.default_system
        if system == "":
            return None
        self._check_system_supported()
        return system

    def _check_history(self, history: History | None) -> list[tuple[str, str]]:
        pairs = [(str(q), str(r)) for q, r in (history or [])]
        if pairs and not self.support_multi_round:
            raise TemplateError(
                f"template {self.spec.name!r} is single-round and cannot take a history",
                "send the query alone, or use a chat template",
            )
        return pairs

    def _context(self, query: str, history: History | None, system: str | None,
                 keep_thinking_from: int | None = None) -> list[Part]:
        """The prompt as a list of parts with placeholders filled, adjacent strings merged.

        Qwen3-style templates drop the thinking of earlier answers, except from round `keep_thinking_from` on
        (the answers after the last user question, in a tool loop).
        """
        pairs = self._check_history(history)
        system = self._resolve_system(system)
        spec = self.spec
        parts: list[Part] = []
        if spec.auto_add_bos and self.tokenizer is not None:
            bos = self.tokenizer.bos_token_id
            if isinstance(bos, int) and bos in self.tokenizer.encode(""):
                parts.append((bos,))
        prefix = spec.prefix if system is None else (spec.system_prefix or ())
        parts += [p.replace("{{SYSTEM}}", system or "") if isinstance(p, str) else p for p in prefix]
        rounds: list[tuple[str, str | None]] = [*pairs, (query, None)]
        for i, (q, r) in enumerate(rounds):
            if not q and r is None:
                continue
            parts += [p.replace("{{QUERY}}", q) if isinstance(p, str) else p for p in spec.prompt]
            if r is not None:
                kept = keep_thinking_from is not None and i >= keep_thinking_from
                if spec.name in THINKING_TEMPLATES and "</think>" in r and not kept:
                    r = r.rpartition("</think>")[2].lstrip("\n")
                parts.append(r)
                if i < len(rounds) - 1:
                    parts += list(spec.chat_sep or ())
        merged: list[Part] = []
        for part in parts:
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] = merged[-1] + part
            else:
                merged.append(part)
        return merged

    def _token_ids(self, part: tuple[int | str, ...]) -> list[int]:
        ids: list[int] = []
        for tok in part:
            if isinstance(tok, str):
                if self.tokenizer is None:
                    raise TemplateError(f"template {self.spec.name!r} needs a tokenizer to resolve {tok}")
                value = getattr(self.tokenizer, tok)
                ids += value if isinstance(value, list) else [value]
            else:
                ids.append(tok)
        return ids

    def _messages(self, query: str, history: History | None, system: str | None) -> list[dict[str, str]]:
        pairs = self._check_history(history)
        system = self._resolve_system(system)
        messages = [{"role": "system", "content": system}] if system else []
        for q, r in pairs:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": r}]
        messages.append({"role": "user", "content": query})
        return messages

    @property
    def has_thinking_switch(self) -> bool:
        if self.is_hf:
            return "enable_thinking" in str(getattr(self.tokenizer, "chat_template", "") or "")
        return self.spec.name in THINKING_TEMPLATES

    def thinking(self, enable_thinking: bool | None) -> bool | None:
        """The switch's value for one request (None: the template's default); an error when there is no switch."""
        value = self.enable_thinking if enable_thinking is None else enable_thinking
        if value is not None and not self.has_thinking_switch:
            raise TemplateError(f"template {self.spec.name!r} has no thinking switch (enable_thinking)",
                                "drop --enable_thinking / enable_thinking for this model")
        return value

    def generation_suffix(self, enable_thinking: bool | None = None) -> str:
        """Text after the generation prompt: Qwen3's empty think block when thinking is off."""
        return NO_THINKING if not self.is_hf and self.thinking(enable_thinking) is False else ""

    def render(self, query: str, history: History | None = None, system: str | None = None, *,
               enable_thinking: bool | None = None, keep_thinking_from: int | None = None) -> str:
        """The exact prompt text for one request."""
        if self.is_hf:
            switch = self.thinking(enable_thinking)
            extra = {} if switch is None else {"enable_thinking": switch}
            return str(
                self._require_tokenizer().apply_chat_template(
                    self._messages(query, history, system), tokenize=False, add_generation_prompt=True, **extra
                )
            )
        text = []
        for part in self._context(query, history, system, keep_thinking_from):
            if isinstance(part, str):
                text.append(part)
            else:
                text.append("".join(self._require_tokenizer().convert_ids_to_tokens(self._token_ids(part))))
        return "".join(text) + self.generation_suffix(enable_thinking)

    def encode(self, query: str, history: History | None = None, system: str | None = None, *,
               enable_thinking: bool | None = None, keep_thinking_from: int | None = None) -> list[int]:
        """Token ids of the prompt; string parts are tokenized separately, as ms-swift does."""
        tokenizer = self._require_tokenizer()
        if self.is_hf:
            text = self.render(query, history, system, enable_thinking=enable_thinking)
            return list(tokenizer.encode(text, add_special_tokens=False))
        ids: list[int] = []
        for part in [*self._context(query, history, system, keep_thinking_from),
                     self.generation_suffix(enable_thinking)]:
            if isinstance(part, str):
                if part:
                    ids += tokenizer(part, add_special_tokens=False, return_attention_mask=False)["input_ids"]
            else:
                ids += self._token_ids(part)
        return ids

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise TemplateError(f"template {self.spec.name!r} needs a tokenizer for this", "pass tokenizer=")
        return self.tokenizer

    @property
    def stop_words(self) -> list[str]:
        """Strings that end an answer (the suffix's text parts)."""
        words = [p for p in self.spec.suffix if isinstance(p, str)]
        return [*words, *self.spec.extra_stop]

    @property
    def stop_token_ids(self) -> list[int]:
        """Token ids that end an answer: the suffix's ids and single-token stop words, plus EOS."""
        ids: list[int] = []
        tokenizer = self.tokenizer
        for part in self.spec.suffix:
            if isinstance(part, tuple):
                ids += self._token_ids(part)
        if tokenizer is not None:
            for word in self.stop_words:
                word_ids = tokenizer.encode(word, add_special_tokens=False)
                if len(word_ids) == 1:
                    ids += word_ids
            if isinstance(tokenizer.eos_token_id, int):
                ids.append(tokenizer.eos_token_id)
        return sorted(set(ids))


def get_template(template_type: str, tokenizer: Any = None, default_system: str | None = None, *,
                 enable_thinking: bool | None = None, **_: Any) -> Template:
    """ms-swift's get_template: a template by name, bound to a tokenizer."""
    return Template(get(template_type), tokenizer, default_system, enable_thinking=enable_thinking)
