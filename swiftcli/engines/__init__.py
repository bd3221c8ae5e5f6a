"""Backends behind one table: name -> factory, imported lazily so `swiftcli --help` stays light."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from swiftcli.config.spec import EngineConfig, ModelSpec
from swiftcli.engines.base import Completion, Engine, EngineRequest, RequestResult, generate_all
from swiftcli.errors import EngineError, UsageError

# backend name -> "module:class"; third-party backends register here the same way.
BACKENDS: dict[str, str] = {
    "vllm": "swiftcli.engines.vllm:VllmEngine",
    "pt": "swiftcli.engines.pt:PtEngine",
}


def register_backend(name: str, target: str) -> None:
    BACKENDS[name] = target


def default_backend() -> str:
    from swiftcli.engines.vllm import vllm_available

    return "vllm" if vllm_available() else "pt"


def _factory(backend: str) -> Callable[[ModelSpec, EngineConfig], Engine]:
    if backend not in BACKENDS:
        raise UsageError(f"unknown infer_backend {backend!r}", f"choose one of {', '.join(BACKENDS)}")
    module, _, name = BACKENDS[backend].partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def create_engine(spec: ModelSpec, config: EngineConfig | None = None, backend: str | None = None) -> Engine:
    """Start the engine for a resolved model; refuses what the backend cannot do before loading anything."""
    backend = backend or default_backend()
    config = config or EngineConfig()
    if backend == "vllm":
        if not spec.support_vllm:
            raise EngineError(f"{spec.name} is not supported by vLLM", "use --infer_backend pt")
        if spec.adapters and not config.enable_lora:
            ckpt = spec.ckpt_dir or spec.adapters[0]
            raise EngineError(
                f"{ckpt} is a LoRA adapter, which vLLM serves only with --vllm_enable_lora true",
                f"merge it first: swiftcli export --ckpt_dir {ckpt} --merge_lora true, "
                "or pass --merge_lora true, or --vllm_enable_lora true",
            )
    return _factory(backend)(spec, config)


__all__ = [
    "BACKENDS",
    "Completion",
    "Engine",
    "EngineRequest",
    "RequestResult",
    "create_engine",
    "default_backend",
    "generate_all",
    "register_backend",
]


