"""Configuration: typed specs (what to load, how to run it, how to sample). Resolving a spec from a model name or
path needs the hub, so it lives there (`swiftcli.hub.resolve.resolve_model`, also `swiftcli.resolve_model`)."""

from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec, normalize_dtype

__all__ = ["EngineConfig", "GenerationConfig", "ModelSpec", "normalize_dtype"]
