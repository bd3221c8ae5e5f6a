"""Model types: hub ids, template, dtype, requirements and vLLM support, as data."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from swiftcli.errors import ModelNotFoundError
from swiftcli.registry.templates import TemplateType


@dataclass(frozen=True)
class ModelInfo:
    model_type: str
    modelscope_id: str | None
    hf_id: str | None
    template: str
    torch_dtype: str = "bfloat16"
    requires: tuple[str, ...] = ()
    support_vllm: bool = True
    remote_code: bool = False
    quantization: str | None = None
    embedded: bool = False
    # Sampling used when the checkpoint's generation_config.json sets none (GenerationConfig field names).
    generation_defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # What the model takes besides text: "image", "video" (empty for text-only models).
    modalities: tuple[str, ...] = ()

    @property
    def takes_images(self) -> bool:
        return "image" in self.modalities


_MODELS: dict[str, ModelInfo] = {}


def register(info: ModelInfo, *, exist_ok: bool = False) -> None:
    """Add a model type; third parties call this the same way the built-ins do."""
    if info.model_type in _MODELS and not exist_ok:
        raise ValueError(f"model_type {info.model_type!r} is already registered")
    _MODELS[info.model_type] = info


def names() -> list[str]:
    return sorted(_MODELS)


def all_models() -> list[ModelInfo]:
    return [_MODELS[name] for name in names()]


def get(model_type: str) -> ModelInfo:
    if model_type not in _MODELS:
        close = difflib.get_close_matches(model_type, names(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "run `swiftcli models` to list them"
        raise ModelNotFoundError(f"unknown model_type {model_type!r}", hint)
    return _MODELS[model_type]


def find_by_hub_id(model_id: str) -> ModelInfo | None:
    """The registry entry whose ModelScope or Hugging Face id (or its last component) matches."""
    key = model_id.rstrip("/").lower()
    tail = key.rsplit("/", 1)[-1]
    for info in _MODELS.values():
        for hub_id in (info.modelscope_id, info.hf_id):
            if hub_id and (hub_id.lower() == key or hub_id.lower().rsplit("/", 1)[-1] == tail):
                return info
    return None


T = TemplateType
_GPTQ = ("optimum", "gptqmodel")
# The embedded 135M model's first token for "What is the capital of France?" is a near-tie ("The" 0.155, "L" 0.14):
# any sampling picks the wrong branch in a share of fresh chats, and that branch loops. Greedy with a light
# repetition penalty answered every question right with no loop (benchmarks/first_answers.py, RESULTS.md).
# Temperature 0 rather than do_sample false, so that `--temperature 0.7` (or /set) alone turns sampling on.
_SMOLLM2_DEFAULTS = {"temperature": 0.0, "repetition_penalty": 1.1}
# As the model cards (and their generation_config.json) publish them; top_k 0 where the card sets none.
_QWEN2_5_DEFAULTS = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
_QWEN3_DEFAULTS = {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20}  # thinking mode
_LLAMA3_DEFAULTS = {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 0}
for _info in [
    ModelInfo("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct",
              "HuggingFaceTB/SmolLM2-135M-Instruct", T.smollm2, embedded=True,
              generation_defaults=_SMOLLM2_DEFAULTS),
    ModelInfo("qwen-7b-chat", "qwen/Qwen-7B-Chat", "Qwen/Qwen-7B-Chat", T.qwen,
              requires=("tiktoken",), remote_code=True),
    ModelInfo("qwen-7b", "qwen/Qwen-7B", "Qwen/Qwen-7B", T.default_generation,
              requires=("tiktoken",), remote_code=True),
    ModelInfo("chatglm3-6b", "ZhipuAI/chatglm3-6b", "THUDM/chatglm3-6b", T.chatglm3,
              torch_dtype="float16", remote_code=True),
    ModelInfo("yi-6b-chat", "01ai/Yi-6B-Chat", "01-ai/Yi-6B-Chat", T.yi),
    ModelInfo("qwen1half-7b-chat", "qwen/Qwen1.5-7B-Chat", "Qwen/Qwen1.5-7B-Chat", T.qwen),
    ModelInfo("qwen1half-7b-chat-int4", "qwen/Qwen1.5-7B-Chat-GPTQ-Int4", "Qwen/Qwen1.5-7B-Chat-GPTQ-Int4",
              T.qwen, torch_dtype="float16", requires=_GPTQ, quantization="gptq"),
    ModelInfo("llama2-7b-chat", "modelscope/Llama-2-7b-chat-ms", "meta-llama/Llama-2-7b-chat-hf", T.llama,
              torch_dtype="float16"),
    ModelInfo("qwen2_5-0_5b-instruct", "qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", T.qwen2_5,
              generation_defaults=_QWEN2_5_DEFAULTS),
    ModelInfo("qwen2_5-1_5b-instruct", "qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", T.qwen2_5,
              generation_defaults=_QWEN2_5_DEFAULTS),
    ModelInfo("qwen2_5-7b-instruct", "qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", T.qwen2_5,
              generation_defaults=_QWEN2_5_DEFAULTS),
    ModelInfo("qwen2_5-72b-instruct", "qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-72B-Instruct", T.qwen2_5,
              generation_defaults=_QWEN2_5_DEFAULTS),
    ModelInfo("qwen3-0_6b", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B", T.qwen3,
              generation_defaults=_QWEN3_DEFAULTS),
    ModelInfo("qwen3-4b", "Qwen/Qwen3-4B", "Qwen/Qwen3-4B", T.qwen3,
              generation_defaults=_QWEN3_DEFAULTS),
    ModelInfo("qwen3-8b", "Qwen/Qwen3-8B", "Qwen/Qwen3-8B", T.qwen3,
              generation_defaults=_QWEN3_DEFAULTS),
    ModelInfo("qwen3-32b", "Qwen/Qwen3-32B", "Qwen/Qwen3-32B", T.qwen3,
              generation_defaults=_QWEN3_DEFAULTS),
    ModelInfo("llama3-8b-instruct", "LLM-Research/Meta-Llama-3-8B-Instruct",
              "meta-llama/Meta-Llama-3-8B-Instruct", T.llama3,
              generation_defaults=_LLAMA3_DEFAULTS),
    ModelInfo("llama3_1-8b-instruct", "LLM-Research/Meta-Llama-3.1-8B-Instruct",
              "meta-llama/Llama-3.1-8B-Instruct", T.llama3,
              generation_defaults=_LLAMA3_DEFAULTS),
    ModelInfo("llama3_2-1b-instruct", "LLM-Research/Llama-3.2-1B-Instruct",
              "meta-llama/Llama-3.2-1B-Instruct", T.llama3,
              generation_defaults=_LLAMA3_DEFAULTS),
    ModelInfo("llama3_2-3b-instruct", "LLM-Research/Llama-3.2-3B-Instruct",
              "meta-llama/Llama-3.2-3B-Instruct", T.llama3,
              generation_defaults=_LLAMA3_DEFAULTS),
]:
    register(_info)


class ModelType:
    """Constants for every registered model type: ModelType.qwen_7b_chat == "qwen-7b-chat"."""

    smollm2_135m_instruct = "smollm2-135m-instruct"
    qwen_7b_chat = "qwen-7b-chat"
    qwen_7b = "qwen-7b"
    chatglm3_6b = "chatglm3-6b"
    yi_6b_chat = "yi-6b-chat"
    qwen1half_7b_chat = "qwen1half-7b-chat"
    qwen1half_7b_chat_int4 = "qwen1half-7b-chat-int4"
    llama2_7b_chat = "llama2-7b-chat"
    qwen2_5_0_5b_instruct = "qwen2_5-0_5b-instruct"
    qwen2_5_1_5b_instruct = "qwen2_5-1_5b-instruct"
    qwen2_5_7b_instruct = "qwen2_5-7b-instruct"
    qwen2_5_72b_instruct = "qwen2_5-72b-instruct"
    qwen3_0_6b = "qwen3-0_6b"
    qwen3_4b = "qwen3-4b"
    qwen3_8b = "qwen3-8b"
    qwen3_32b = "qwen3-32b"
    llama3_8b_instruct = "llama3-8b-instruct"
    llama3_1_8b_instruct = "llama3_1-8b-instruct"
    llama3_2_1b_instruct = "llama3_2-1b-instruct"
    llama3_2_3b_instruct = "llama3_2-3b-instruct"

    @classmethod
    def get_model_name_list(cls) -> list[str]:
        return names()


def generation_defaults(model_type: str | None) -> dict[str, Any]:
    """The registered sampling defaults of a model type; empty for an unknown or unregistered one."""
    info = _MODELS.get(model_type) if model_type else None
    return dict(info.generation_defaults) if info else {}


def get_default_template_type(model_type: str) -> str:
    """ms-swift's get_default_template_type."""
    return get(model_type).template
