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
    EngineCapabilities,
    EngineRequest,
    RequestResult,
    capabilities_of,
    describe_feature,
    generate_all,
    threaded_capabilities,
)
from swiftcli.engines.data_parallel import check_scaling
from swiftcli.engines.threaded import ThreadedAsyncEngine
from swiftcli.engines.vllm import vllm_available
from swiftcli.errors import UsageError


@dataclass(frozen=True)
class Backend:
    """Where a backend's engines live, as "module:Class" (imported when first used), and the check it runs on a
    model and settings before loading ("module:function", called with spec, config and `asynchronous`)."""

    name: str
    sync: str
    asynchronous: str | None = None
    check: str | None = None


BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, sync: str, asynchronous: str | None = None, check: str | None = None) -> None:
    """Register a backend: `sync` builds an `Engine(spec, config)`, `asynchronous` an `AsyncEngine(spec, config)`.

    Both are "module:Class" paths; without `asynchronous`, servers run the sync engine on a worker thread. What
    the engines can do beyond plain generation (LoRA, structured output, ...) is the class attribute
    `capabilities` (an `EngineCapabilities`); a class without one gets plain generation only.
    `check` ("module:function") refuses a model or settings before anything loads.
    """
    BACKENDS[name] = Backend(name, sync, asynchronous, check)


register_backend(
    "vllm", sync="swiftcli.engines.vllm:VllmEngine", asynchronous="swiftcli.engines.vllm_async:AsyncVllmEngine",
    check="swiftcli.engines.vllm:check_model",
)
register_backend("pt", sync="swiftcli.engines.pt:PtEngine")


def default_backend() -> str:
    return "vllm" if vllm_available() else "pt"


def _import(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _backend(name: str | None) -> Backend:
    name = name or default_backend()
    if name not in BACKENDS:
        raise UsageError(f"unknown infer_backend {name!r}", f"choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def backend_capabilities(backend: str | None, asynchronous: bool = False) -> EngineCapabilities:
    """What a backend's engines can do, known before one starts (its engine module is imported, not the
    framework behind it). A started engine's own `capabilities` may be narrower (e.g. vLLM without LoRA)."""
    chosen = _backend(backend)
    if asynchronous and chosen.asynchronous is not None:
        return capabilities_of(_import(chosen.asynchronous))
    caps = capabilities_of(_import(chosen.sync))
    return threaded_capabilities(caps) if asynchronous else caps


def require_capability(backend: str | None, feature: str, what: str, asynchronous: bool = False) -> None:
    """Refuse `what` (an option or field, as the user wrote it) by name when the backend lacks `feature` (a
    field of EngineCapabilities), naming the registered backends that have it."""
    chosen = _backend(backend)
    if getattr(backend_capabilities(chosen.name, asynchronous), feature):
        return
    able = [name for name in BACKENDS if name != chosen.name and _has(name, feature, asynchronous)]
    raise UsageError(f"{what} needs a backend with {describe_feature(feature)}, which the {chosen.name} backend "
                     "does not have", f"use --infer_backend {' or '.join(able)}" if able else None)


def _has(backend: str, feature: str, asynchronous: bool) -> bool:
    try:
        return bool(getattr(backend_capabilities(backend, asynchronous), feature))
    except Exception:  # noqa: BLE001 - a third-party backend that fails to import just is not suggested
        return False


def check_backend(spec: ModelSpec, config: EngineConfig, backend: str, asynchronous: bool = False) -> None:
    """Refuse what the backend cannot do, before loading anything (the backend's registered `check`)."""
    chosen = _backend(backend)
    if chosen.check is not None:
        _import(chosen.check)(spec, config, asynchronous)


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
        return ThreadedAsyncEngine(create_engine(spec, config, chosen.name))
    check_backend(spec, config, chosen.name, asynchronous=True)
    return _import(chosen.asynchronous)(spec, config)  # type: ignore[no-any-return]


__all__ = [
    "BACKENDS",
    "AsyncEngine",
    "Backend",
    "Completion",
    "Engine",
    "EngineCapabilities",
    "EngineRequest",
    "RequestResult",
    "backend_capabilities",
    "capabilities_of",
    "create_async_engine",
    "create_engine",
    "default_backend",
    "generate_all",
    "register_backend",
    "require_capability",
]
