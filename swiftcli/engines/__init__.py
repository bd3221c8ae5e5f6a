"""Backends behind one table. Each registers its offline engine and its async twin together, by import path,
so `swiftcli --help` imports neither; a backend registered without an async twin is served from a worker
thread (`ThreadedAsyncEngine`), so third-party backends work in `deploy` and `app-ui` too."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from swiftcli.config.distributed import is_distributed
from swiftcli.config.spec import EngineConfig, ModelSpec
from swiftcli.engines.base import (
    AsyncEngine,
    Completion,
    Engine,
    EngineRequest,
    RequestResult,
    generate_all,
)
from swiftcli.engines.data_parallel import check_scaling
from swiftcli.errors import EngineError, UsageError


@dataclass(frozen=True)
class Backend:
    """Where a backend's engines live, as "module:Class" (imported when first used)."""

    name: str
    sync: str
    asynchronous: str | None = None


BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, sync: str, asynchronous: str | None = None) -> None:
    """Register a backend: `sync` builds an `Engine(spec, config)`, `asynchronous` an `AsyncEngine(spec, config)`.

    Both are "module:Class" paths; without `asynchronous`, servers run the sync engine on a worker thread.
    """
    BACKENDS[name] = Backend(name, sync, asynchronous)


register_backend(
    "vllm", sync="swiftcli.engines.vllm:VllmEngine", asynchronous="swiftcli.engines.vllm_async:AsyncVllmEngine"
)
register_backend("pt", sync="swiftcli.engines.pt:PtEngine")


def default_backend() -> str:
    from swiftcli.engines.vllm import vllm_available

    return "vllm" if vllm_available() else "pt"


def _import(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _backend(name: str | None) -> Backend:
    name = name or default_backend()
    if name not in BACKENDS:
        raise UsageError(f"unknown infer_backend {name!r}", f"choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def check_backend(spec: ModelSpec, config: EngineConfig, backend: str) -> None:
    """Refuse what the backend cannot do, before loading anything."""
    if backend != "vllm":
        return
    if not spec.support_vllm:
        raise EngineError(f"{spec.name} is not supported by vLLM", "use --infer_backend pt")
    if spec.adapters and not config.enable_lora:
        ckpt = spec.ckpt_dir or spec.adapters[0]
        raise EngineError(
            f"{ckpt} is a LoRA adapter, which vLLM serves only with --vllm_enable_lora true",
            f"merge it first: swiftcli export --ckpt_dir {ckpt} --merge_lora true, "
            "or pass --merge_lora true, or --vllm_enable_lora true",
        )


def create_engine(spec: ModelSpec, config: EngineConfig | None = None, backend: str | None = None) -> Engine:
    """Start the offline engine of a backend for a resolved model."""
    chosen = _backend(backend)
    config = config or EngineConfig()
    check_backend(spec, config, chosen.name)
    check_scaling(config, chosen.name)
    if chosen.name == "vllm" and is_distributed(config):
        # vLLM's offline engine refuses data parallel; its async engine runs every scaled-out launch
        from swiftcli.engines.data_parallel import DataParallelVllmEngine

        return DataParallelVllmEngine(spec, config)
    return _import(chosen.sync)(spec, config)  # type: ignore[no-any-return]


def create_async_engine(spec: ModelSpec, config: EngineConfig | None = None, backend: str | None = None
                        ) -> AsyncEngine:
    """Start the async engine of a backend (servers and the web UI); same checks as `create_engine`."""
    chosen = _backend(backend)
    config = config or EngineConfig()
    check_scaling(config, chosen.name)
    if chosen.asynchronous is None:
        from swiftcli.engines.threaded import ThreadedAsyncEngine

        return ThreadedAsyncEngine(create_engine(spec, config, chosen.name))
    if chosen.name == "vllm" and not spec.support_vllm:  # an adapter is fine: the async engine enables LoRA
        raise EngineError(f"{spec.name} is not supported by vLLM", "use --infer_backend pt")
    return _import(chosen.asynchronous)(spec, config)  # type: ignore[no-any-return]


__all__ = [
    "BACKENDS",
    "AsyncEngine",
    "Backend",
    "Completion",
    "Engine",
    "EngineRequest",
    "RequestResult",
    "create_async_engine",
    "create_engine",
    "default_backend",
    "generate_all",
    "register_backend",
]
