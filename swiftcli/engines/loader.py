"""Where every engine starts: `start_engine` (backend table -> offline or async engine). `swiftcli.load`
(swiftcli/loading.py) resolves the model and calls it; tests swap it to lend one shared engine to commands.
"""

from __future__ import annotations

from typing import Any

from swiftcli import engines
from swiftcli.config.sampling import interactive_generation, merge_generation
from swiftcli.config.spec import EngineConfig, ModelSpec

# The sampling rule lives in swiftcli.config.sampling; these names stay importable from here.
__all__ = ["interactive_generation", "merge_generation", "start_engine"]


def start_engine(spec: ModelSpec, config: EngineConfig, backend: str, asynchronous: bool) -> Any:
    """Start the backend's engine. Tests swap this function to hand every command one shared session engine."""
    if asynchronous:
        return engines.create_async_engine(spec, config, backend)
    return engines.create_engine(spec, config, backend)
