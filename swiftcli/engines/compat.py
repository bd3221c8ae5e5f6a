"""ms-swift-shaped entry points: get_vllm_engine, get_model_tokenizer (pt), and friends."""

from __future__ import annotations

from typing import Any

from swiftcli.config.resolve import normalize_dtype, resolve_model
from swiftcli.config.spec import EngineConfig
from swiftcli.engines import create_engine
from swiftcli.engines.base import Engine


def get_vllm_engine(
    model_type: str | None = None,
    torch_dtype: Any = None,
    *,
    model_id_or_path: str | None = None,
    ckpt_dir: str | None = None,
    revision: str | None = None,
    gpu_memory_utilization: float | None = None,
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    enforce_eager: bool | None = None,
    seed: int = 0,
    trust_remote_code: bool = False,
    enable_lora: bool = False,
    max_lora_rank: int = 16,
    engine_kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> Engine:
    """Start a vLLM engine for a model type, a model path or a checkpoint.

    The engine has `.hf_tokenizer` and a mutable `.generation_config`; None keeps the platform default
    (see swiftcli.engines.vllm). Must run under `if __name__ == "__main__":` (workers are spawned).
    """
    spec = resolve_model(model_type, model_id_or_path, ckpt_dir, revision=revision)
    config = EngineConfig(
        dtype=normalize_dtype(torch_dtype),
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size,
        pipeline_parallel_size=pipeline_parallel_size,
        enforce_eager=enforce_eager,
        max_num_seqs=max_num_seqs,
        seed=seed,
        trust_remote_code=trust_remote_code,
        enable_lora=enable_lora,
        max_lora_rank=max_lora_rank,
        engine_kwargs=dict(engine_kwargs or {}),
    )
    return create_engine(spec, config, backend="vllm")


def get_model_tokenizer(
    model_type: str | None = None,
    torch_dtype: Any = None,
    *,
    model_id_or_path: str | None = None,
    ckpt_dir: str | None = None,
    trust_remote_code: bool = False,
    **_: Any,
) -> tuple[Engine, Any]:
    """The pt backend: returns (engine, tokenizer); pass the engine to `inference`/`inference_stream`."""
    spec = resolve_model(model_type, model_id_or_path, ckpt_dir)
    engine = create_engine(spec, EngineConfig(dtype=normalize_dtype(torch_dtype),
                                              trust_remote_code=trust_remote_code), backend="pt")
    return engine, engine.hf_tokenizer
