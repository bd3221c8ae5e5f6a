"""A tiny vision-language model with random weights, for tests and demos that must run on a CPU with no downloads.

    python benchmarks/make_tiny_vlm.py /tmp/tiny-vlm

The architecture is Idefics3 (SmolVLM's): vLLM's CPU build runs it and transformers' PIL image processor loads it
without torchvision. The text model is a 2-layer Llama with head size 64 (vLLM's CPU attention refuses 16), the
vision tower a 2-layer SigLIP-style encoder on 32x32 tiles of 8x8 patches; images are split into up to 2x2 tiles
plus a global view, 4 image tokens each. Weights are random but fixed by the seed and saved as float32
safetensors, with the processor config and the embedded model's tokenizer extended with Idefics3's special tokens
and a chat template in SmolVLM's format.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TILE = 32  # the vision encoder's input size (max_image_size)
PATCH = 8
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (TILE // PATCH) ** 2 // SCALE_FACTOR**2
GRID = 6  # Idefics3's processor knows <row_i_col_j> tokens up to 6x6
SPECIAL_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>",
                  *[f"<row_{i}_col_{j}>" for i in range(1, GRID + 1) for j in range(1, GRID + 1)]]

# SmolVLM's chat format: "User:<image>text<end_of_utterance>\nAssistant: ...". Content may be a string or a list
# of {"type": "text"|"image"} parts, as processors' apply_chat_template passes it.
CHAT_TEMPLATE = (
    "<|im_start|>"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<end_of_utterance>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def make_tiny_vlm(out: Path, seed: int = 0) -> Path:
    """Write the model into `out` (created) and return it."""
    import torch
    from transformers import (
        AutoTokenizer,
        GenerationConfig,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
    )
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from swiftcli.hub.resolve import resolve_model

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model().model_dir))
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    vocab_size = -(-len(tokenizer) // 64) * 64
    end_of_utterance = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    config = Idefics3Config(
        text_config={
            "model_type": "llama", "vocab_size": vocab_size, "hidden_size": 128, "intermediate_size": 256,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64,
            "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": end_of_utterance,
        },
        vision_config={
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 1,
            "image_size": TILE, "patch_size": PATCH,
        },
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config.dtype = "float32"
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    with torch.no_grad():
        # Wider than the default init so that greedy picks are not near-ties between tokens.
        model.lm_head.weight.normal_(0.0, 0.5)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=[end_of_utterance, tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out, safe_serialization=True)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * TILE}, max_image_size={"longest_edge": TILE}, do_image_splitting=True,
    )
    processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=IMAGE_SEQ_LEN,
                                  chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text("A tiny Idefics3 with random weights (benchmarks/make_tiny_vlm.py). "
                                   + json.dumps({"seed": seed}) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_tiny_vlm(args.out, args.seed))


if __name__ == "__main__":
    main()
