"""`swiftcli download MODEL` (alias `pull`): fetch a hub repository into the hub's cache (or --local_dir), with
progress on stderr and the folder's path on stdout."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from swiftcli.cli import output
from swiftcli.cli.errors import handled
from swiftcli.errors import ModelNotFoundError
from swiftcli.hub.download import HUB_NAMES, hub_name, snapshot_download, use_hf_hub
from swiftcli.registry import models as registry


@handled
def download_command(
    model: Annotated[str, typer.Argument(help="Hub id (org/name) or registered model type.", show_default=False)],
    revision: Annotated[str | None, typer.Option("--revision", help="Branch, tag or commit; default the hub's "
                                                 "main branch.")] = None,
    local_dir: Annotated[str | None, typer.Option("--local-dir", help="Put the files in this folder instead of "
                                                  "the hub's cache.")] = None,
    use_hf: Annotated[bool, typer.Option("--use-hf", help="From Hugging Face instead of ModelScope (as USE_HF=1).")
                      ] = False,
) -> None:
    """Download a model from ModelScope (default) or Hugging Face (--use-hf or USE_HF=1), showing bytes, rate and
    ETA on stderr; print its folder on stdout. A model already cached is not downloaded again; a download that was
    interrupted completes when run again. `swiftcli pull` is the same command.

    [b]Examples[/b]

      swiftcli download Qwen/Qwen2.5-0.5B-Instruct

      swiftcli download HuggingFaceTB/SmolLM2-135M-Instruct --use-hf --local-dir models/smollm2

      swiftcli download qwen2_5-0_5b-instruct --revision master
    """
    if use_hf:
        os.environ["USE_HF"] = "1"

    path = snapshot_download(hub_id(model), revision, local_dir=local_dir)
    output.result(str(path))


def hub_id(model: str) -> str:
    """A registered model type's id on the current hub; anything else as it is."""
    if model not in registry.names():
        return model
    info = registry.get(model)
    if info.embedded:
        raise ModelNotFoundError(f"{model} is the embedded model: it ships with swiftcli and needs no download",
                                 "use it with --model_type " + model)
    found = info.hf_id if use_hf_hub() else info.modelscope_id
    if found is None:
        raise ModelNotFoundError(f"model type {model} has no {HUB_NAMES[hub_name()]} id",
                                 "set USE_HF=0 or 1 for the other hub")
    return found
