"""LoRA adapters checked before an engine starts: a readable adapter_config.json, a rank the engine accepts,
and weights shaped for the base model. Otherwise a bad adapter only fails on its first request.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swiftcli.errors import CheckpointError

# The ranks vLLM's LoRA kernels are built for (vllm.config.lora.MaxLoRARanks).
ENGINE_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: Path
    rank: int
    base: str | None


def check_adapter(name: str, path: Path, model_dir: Path) -> AdapterInfo:
    """Read `path`'s adapter_config.json and check its weights against the base model in `model_dir`."""
    config = _read_json(path / "adapter_config.json", name)
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise CheckpointError(f"LoRA adapter {name}: adapter_config.json has no valid rank `r` ({rank!r})")
    ranks = config.get("rank_pattern") or {}
    rank = max([rank, *[r for r in ranks.values() if isinstance(r, int)]])
    widths = _model_widths(model_dir)
    for tensor, shape in _lora_a_shapes(path, name).items():
        # lora_A is (rank, in_features): its input width must be one of the base model's layer widths.
        if len(shape) == 2 and widths and shape[1] not in widths:
            raise CheckpointError(
                f"LoRA adapter {name} does not fit the base model {model_dir.name}: {tensor} takes inputs of "
                f"width {shape[1]}, the model's layers have {sorted(widths)}",
                f"it was trained on {config.get('base_model_name_or_path') or 'another model'}; serve it with "
                "that base model",
            )
    return AdapterInfo(name, path, rank, config.get("base_model_name_or_path"))


def engine_rank(rank: int) -> int:
    """The smallest rank limit the engine accepts that holds `rank`."""
    for allowed in ENGINE_RANKS:
        if allowed >= rank:
            return allowed
    raise CheckpointError(f"LoRA rank {rank} is above the largest the engine supports ({ENGINE_RANKS[-1]})")


def _read_json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"LoRA adapter {name}: cannot read {path.name} ({exc.strerror or exc})") from None
    except ValueError:
        raise CheckpointError(f"LoRA adapter {name}: {path.name} is not valid JSON") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"LoRA adapter {name}: {path.name} is not a JSON object")
    return data


def _model_widths(model_dir: Path) -> set[int]:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    widths = {config.get(k) for k in ("hidden_size", "intermediate_size", "moe_intermediate_size")}
    heads, head_dim = config.get("num_attention_heads"), config.get("head_dim")
    if isinstance(heads, int) and isinstance(head_dim, int):
        widths.add(heads * head_dim)  # o_proj's input when heads x head_dim != hidden_size
    return {w for w in widths if isinstance(w, int)}


def _lora_a_shapes(path: Path, name: str) -> dict[str, list[int]]:
    """lora_A tensor shapes from adapter_model.safetensors' header (no weights are read)."""
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        return {}  # a .bin adapter: vLLM checks it when it loads
    try:
        with open(weights, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
    except (OSError, ValueError, struct.error):
        raise CheckpointError(f"LoRA adapter {name}: {weights.name} is not a readable safetensors file") from None
    return {k: v.get("shape", []) for k, v in header.items() if "lora_A" in k and isinstance(v, dict)}
