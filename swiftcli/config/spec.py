"""Typed configuration: what to load (ModelSpec), how to run it (EngineConfig), how to sample (GenerationConfig)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from swiftcli.errors import UsageError


@dataclass(frozen=True)
class ModelSpec:
    """A model resolved to files on disk, with everything needed to prompt it."""

    model_dir: Path
    model_type: str | None
    template_type: str
    default_system: str | None = None
    adapters: tuple[Path, ...] = ()
    torch_dtype: str | None = None
    requires: tuple[str, ...] = ()
    support_vllm: bool = True
    ckpt_dir: Path | None = None
    quantization: str | None = None

    @property
    def name(self) -> str:
        """A short display name: the model type, else the directory's name."""
        return self.model_type or self.model_dir.name


@dataclass
class EngineConfig:
    """Engine settings; None means "the right default for this platform" (see engines.vllm.platform_defaults)."""

    dtype: str | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    enforce_eager: bool | None = None
    max_num_seqs: int | None = None
    seed: int = 0
    trust_remote_code: bool = False
    enable_lora: bool = False
    max_lora_rank: int = 16
    max_loras: int = 1
    distributed_executor_backend: str | None = None
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.engine_kwargs, str):
            self.engine_kwargs = parse_json_object(self.engine_kwargs, "engine_kwargs")
        for name in ("tensor_parallel_size", "pipeline_parallel_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise UsageError("--gpu_memory_utilization must be in (0, 1]")


def parse_json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--{option} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--{option} must be a JSON object, e.g. '{{\"max_num_seqs\": 64}}'")
    return value


# The generation_config.json keys that say how a model wants to be sampled.
SAMPLING_KEYS = frozenset({"do_sample", "temperature", "top_p", "top_k", "repetition_penalty"})


@dataclass
class GenerationConfig:
    """Sampling settings, like transformers.GenerationConfig; mutable so callers can tweak an engine's."""

    max_new_tokens: int | None = 2048
    temperature: float = 0.3
    top_p: float = 0.7
    top_k: int = 20
    repetition_penalty: float = 1.0
    do_sample: bool = True
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False
    logprobs: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UsageError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise UsageError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise UsageError("top_p must be in (0, 1]")
        if self.n < 1:
            raise UsageError("n must be at least 1")

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    def copy(self, **changes: Any) -> GenerationConfig:
        return replace(self, stop=list(self.stop), **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_model(cls, spec: ModelSpec, **overrides: Any) -> GenerationConfig:
        """An engine's defaults: the checkpoint's generation_config.json; where it sets no sampling, the
        registry's defaults for the model type; then ms-swift's fallback (this class's defaults)."""
        from swiftcli.registry.models import generation_defaults

        return cls.from_model_dir(spec.model_dir, defaults=generation_defaults(spec.model_type), **overrides)

    @classmethod
    def from_model_dir(cls, model_dir: Path, defaults: dict[str, Any] | None = None,
                       **overrides: Any) -> GenerationConfig:
        """Defaults from the model's generation_config.json, then explicit overrides (None = keep).

        `defaults` (sampling fields) apply only when the file sets none of SAMPLING_KEYS: a checkpoint that
        states its sampling keeps it whole, rather than a mix of its own and ours.
        """
        values: dict[str, Any] = {}
        path = Path(model_dir) / "generation_config.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                data = {}
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in data.items() if k in known and v is not None}
            values.pop("stop", None)
            if "max_new_tokens" in values and not isinstance(values["max_new_tokens"], int):
                values.pop("max_new_tokens")
        if defaults and not SAMPLING_KEYS & values.keys():
            values = {**defaults, **values}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
