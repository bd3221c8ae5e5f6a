"""The CLI's way into `swiftcli.load`: engine logs to their file, a spinner while loading, then the session."""

from __future__ import annotations

from typing import Any

from swiftcli.cli import output
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig
from swiftcli.loading import Session


def display_name(model: ModelOptions) -> str:
    """What the spinner calls the model before it is resolved."""
    from pathlib import Path

    for value in (model.ckpt_dir, model.model_id_or_path):
        if value:
            return Path(value).name or value
    return model.model_type or "smollm2-135m-instruct"


def check_before_loading(model: ModelOptions, engine: EngineConfig) -> None:
    """What can be checked without the model's files, so that it fails in a moment rather than after a download
    or an engine start: the template's name, and the keys of --engine-kwargs against vLLM's engine arguments."""
    from swiftcli.engines import default_backend

    if model.template_type and model.template_type.lower() != "auto":
        from swiftcli.errors import SwiftError, UsageError
        from swiftcli.registry.templates import get as get_template_spec

        try:
            get_template_spec(model.template_type)
        except SwiftError as exc:
            raise UsageError(f"--template-type: {exc.message}", exc.hint) from None
    if engine.engine_kwargs and (model.infer_backend or default_backend()) == "vllm":
        from swiftcli.engines.vllm_args import check_engine_kwargs

        check_engine_kwargs(engine.engine_kwargs)


def load(command: str, model: ModelOptions, engine: EngineConfig, gen: Any, *, asynchronous: bool = False
         ) -> Session:
    """Load for a command: `gen` is the GenerationOverrides the user gave (checked before anything loads)."""
    from swiftcli.cli.scaling import check_ray_address, refuse_worker_options
    from swiftcli.loading import load as load_session

    refuse_worker_options(command, engine)
    check_ray_address(engine, dataset=False)
    check_before_loading(model, engine)
    output.engine_logs(command)
    with output.phase(f"Loading {display_name(model)}"):
        return load_session(model, engine, generation=gen.given(), asynchronous=asynchronous,
                            on_message=output.message)
