"""Typed configuration: what to load (ModelSpec), how to run it (EngineConfig), how to sample (GenerationConfig)."""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swiftcli.config.distributed import check_distributed
from swiftcli.errors import UsageError
from swiftcli.registry.models import generation_defaults


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
    # What the model takes besides text ("image", "video"); empty for a text-only model.
    modalities: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """A short display name: the model type, else the directory's name."""
        return self.model_type or self.model_dir.name


def setting(default: Any = None, help: str = "", *aliases: str, panel: str = "", choices: tuple[str, ...] = (),
            name: str | None = None, cli: bool = True, default_factory: Any = None) -> Any:
    """A config field with its one default and its one help text. The CLI derives its options from these:
    `name` is the option's name when it differs from the field's, `aliases` other accepted names, `panel` the help
    group; `cli=False` keeps a field out of the command line."""
    metadata = {"help": help, "aliases": aliases, "panel": panel, "choices": choices, "name": name, "cli": cli}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


MODEL = "Model"
ENGINE = "Engine"
GENERATION = "Generation"
SCALING = "Scaling out"


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings; None means "the right default for this platform" (see engines.vllm.platform_defaults).

    Frozen: code that needs other settings makes a copy (`dataclasses.replace`), so the caller's stays as given.
    """

    dtype: str | None = setting(None, "bf16, fp16, fp32 or auto; default fp32 on CPU, the model's on GPU.",
                                "torch_dtype", panel=MODEL)
    max_model_len: int | None = setting(None, "Context length; default the model's.", panel=ENGINE)
    gpu_memory_utilization: float | None = setting(
        None, "Fraction of GPU memory for vLLM (CPU: a 2 GiB KV cache).", panel=ENGINE)
    tensor_parallel_size: int = setting(1, "Tensor-parallel workers.", panel=ENGINE)
    pipeline_parallel_size: int = setting(1, "Pipeline-parallel stages.", panel=ENGINE)
    enforce_eager: bool | None = setting(None, "Eager mode; default true on CPU, false on GPU.", panel=ENGINE)
    max_num_seqs: int | None = setting(None, "Most sequences per engine step; default vLLM's.", panel=ENGINE)
    seed: int = setting(0, "Engine seed (the CLI takes it from --seed).", cli=False)
    trust_remote_code: bool = setting(False, "Run code shipped with the model.", panel=ENGINE)
    enable_lora: bool = setting(False, "Serve a LoRA --ckpt-dir as an adapter on vLLM.", panel=ENGINE,
                                name="vllm_enable_lora")
    max_lora_rank: int = setting(16, "Largest LoRA rank vLLM accepts.", panel=ENGINE)
    max_loras: int = setting(1, "LoRA adapters in one engine step.", cli=False)
    distributed_executor_backend: str | None = setting(
        None, "mp (one node, default) or ray (several).", panel=ENGINE, choices=("mp", "ray"))
    limit_mm_per_prompt: dict[str, int] = setting(
        help="Most images/videos per prompt, as JSON, e.g. '{\"image\": 4, \"video\": 1}'; default vLLM's.",
        panel=ENGINE, default_factory=dict)
    engine_kwargs: dict[str, Any] = setting(
        help="More vLLM engine arguments as JSON, e.g. '{\"max_num_seqs\": 64}'.", panel=ENGINE,
        default_factory=dict)
    # Scaling out (vLLM data parallel, multi-node, Ray): checked in config.distributed.
    data_parallel_size: int = setting(1, "Engine replicas (vLLM data parallel), each of TP x PP workers.",
                                      "vllm_data_parallel_size", panel=SCALING)
    data_parallel_size_local: int | None = setting(
        None, "Data-parallel replicas on this node; default all (one node) or an even share (--nnodes).",
        panel=SCALING)
    data_parallel_address: str | None = setting(
        None, "Head node address of the data-parallel engines; default --master-addr.", panel=SCALING)
    nnodes: int = setting(1, "Nodes in a multi-node vLLM launch (TP/PP or DP across hosts).", panel=SCALING)
    node_rank: int = setting(0, "This node's rank: 0 on the head, 1.. on workers.", panel=SCALING)
    master_addr: str | None = setting(None, "The head node's address (needed on every worker node).",
                                      panel=SCALING)
    master_port: int | None = setting(None, "The head node's port for vLLM's process group; default vLLM's.",
                                      panel=SCALING)
    headless: bool = setting(False, "Run this node's engines with no API server (a worker node of deploy).",
                             panel=SCALING)
    ray_address: str | None = setting(
        None, "A running Ray cluster (ray start --head): with --distributed-executor-backend ray, or for "
        "infer --val-dataset through Ray Data.", panel=SCALING)

    def __post_init__(self) -> None:
        # Normalizing what the constructor was given (frozen fields are set through object.__setattr__).
        if self.engine_kwargs is None:
            object.__setattr__(self, "engine_kwargs", {})
        if isinstance(self.engine_kwargs, str):
            object.__setattr__(self, "engine_kwargs", parse_json_object(self.engine_kwargs, "engine_kwargs"))
        if self.limit_mm_per_prompt is None:
            object.__setattr__(self, "limit_mm_per_prompt", {})
        if isinstance(self.limit_mm_per_prompt, str):
            object.__setattr__(self, "limit_mm_per_prompt",
                               parse_json_object(self.limit_mm_per_prompt, "limit_mm_per_prompt"))
        for modality, limit in (self.limit_mm_per_prompt or {}).items():
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise UsageError(f"--limit_mm_per_prompt: {modality} must map to a count of at least 0")
        for name in ("tensor_parallel_size", "pipeline_parallel_size", "max_lora_rank", "max_loras"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1")
        for name in ("max_model_len", "max_num_seqs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise UsageError("--gpu_memory_utilization must be in (0, 1]")
        check_distributed(self)
        if self.dtype is not None:
            object.__setattr__(self, "dtype", normalize_dtype(self.dtype))


_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "AUTO": None, "auto": None}


def dtype_alias(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return _DTYPE_ALIASES.get(value, value)


def normalize_dtype(value: Any) -> str | None:
    """'bf16' -> 'bfloat16', torch.float16 -> 'float16', 'auto'/None -> None."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value).replace("torch.", "")
    value = dtype_alias(value)
    if value not in (None, "bfloat16", "float16", "float32", "half", "float"):
        raise UsageError(f"unknown dtype {value!r}", "use bf16, fp16, fp32 or auto")
    return value


