"""The CLI's way into `swiftcli.load`: engine logs to their file, a spinner while loading, then the session."""

from __future__ import annotations

from typing import Any

from swiftcli.cli import output
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig
from swiftcli.engines.loader import Session


def display_name(model: ModelOptions) -> str:
    """What the spinner calls the model before it is resolved."""
    from pathlib import Path

    for value in (model.ckpt_dir, model.model_id_or_path):
        if value:
            return Path(value).name or value
    return model.model_type or "smollm2-135m-instruct"


def load(command: str, model: ModelOptions, engine: EngineConfig, gen: Any, *, asynchronous: bool = False
         ) -> Session:
    """Load for a command: `gen` is the GenerationOverrides the user gave (checked before anything loads)."""
    from swiftcli.cli.scaling import check_ray_address, refuse_worker_options
    from swiftcli.engines.loader import load as load_session

    refuse_worker_options(command, engine)
    check_ray_address(engine, dataset=False)

    output.engine_logs(command)
    with output.phase(f"Loading {display_name(model)}"):
        return load_session(model, engine, generation=gen.given(), asynchronous=asynchronous)
