"""A model directory of a given shape with no weights, for runs with vLLM's dummy weights
(`--engine_kwargs '{"load_format": "dummy"}'`): config.json plus the embedded model's tokenizer files.

    python benchmarks/make_shape.py /tmp/llama-8b-shape            # Llama-3-8B's shape, the embedded vocabulary
    python benchmarks/make_shape.py /tmp/qwen2.5-vl-7b --shape qwen2_5_vl_7b   # Qwen2.5-VL-7B's shape, with images

The Qwen2.5-VL shape has Qwen2.5-VL-7B-Instruct's language model and vision tower (and its image processor's
settings), the embedded model's vocabulary plus Qwen's vision tokens, and a Qwen2-VL chat template: the work per
image and per token is the 7B model's, the prompts' text tokens are the embedded tokenizer's.

Weights are random then: fix output lengths with ignore_eos.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128}
QWEN2_5_VL_7B = {
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "max_window_layers": 28, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "sliding_window": 32768, "use_sliding_window": False, "tie_word_embeddings": False, "vocab_size": 152064,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
}
QWEN_VL_PREPROCESSOR = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
}
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
QWEN_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SHAPES = {"llama_8b": LLAMA_8B, "qwen2_5_vl_7b": QWEN2_5_VL_7B}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json",
                   "special_tokens_map.json")


def embedded_dir(source: Path | None) -> Path:
    """Where the tokenizer (and base config) come from: `source`, else the embedded model."""
    if source is not None:
        return source
    from swiftcli.hub.resolve import resolve_model

    return resolve_model().model_dir


def make_shape(out: Path, shape: dict[str, int], source: Path | None = None) -> Path:
    embedded = embedded_dir(source)
    base = json.loads((embedded / "config.json").read_text())
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "vocab_size": base["vocab_size"], "bos_token_id": base.get("bos_token_id"),
        "eos_token_id": base.get("eos_token_id"), "pad_token_id": base.get("pad_token_id"),
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
        "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}, "dtype": "bfloat16",
        "attention_bias": False, "mlp_bias": False, **shape,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (embedded / name).is_file():
            shutil.copy2(embedded / name, out / name)
    return out


def make_qwen_vl_shape(out: Path, shape: dict[str, object], source: Path | None = None) -> Path:
    """Qwen2.5-VL: the vision tokens join the embedded tokenizer, and the config names their ids there."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_dir(source))
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION_TOKENS)})
    tokenizer.chat_template = QWEN_VL_TEMPLATE
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(QWEN_VL_TEMPLATE)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in VISION_TOKENS}
    config = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "hidden_act": "silu",
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "attention_dropout": 0.0,
        "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"], "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"], "torch_dtype": "bfloat16", "initializer_range": 0.02, **shape,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(QWEN_VL_PREPROCESSOR, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama_8b")
    parser.add_argument("--tokenizer_from", type=Path, default=None,
                        help="a folder with the embedded model's config.json and tokenizer files (default: the model)")
    args = parser.parse_args()
    build = make_qwen_vl_shape if args.shape == "qwen2_5_vl_7b" else make_shape
    print(build(args.out, SHAPES[args.shape], args.tokenizer_from))


if __name__ == "__main__":
    main()