def parse_json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--{option} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--{option} must be a JSON object, e.g. '{{\"max_num_seqs\": 64}}'")
    return value


INT64_MAX = 2**63 - 1
# The generation_config.json keys that say how a model wants to be sampled.
SAMPLING_KEYS = frozenset({"do_sample", "temperature", "top_p", "top_k", "repetition_penalty"})


@dataclass
class GenerationConfig:
    """Sampling settings, like transformers.GenerationConfig. Not frozen, unlike the other configs: ms-swift's
    API, which swiftcli keeps, tunes an engine's defaults in place (`engine.generation_config.max_new_tokens =
    256`). swiftcli's own code never changes one it was given: it makes a changed copy with `copy(**changes)`.

    These class defaults are the last fallback: a model's generation_config.json and the registry come first.
    """

    max_new_tokens: int | None = setting(2048, "Most new tokens per answer.", panel=GENERATION)
    temperature: float = setting(0.3, "Sampling temperature; 0 is greedy.", panel=GENERATION)
    top_p: float = setting(0.7, "Nucleus sampling, in (0, 1].", panel=GENERATION)
    top_k: int = setting(20, "Top-k sampling; 0 or -1 disables.", panel=GENERATION)
    repetition_penalty: float = setting(1.0, "Repetition penalty; 1 is none.", panel=GENERATION)
    do_sample: bool = setting(True, "false for greedy decoding.", panel=GENERATION)
    seed: int | None = setting(None, "Random seed (engine and sampling).", panel=GENERATION)
    stop: list[str] = setting(None, "Stop string (repeatable).", "stop_words", panel=GENERATION,
                              default_factory=list)
    n: int = setting(1, "Answers per request.", cli=False)
    presence_penalty: float = setting(0.0, "Presence penalty, in [-2, 2].", cli=False)
    frequency_penalty: float = setting(0.0, "Frequency penalty, in [-2, 2].", cli=False)
    ignore_eos: bool = setting(False, "true to generate max_new_tokens regardless of EOS (benchmarks).",
                               panel=GENERATION)
    logprobs: int | None = setting(None, "Log-probabilities of the top N tokens per step.", cli=False)
    # vLLM-only sampling settings (the pt backend refuses values other than these defaults).
    min_p: float = setting(0.0, "Minimum probability relative to the most likely token.", cli=False)
    min_tokens: int = setting(0, "Tokens to generate before a stop may end the answer.", cli=False)
    logit_bias: dict[int, float] | None = setting(None, "Token id -> bias added to its logit.", cli=False)
    skip_special_tokens: bool = setting(True, "Leave special tokens out of the text.", cli=False)
    include_stop_str_in_output: bool = setting(False, "Keep the stop string at the end of the text.", cli=False)
    enable_thinking: bool | None = setting(
        None, "Thinking on or off, for templates with a switch (Qwen3); default the template's.", panel=GENERATION)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        check_generation(self)

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0

    def copy(self, **changes: Any) -> GenerationConfig:
        stop = changes.pop("stop", self.stop)
        # a new list, never the original's; one string is one stop string
        return replace(self, stop=[stop] if isinstance(stop, str) else list(stop or []), **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_model(cls, spec: ModelSpec, **overrides: Any) -> GenerationConfig:
        """An engine's defaults: the checkpoint's generation_config.json; where it sets no sampling, the
        registry's defaults for the model type; then ms-swift's fallback (this class's defaults)."""

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


def check_generation(config: GenerationConfig) -> None:
    """Every sampling setting that can be checked without a model; a UsageError names the option."""
    problems = [
        (config.max_new_tokens is not None and config.max_new_tokens < 1, "max_new_tokens must be at least 1"),
        (config.temperature < 0, "temperature must be >= 0"),
        (not 0 < config.top_p <= 1, "top_p must be in (0, 1]"),
        (config.top_k < -1, "top_k must be -1, 0 (off) or a positive count"),
        (config.repetition_penalty <= 0, "repetition_penalty must be > 0"),
        (config.n < 1, "n must be at least 1"),
        (not -2 <= config.presence_penalty <= 2, "presence_penalty must be in [-2, 2]"),
        (not -2 <= config.frequency_penalty <= 2, "frequency_penalty must be in [-2, 2]"),
        (config.seed is not None and not -INT64_MAX - 1 <= config.seed <= INT64_MAX, "seed must fit in 64 bits"),
        (config.logprobs is not None and config.logprobs < 0, "logprobs must be >= 0"),
    ]
    for failed, message in problems:
        if failed:
            raise UsageError(f"--{message}")


def _overrides_class() -> type:
    """GenerationConfig's command-line fields, each defaulting to None (= keep the model's default)."""
    hints = typing.get_type_hints(GenerationConfig)
    specs = [(f.name, hints[f.name] | None, field(default=None, metadata=f.metadata))
             for f in fields(GenerationConfig) if f.metadata.get("cli")]
    cls = make_dataclass("GenerationOverrides", specs, frozen=True, namespace={
        "given": lambda self: {k: v for k, v in asdict(self).items() if v is not None},
        "__doc__": "Sampling settings a user gave; None keeps the model's default.",
    })
    cls.__module__ = __name__
    return cls


if TYPE_CHECKING:
    class GenerationOverrides:
        """Sampling settings a user gave; None keeps the model's default (built from GenerationConfig's fields)."""

        def __init__(self, **values: Any) -> None: ...

        def given(self) -> dict[str, Any]: ...

        def __getattr__(self, name: str) -> Any: ...

else:
    GenerationOverrides = _overrides_class()
