"""A model directory of a given shape with no weights, for runs with vLLM's dummy weights
(`--engine_kwargs '{"load_format": "dummy"}'`): config.json plus the embedded model's tokenizer files.

    python benchmarks/make_shape.py /tmp/llama-8b-shape            # Llama-3-8B's shape, the embedded vocabulary

Weights are random then: fix output lengths with ignore_eos.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json",
                   "special_tokens_map.json")


def make_shape(out: Path, shape: dict[str, int]) -> Path:
    from swiftcli.hub.resolve import resolve_model

    embedded = resolve_model().model_dir
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(make_shape(args.out, LLAMA_8B))


if __name__ == "__main__":
    main()
