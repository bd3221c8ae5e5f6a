"""ms-swift-shaped entry points: get_vllm_engine, get_model_tokenizer (pt). Both go through `swiftcli.load`.

Their keyword arguments are EngineConfig's fields (one default each, in config.spec), plus ms-swift's names.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig
from swiftcli.engines.base import Engine
from swiftcli.loading import load

# ms-swift's keyword names -> EngineConfig's
_RENAMED = {"torch_dtype": "dtype", "vllm_enable_lora": "enable_lora"}
_MODEL_KEYS = ("model_id_or_path", "ckpt_dir", "revision", "template_type")


def _split(model_type: str | None, kwargs: dict[str, Any]) -> tuple[ModelOptions, EngineConfig]:
    known = {f.name for f in fields(EngineConfig)}
    model = ModelOptions(model_type=model_type, **{k: kwargs.pop(k) for k in _MODEL_KEYS if k in kwargs})
    settings = {_RENAMED.get(k, k): v for k, v in kwargs.items()}
    unknown = sorted(k for k in settings if k not in known)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)} "
                        f"(engine settings are {', '.join(sorted(known))}; more vLLM arguments go in engine_kwargs)")
    return model, EngineConfig(**{k: v for k, v in settings.items() if v is not None})


def get_vllm_engine(model_type: str | None = None, torch_dtype: Any = None, **kwargs: Any) -> Engine:
    """Start a vLLM engine for a model type, a model path (`model_id_or_path=`) or a checkpoint (`ckpt_dir=`).

    Keyword arguments: EngineConfig's fields (tensor_parallel_size, max_model_len, enable_lora, engine_kwargs...).
    The engine has `.hf_tokenizer` and a mutable `.generation_config`. Must run under `if __name__ ==
    "__main__":` (workers are spawned).
    """
    model, config = _split(model_type, {"torch_dtype": torch_dtype, **kwargs})
    return load(model, config, backend="vllm").engine  # type: ignore[no-any-return]


def get_model_tokenizer(model_type: str | None = None, torch_dtype: Any = None, **kwargs: Any
                        ) -> tuple[Engine, Any]:
    """The pt backend: returns (engine, tokenizer); pass the engine to `inference`/`inference_stream`."""
    model, config = _split(model_type, {"torch_dtype": torch_dtype, **kwargs})
    engine = load(model, config, backend="pt").engine
    return engine, engine.hf_tokenizer
