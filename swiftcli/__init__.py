"""swiftcli: fast LLM inference and deployment on vLLM, with ms-swift's Python API.

Names are imported lazily so that `import swiftcli` (and `swiftcli --help`) loads no torch or vLLM.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from swiftcli.torch_extensions import hide_mismatched_extensions

__version__ = "0.1.0"

hide_mismatched_extensions()

_EXPORTS: dict[str, str] = {
    "ModelType": "swiftcli.registry.models",
    "get_default_template_type": "swiftcli.registry.models",
    "TemplateType": "swiftcli.registry.templates",
    "get_template": "swiftcli.registry.templates",
    "Template": "swiftcli.registry.templates",
    "ModelSpec": "swiftcli.config.spec",
    "EngineConfig": "swiftcli.config.spec",
    "GenerationConfig": "swiftcli.config.spec",
    "resolve_model": "swiftcli.hub.resolve",
    "create_engine": "swiftcli.engines",
    "create_async_engine": "swiftcli.engines",
    "register_backend": "swiftcli.engines",
    "load": "swiftcli.loading",
    "Session": "swiftcli.loading",
    "ModelOptions": "swiftcli.config.options",
    "get_vllm_engine": "swiftcli.compat",
    "get_model_tokenizer": "swiftcli.compat",
    "inference_vllm": "swiftcli.generation.core",
    "inference_stream_vllm": "swiftcli.generation.core",
    "inference": "swiftcli.generation.core",
    "inference_stream": "swiftcli.generation.core",
    "SwiftError": "swiftcli.errors",
    "get_model_list_client": "swiftcli.client",
    "XRequestConfig": "swiftcli.client",
    "inference_client": "swiftcli.client",
    "inference_client_async": "swiftcli.client",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'swiftcli' has no attribute {name!r}")


if TYPE_CHECKING:
    from swiftcli.compat import get_model_tokenizer, get_vllm_engine
    from swiftcli.config.options import ModelOptions
    from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
    from swiftcli.engines import create_async_engine, create_engine, register_backend
    from swiftcli.errors import SwiftError
    from swiftcli.generation.core import inference, inference_stream, inference_stream_vllm, inference_vllm
    from swiftcli.hub.resolve import resolve_model
    from swiftcli.loading import Session, load
    from swiftcli.registry.models import ModelType, get_default_template_type
    from swiftcli.registry.templates import Template, TemplateType, get_template
