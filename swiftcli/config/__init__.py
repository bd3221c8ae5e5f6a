"""Configuration: typed specs and the one resolver every sub-app uses."""

from swiftcli.config.resolve import normalize_dtype, resolve_model
from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec

__all__ = ["EngineConfig", "GenerationConfig", "ModelSpec", "normalize_dtype", "resolve_model"]
