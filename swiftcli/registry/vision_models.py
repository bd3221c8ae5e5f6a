"""Vision-language model types, and how a local model directory is recognized as one.

The template names are ms-swift's. Each of these models ships its own chat template with its processor, and
swiftcli prompts them through it (the `hf` template), so prompts match transformers' `apply_chat_template` and
vLLM's expansion of the image placeholders exactly; the ms-swift names are accepted as aliases of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swiftcli.registry.models import ModelInfo, register
from swiftcli.registry.templates import alias_hf_template

IMAGE = ("image",)
IMAGE_VIDEO = ("image", "video")

# ms-swift's template names for these families.
VISION_TEMPLATES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl2_5", "llava1_5_hf", "llava_next_hf",
                    "idefics3", "smolvlm", "gemma3_vision", "minicpmv2_6")
for _name in VISION_TEMPLATES:
    alias_hf_template(_name)

# config.json model_type -> what the architecture takes, for directories that are not registered.
CONFIG_MODALITIES: dict[str, tuple[str, ...]] = {
    "qwen2_vl": IMAGE_VIDEO, "qwen2_5_vl": IMAGE_VIDEO, "qwen3_vl": IMAGE_VIDEO, "qwen3_vl_moe": IMAGE_VIDEO,
    "internvl_chat": IMAGE_VIDEO, "internvl": IMAGE_VIDEO, "llava": IMAGE, "llava_next": IMAGE,
    "llava_next_video": IMAGE_VIDEO, "llava_onevision": IMAGE_VIDEO, "idefics3": IMAGE, "smolvlm": IMAGE_VIDEO,
    "gemma3": IMAGE, "minicpmv": IMAGE_VIDEO, "mllama": IMAGE, "paligemma": IMAGE, "pixtral": IMAGE,
    "mistral3": IMAGE,
}


def config_modalities(config: Mapping[str, Any]) -> tuple[str, ...]:
    """What a model directory's config.json says the model takes besides text."""
    known = CONFIG_MODALITIES.get(str(config.get("model_type", "")))
    if known is not None:
        return known
    # An unlisted architecture with a vision tower still takes images.
    return IMAGE if isinstance(config.get("vision_config"), dict) else ()


def _vl(model_type: str, modelscope_id: str, hf_id: str, template: str, modalities: tuple[str, ...] = IMAGE_VIDEO,
        remote_code: bool = False) -> ModelInfo:
    return ModelInfo(model_type, modelscope_id, hf_id, template, remote_code=remote_code, modalities=modalities)


for _info in [
    *[_vl(f"qwen2-vl-{size}-instruct", f"Qwen/Qwen2-VL-{size.upper()}-Instruct",
          f"Qwen/Qwen2-VL-{size.upper()}-Instruct", "qwen2_vl") for size in ("2b", "7b", "72b")],
    *[_vl(f"qwen2_5-vl-{size}-instruct", f"Qwen/Qwen2.5-VL-{size.upper()}-Instruct",
          f"Qwen/Qwen2.5-VL-{size.upper()}-Instruct", "qwen2_5_vl") for size in ("3b", "7b", "32b", "72b")],
    *[_vl(f"qwen3-vl-{size}-instruct", f"Qwen/Qwen3-VL-{size.upper()}-Instruct",
          f"Qwen/Qwen3-VL-{size.upper()}-Instruct", "qwen3_vl") for size in ("2b", "4b", "8b", "32b")],
    *[_vl(f"internvl2_5-{size}", f"OpenGVLab/InternVL2_5-{size.upper()}", f"OpenGVLab/InternVL2_5-{size.upper()}",
          "internvl2_5", remote_code=True) for size in ("1b", "2b", "4b", "8b", "26b", "38b", "78b")],
    *[_vl(f"internvl3-{size}", f"OpenGVLab/InternVL3-{size.upper()}", f"OpenGVLab/InternVL3-{size.upper()}",
          "internvl2_5", remote_code=True) for size in ("1b", "2b", "8b", "14b", "38b", "78b")],
    _vl("llava1_5-7b-hf", "llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-7b-hf", "llava1_5_hf", IMAGE),
    _vl("llava1_5-13b-hf", "llava-hf/llava-1.5-13b-hf", "llava-hf/llava-1.5-13b-hf", "llava1_5_hf", IMAGE),
    _vl("llava1_6-mistral-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf", "llava-hf/llava-v1.6-mistral-7b-hf",
        "llava_next_hf", IMAGE),
    _vl("llava1_6-vicuna-7b-hf", "llava-hf/llava-v1.6-vicuna-7b-hf", "llava-hf/llava-v1.6-vicuna-7b-hf",
        "llava_next_hf", IMAGE),
    _vl("idefics3-8b-llama3", "AI-ModelScope/Idefics3-8B-Llama3", "HuggingFaceM4/Idefics3-8B-Llama3", "idefics3",
        IMAGE),
    *[_vl(f"smolvlm-{size}-instruct", f"HuggingFaceTB/SmolVLM-{size.upper()}-Instruct",
          f"HuggingFaceTB/SmolVLM-{size.upper()}-Instruct", "smolvlm", IMAGE) for size in ("256m", "500m")],
    _vl("smolvlm-instruct", "HuggingFaceTB/SmolVLM-Instruct", "HuggingFaceTB/SmolVLM-Instruct", "smolvlm", IMAGE),
    *[_vl(f"gemma3-{size}-it", f"LLM-Research/gemma-3-{size}-it", f"google/gemma-3-{size}-it", "gemma3_vision",
          IMAGE) for size in ("4b", "12b", "27b")],
    _vl("minicpm-v-2_6", "OpenBMB/MiniCPM-V-2_6", "openbmb/MiniCPM-V-2_6", "minicpmv2_6", remote_code=True),
]:
    register(_info)
