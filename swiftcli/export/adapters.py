"""Is this directory a LoRA adapter that an engine on this base model can serve? Checked from files alone.

Used before an adapter reaches vLLM (runtime loading in `deploy`, checkpoint sweeps, parity checks): vLLM's own
errors for a wrong base arrive late (at the first request) and name internals. The base check compares the
shapes of the adapter's LoRA matrices with the base model's weights, read from the safetensors headers, so it
needs neither torch nor the weights in memory, and it does not trust names (a hub id in adapter_config.json
and a local path can be the same model).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftcli.config.spec import ModelSpec
from swiftcli.errors import CheckpointError
from swiftcli.hub.resolve import read_json

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors",)
PEFT_PREFIX = "base_model.model."
# The largest safetensors header we read; real ones are kilobytes to a few MiB.
MAX_HEADER_BYTES = 64 * 1024 * 1024
# The ranks vLLM's LoRA kernels are built for (vllm.config.lora.MaxLoRARanks).
ENGINE_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter is: where, its rank (the largest, with rank_pattern), alpha and target modules."""

    path: Path
    rank: int
    alpha: float
    target_modules: tuple[str, ...] = ()
    base_name: str | None = None
    modules: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)


def read_adapter_config(path: Path) -> dict[str, Any]:
    config_path = path / ADAPTER_CONFIG
    if not path.is_dir():
        raise CheckpointError(f"LoRA adapter {path} does not exist or is not a directory")
    if not config_path.is_file():
        raise CheckpointError(f"{path} is not a LoRA adapter (no {ADAPTER_CONFIG})",
                              "point at a checkpoint folder that peft saved")
    return read_json(config_path, f"{ADAPTER_CONFIG} of {path}")


def adapter_rank(config: dict[str, Any]) -> int:
    """The largest rank the adapter uses (r, or a larger one in rank_pattern)."""
    ranks = [config.get("r")]
    pattern = config.get("rank_pattern")
    if isinstance(pattern, dict):
        ranks += list(pattern.values())
    valid = [r for r in ranks if isinstance(r, int) and not isinstance(r, bool) and r > 0]
    return max(valid) if valid else 0


def check_adapter(path: str | Path, base_spec: ModelSpec | None = None, max_lora_rank: int | None = None
                  ) -> AdapterInfo:
    """Raise CheckpointError unless `path` holds a LoRA adapter of `base_spec` with rank <= `max_lora_rank`.

    Either check is skipped when its argument is None. Messages name the adapter path (the caller's input)
    but never the base model's directory, so a server can show them to its clients.
    """
    path = Path(path).expanduser()
    config = read_adapter_config(path)
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise CheckpointError(f"{path} is a {peft_type} adapter, not LoRA", "only LoRA adapters can be served")
    rank = adapter_rank(config)
    if rank < 1:
        raise CheckpointError(f"{path}: {ADAPTER_CONFIG} has no valid rank 'r'")
    if max_lora_rank is not None and rank > max_lora_rank:
        raise CheckpointError(f"{path} has LoRA rank {rank}, more than the engine's max_lora_rank {max_lora_rank}",
                              f"start the engine with --max_lora_rank {engine_rank(rank)}")
    weights = _adapter_weights(path)
    modules = 0
    base = config.get("base_model_name_or_path")
    if base_spec is not None:
        modules = _check_shapes(path, weights, base_spec.model_dir, base if isinstance(base, str) else None)
    targets = config.get("target_modules")
    target_list = (targets,) if isinstance(targets, str) else tuple(str(t) for t in targets or ())
    return AdapterInfo(path.resolve(), rank, float(config.get("lora_alpha") or rank), target_list,
                       base if isinstance(base, str) else None, modules)


def engine_rank(rank: int) -> int:
    """The smallest rank limit the engine accepts that holds `rank`."""
    for allowed in ENGINE_RANKS:
        if allowed >= rank:
            return allowed
    raise CheckpointError(f"LoRA rank {rank} is above the largest the engine supports ({ENGINE_RANKS[-1]})")


def _adapter_weights(path: Path) -> Path | None:
    for name in ADAPTER_WEIGHTS:
        if (path / name).is_file():
            return path / name
    if (path / "adapter_model.bin").is_file():
        return None  # a pickle: its shapes cannot be read without torch; the engine checks it on load
    raise CheckpointError(f"{path} has {ADAPTER_CONFIG} but no adapter weights (adapter_model.safetensors)")


def safetensors_shapes(file: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a .safetensors header (8-byte little-endian length, then JSON)."""
    try:
        with open(file, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"{file.name} is not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES:
                raise CheckpointError(f"{file.name} is not a safetensors file (header of {length} bytes)")
            header = json.loads(f.read(length))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {file.name}: {exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file.name} is not a safetensors file")
    return {k: list(v.get("shape", [])) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def _base_shapes(model_dir: Path) -> dict[str, list[int]] | None:
    """Weight shapes of the base model, or None when its weights are not safetensors."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, list[int]] = {}
    for file in files:
        shapes.update(safetensors_shapes(file))
    return shapes


def _check_shapes(path: Path, weights: Path | None, model_dir: Path, trained_on: str | None = None) -> int:
    """Every LoRA pair must fit a base weight: A is [r, in], B is [out, r], the base weight [out, in]."""
    hint = f"it was trained on {trained_on}: serve it with that model" if trained_on else \
        "serve it with the model it was trained on"
    base = _base_shapes(model_dir)
    if weights is None or base is None:
        return 0
    adapter = safetensors_shapes(weights)
    checked = 0
    for key, shape in adapter.items():
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0].removeprefix(PEFT_PREFIX)
        base_shape = base.get(f"{module}.weight")
        b_shape = adapter.get(key.replace(".lora_A.", ".lora_B."))
        if base_shape is None:
            raise CheckpointError(f"{path} is not an adapter of this base model: it adapts {module}, "
                                  "which the base model does not have", hint)
        if len(base_shape) != 2 or b_shape is None or len(shape) != 2 or len(b_shape) != 2:
            continue
        if shape[1] != base_shape[1] or b_shape[0] != base_shape[0]:
            raise CheckpointError(
                f"{path} is not an adapter of this base model: {module} is {b_shape[0]}x{shape[1]} in the "
                f"adapter but {base_shape[0]}x{base_shape[1]} in the base",
                hint,
            )
        checked += 1
    return checked
