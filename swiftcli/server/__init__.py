"""The OpenAI-compatible server: `create_app(settings, engine=..., template=...)` and `serve(...)`.

Imports FastAPI lazily so that `import swiftcli.server` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swiftcli.server.app import ServerSettings, create_app
    from swiftcli.server.run import ListenOptions, serve

_EXPORTS = {"ServerSettings": "swiftcli.server.app", "create_app": "swiftcli.server.app",
            "ListenOptions": "swiftcli.server.run", "serve": "swiftcli.server.run"}

__all__ = ["ListenOptions", "ServerSettings", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'swiftcli.server' has no attribute {name!r}")
