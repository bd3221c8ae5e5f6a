"""The one way from "which model, which settings" to a running engine with its template: `swiftcli.load`.

Every command, the ms-swift API (`get_vllm_engine`, `get_model_tokenizer`) and the tests go through `load`:
resolve (merging a LoRA checkpoint first when asked) -> backend -> engine (offline or async) -> template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.errors import UsageError


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


def resolve_spec(model: ModelOptions | ModelSpec | str | None) -> ModelSpec:
    """A ModelSpec from options, a model type or path string, or a spec as it is."""
    from swiftcli.config.resolve import resolve_model

    if isinstance(model, ModelSpec):
        return model
    if model is None or isinstance(model, str):
        from swiftcli.registry.models import names

        model = ModelOptions(model_type=model) if model in names() else ModelOptions(model_id_or_path=model)
    ckpt_dir = model.ckpt_dir
    if model.merge_lora:
        if not ckpt_dir:
            raise UsageError("--merge_lora true needs --ckpt_dir (a LoRA checkpoint)")
        from swiftcli.export.merge import merged_checkpoint

        ckpt_dir = str(merged_checkpoint(ckpt_dir, model_type=model.model_type,
                                         model_id_or_path=model.model_id_or_path))
    return resolve_model(model.model_type, model.model_id_or_path, ckpt_dir, template_type=model.template_type,
                         system=model.system, revision=model.revision)


def start_engine(spec: ModelSpec, config: EngineConfig, backend: str, asynchronous: bool) -> Any:
    """Start the backend's engine. Tests swap this function to hand every command one shared session engine."""
    from swiftcli.engines import create_async_engine, create_engine

    if asynchronous:
        return create_async_engine(spec, config, backend)
    return create_engine(spec, config, backend)


def load(
    model: ModelOptions | ModelSpec | str | None = None,
    engine_config: EngineConfig | None = None,
    *,
    backend: str | None = None,
    asynchronous: bool = False,
    generation: dict[str, Any] | None = None,
) -> Session:
    """Resolve the model, start its engine and bind its template.

    `model` is ModelOptions, a resolved ModelSpec, a model type or path, or None for the embedded model.
    `backend` defaults to the options' infer_backend, else vllm when installed. `generation` holds sampling
    settings the user gave: they are checked before anything loads, and `Session.generation` lays them over the
    engine's defaults (the engine's own `generation_config` is left as it is).
    Raises SwiftError subclasses on bad input.
    """
    from swiftcli.engines import default_backend
    from swiftcli.engines.data_parallel import check_scaling
    from swiftcli.registry.templates import get_template

    given = dict(generation or {})
    GenerationConfig().copy(**given)  # a bad setting fails here, before a minute of engine start
    config = engine_config or EngineConfig()
    if given.get("seed") is not None:
        config.seed = given["seed"]
    if isinstance(model, ModelOptions):
        backend = backend or model.infer_backend
    backend = backend or default_backend()
    check_scaling(config, backend)
    spec = resolve_spec(model)
    if given.get("enable_thinking") is not None:
        _check_thinking_switch(spec, config, given["enable_thinking"])
    engine = start_engine(spec, config, backend, asynchronous)
    try:
        template = get_template(spec.template_type, engine.hf_tokenizer, spec.default_system,
                                enable_thinking=given.get("enable_thinking"))
        template.thinking(None)  # --enable_thinking on a template without the switch: refused now
    except BaseException:
        if not asynchronous:
            engine.close()
        raise
    return Session(spec, engine, template, backend, merge_generation(engine.generation_config, given), asynchronous)


def interactive_generation(spec: ModelSpec, given: dict[str, Any]) -> GenerationConfig:
    """Sampling for a person chatting (chat, app-ui, and the `chat_sampling` deploy lists): the checkpoint's
    generation_config.json, else the registry's defaults for the model type (the embedded model: greedy with a
    repetition guard), then what the user gave. Engines, the API and batch paths keep the checkpoint's own
    settings, so that their greedy output is the model's plain greedy output."""
    return merge_generation(GenerationConfig.for_model(spec), given)


def merge_generation(base: GenerationConfig, given: dict[str, Any], **command_defaults: Any) -> GenerationConfig:
    """The engine's defaults, then a command's own defaults (greedy for infer and eval), then what the user gave.

    `do_sample false` means temperature 0, and temperature 0 means greedy.
    """
    given = {k: v for k, v in given.items() if v is not None}
    values = {**without_greedy(command_defaults, given), **given}
    if given.get("temperature", 0) > 0 and "do_sample" not in given:
        values["do_sample"] = True  # a temperature the user typed turns sampling on over a greedy default
    if values.get("do_sample") is False:
        values["temperature"] = 0.0
    if values.get("temperature") == 0:
        values["do_sample"] = False
    return base.copy(**values)


def without_greedy(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A command's or a server's greedy default gives way to `do_sample true` typed without a temperature: the
    user asked for sampling, at the model's temperature (a greedy temperature 0 would turn it off again)."""
    if given.get("do_sample") is True and "temperature" not in given and defaults.get("temperature") == 0:
        return {k: v for k, v in defaults.items() if k not in ("temperature", "do_sample")}
    return dict(defaults)


def _check_thinking_switch(spec: ModelSpec, config: EngineConfig, enable_thinking: bool) -> None:
    """--enable_thinking on a template without the switch fails on its tokenizer (a second), before the engine."""
    from swiftcli.engines.tokenizer import load_tokenizer
    from swiftcli.registry.templates import get_template

    tokenizer = load_tokenizer(spec, config.trust_remote_code)
    get_template(spec.template_type, tokenizer, spec.default_system, enable_thinking=enable_thinking).thinking(None)
