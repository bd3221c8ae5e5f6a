"""From parsed options to a resolved model, an engine and a template: the one path every command takes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from swiftcli.cli.options import GenerationOptions, ModelOptions
from swiftcli.config.resolve import normalize_dtype, resolve_model
from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec, parse_json_object
from swiftcli.errors import UsageError


@dataclass
class Loaded:
    spec: ModelSpec
    engine: Any
    template: Any
    backend: str


def resolve_spec(opts: ModelOptions) -> ModelSpec:
    """Resolve the model, merging a LoRA checkpoint first when --merge_lora true asks for it."""
    ckpt_dir = opts.ckpt_dir
    if opts.merge_lora:
        if not ckpt_dir:
            raise UsageError("--merge_lora true needs --ckpt_dir (a LoRA checkpoint)")
        from swiftcli.export.merge import merged_checkpoint

        ckpt_dir = str(merged_checkpoint(ckpt_dir, model_type=opts.model_type,
                                         model_id_or_path=opts.model_id_or_path))
    return resolve_model(
        opts.model_type, opts.model_id_or_path, ckpt_dir, template_type=opts.template_type, system=opts.system,
        torch_dtype=None, revision=opts.revision,
    )


def engine_config(opts: ModelOptions, seed: int | None = None) -> EngineConfig:
    return EngineConfig(
        dtype=normalize_dtype(opts.dtype),
        max_model_len=opts.max_model_len,
        gpu_memory_utilization=opts.gpu_memory_utilization,
        tensor_parallel_size=opts.tensor_parallel_size,
        pipeline_parallel_size=opts.pipeline_parallel_size,
        enforce_eager=opts.enforce_eager,
        max_num_seqs=opts.max_num_seqs,
        seed=seed if seed is not None else 0,
        trust_remote_code=opts.trust_remote_code,
        enable_lora=opts.vllm_enable_lora,
        max_lora_rank=opts.max_lora_rank,
        distributed_executor_backend=opts.distributed_executor_backend,
        engine_kwargs=parse_json_object(opts.engine_kwargs, "engine_kwargs") if opts.engine_kwargs else {},
    )


def quiet_engine_logs(verbose: bool = False) -> None:
    """vLLM's INFO logs drown a terminal; keep warnings unless -v. Logs go to stderr either way."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbose else "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        _show_engine_info()


def _show_engine_info() -> None:
    """Under -v, swiftcli's engine notes (e.g. the scheduler budgets) reach stderr in every command."""
    import logging

    log = logging.getLogger("swiftcli.engines")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False  # deploy's own "swiftcli" handler would print it twice


def load(opts: ModelOptions, seed: int | None = None) -> Loaded:
    """Resolve, start the engine and bind the template; raises SwiftError subclasses on bad input."""
    from swiftcli.cli.state import verbose
    from swiftcli.engines import default_backend
    from swiftcli.registry.templates import get_template

    quiet_engine_logs(verbose())
    spec = resolve_spec(opts)
    backend = opts.infer_backend or default_backend()
    engine = start_engine(spec, engine_config(opts, seed), backend)
    template = get_template(spec.template_type, engine.hf_tokenizer, spec.default_system)
    return Loaded(spec, engine, template, backend)


def start_engine(spec: ModelSpec, config: EngineConfig, backend: str) -> Any:
    """Start an engine; tests swap this for a shared session engine (same spec, same backend)."""
    from swiftcli.engines import create_engine

    return create_engine(spec, config, backend)


def generation_config(base: GenerationConfig, opts: GenerationOptions, **command_defaults: Any) -> GenerationConfig:
    """The engine's defaults, then the command's own defaults, then what the user typed."""
    values = {**command_defaults, **{k: v for k, v in vars(opts).items() if v is not None}}
    if values.get("do_sample") is False:
        values["temperature"] = 0.0
    if values.get("temperature") == 0:
        values["do_sample"] = False
    return base.copy(**values)
