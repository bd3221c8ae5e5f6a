"""The one way from "which model, which settings" to a running engine with its template: `swiftcli.load`.

Every command, the ms-swift API (`get_vllm_engine`, `get_model_tokenizer`) and the tests go through `load`:
resolve (merging a LoRA checkpoint first when asked) -> backend -> engine (offline or async) -> template.

It sits above export (a LoRA checkpoint is merged before it loads) and engines; the engine itself is started by
`swiftcli.engines.loader.start_engine`, looked up at each call so that tests can lend one shared engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from swiftcli.config.options import ModelOptions
from swiftcli.config.sampling import check_sampling, merge_generation
from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.engines import default_backend
from swiftcli.engines import loader as engine_loader
from swiftcli.engines.data_parallel import check_scaling
from swiftcli.engines.modalities import check_language_only
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.errors import UsageError
from swiftcli.export.merge import merged_checkpoint
from swiftcli.hub.resolve import read_json, resolve_model
from swiftcli.registry.models import names
from swiftcli.registry.templates import get_template

__all__ = ["Session", "load", "resolve_spec"]


@dataclass
class Session:
    """A loaded model: what was resolved, the engine serving it, and the template that prompts it."""

    spec: ModelSpec
    engine: Any
    template: Any
    backend: str
    generation: GenerationConfig
    asynchronous: bool = False

    def close(self) -> None:
        """Stop the engine (offline engines; async ones close with `await engine.aclose()`)."""
        if not self.asynchronous:
            self.engine.close()


def resolve_spec(model: ModelOptions | ModelSpec | str | None,
                 on_message: Callable[[str], None] | None = None) -> ModelSpec:
    """A ModelSpec from options, a model type or path string, or a spec as it is. A merge that `merge_lora` asks
    for says what it does through `on_message` (default: the swiftcli.export logger)."""
    if isinstance(model, ModelSpec):
        return model
    if model is None or isinstance(model, str):
        model = ModelOptions(model_type=model) if model in names() else ModelOptions(model_id_or_path=model)
    ckpt_dir = model.ckpt_dir
    if model.use_hf is not None:  # the hub client reads USE_HF, here and in engine processes
        os.environ["USE_HF"] = "1" if model.use_hf else "0"
    if model.merge_lora:
        if not ckpt_dir:
            raise UsageError("--merge_lora true needs --ckpt_dir (a LoRA checkpoint)")
        ckpt_dir = str(merged_checkpoint(ckpt_dir, model_type=model.model_type,
                                         model_id_or_path=model.model_id_or_path, on_message=on_message))
    return resolve_model(model.model_type, model.model_id_or_path, ckpt_dir, template_type=model.template_type,
                         system=model.system, revision=model.revision)


def load(
    model: ModelOptions | ModelSpec | str | None = None,
    engine_config: EngineConfig | None = None,
    *,
    backend: str | None = None,
    asynchronous: bool = False,
    generation: dict[str, Any] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> Session:
    """Resolve the model, start its engine and bind its template.

    `model` is ModelOptions, a resolved ModelSpec, a model type or path, or None for the embedded model.
    `backend` defaults to the options' infer_backend, else vllm when installed. `generation` holds sampling
    settings the user gave: they are checked before anything loads, and `Session.generation` lays them over the
    engine's defaults (the engine's own `generation_config` is left as it is). `on_message` hears progress
    before the engine starts (a LoRA merge). Raises SwiftError subclasses on bad input.
    """
    given = dict(generation or {})
    check_sampling(given)  # a bad setting fails here, before a minute of engine start
    config = engine_config or EngineConfig()
    if given.get("seed") is not None:
        config = replace(config, seed=given["seed"])  # a copy: the caller's config stays as it was
    if isinstance(model, ModelOptions):
        backend = backend or model.infer_backend
    backend = backend or default_backend()
    check_scaling(config, backend)  # before the model resolves (a download) or an engine starts
    spec = resolve_spec(model, on_message)
    if given.get("enable_thinking") is not None:
        _check_thinking_switch(spec, config, given["enable_thinking"])
    if spec.adapters and spec.modalities and backend == "vllm":
        _check_language_only_adapters(spec)
    engine = engine_loader.start_engine(spec, config, backend, asynchronous)
    try:
        template = get_template(spec.template_type, engine.hf_tokenizer, spec.default_system,
                                enable_thinking=given.get("enable_thinking"))
        template.thinking(None)  # --enable_thinking on a template without the switch: refused now
    except BaseException:
        if not asynchronous:
            engine.close()
        raise
    return Session(spec, engine, template, backend, merge_generation(engine.generation_config, given), asynchronous)


def _check_language_only_adapters(spec: ModelSpec) -> None:
    """vLLM serves a vision-language model's adapter on its language model only: refuse one that trains more."""
    for path in spec.adapters:
        weights = path / "adapter_model.safetensors"
        check_language_only(path, read_json(path / "adapter_config.json"), weights if weights.is_file() else None)


def _check_thinking_switch(spec: ModelSpec, config: EngineConfig, enable_thinking: bool) -> None:
    """--enable_thinking on a template without the switch fails on its tokenizer (a second), before the engine."""
    tokenizer = load_tokenizer(spec, config.trust_remote_code)
    get_template(spec.template_type, tokenizer, spec.default_system, enable_thinking=enable_thinking).thinking(None)
