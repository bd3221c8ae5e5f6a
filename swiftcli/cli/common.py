"""The CLI's way into `swiftcli.load`: engine logs to their file, a spinner while loading, then the session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swiftcli.cli import output
from swiftcli.cli.scaling import check_ray_address, refuse_worker_options
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig
from swiftcli.engines import default_backend
from swiftcli.engines.vllm_args import check_engine_kwargs
from swiftcli.errors import SwiftError, UsageError
from swiftcli.loading import Session
from swiftcli.loading import load as load_session
from swiftcli.registry.templates import get as get_template_spec


def display_name(model: ModelOptions) -> str:
    """What the spinner calls the model before it is resolved."""

    for value in (model.ckpt_dir, model.model_id_or_path):
        if value:
            return Path(value).name or value
    return model.model_type or "smollm2-135m-instruct"


def check_before_loading(model: ModelOptions, engine: EngineConfig) -> None:
    """What can be checked without the model's files, so that it fails in a moment rather than after a download
    or an engine start: the template's name, and the keys of --engine-kwargs against vLLM's engine arguments."""

    if model.template_type and model.template_type.lower() != "auto":
        try:
            get_template_spec(model.template_type)
        except SwiftError as exc:
            raise UsageError(f"--template-type: {exc.message}", exc.hint) from None
    if engine.engine_kwargs and (model.infer_backend or default_backend()) == "vllm":
        check_engine_kwargs(engine.engine_kwargs)


def load(command: str, model: ModelOptions, engine: EngineConfig, gen: Any, *, asynchronous: bool = False
         ) -> Session:
    """Load for a command: `gen` is the GenerationOverrides the user gave (checked before anything loads)."""

    refuse_worker_options(command, engine)
    check_ray_address(engine, dataset=False)
    check_before_loading(model, engine)
    output.engine_logs(command)
    with output.phase(f"Loading {display_name(model)}"):
        return load_session(model, engine, generation=gen.given(), asynchronous=asynchronous,
                            on_message=output.message)
