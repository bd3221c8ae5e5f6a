"""`swiftcli models`: the registered model types; `--local`: the models on disk."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.cli.output import result, stdout
from swiftcli.config.commands import OutputOptions
from swiftcli.registry.models import all_models


@with_options(out=OutputOptions)
@handled
def models_command(
    local: Annotated[bool, typer.Option("--local", help="List the models on this disk (downloaded and converted) "
                                        "instead: id, hub, revision, size, partial downloads, last use, path.")
                     ] = False,
    *,
    out: OutputOptions,
) -> None:
    """List registered model types with their hub ids, template, vLLM support and input (text, image, video);
    --local lists the models on disk.

    [b]Examples[/b]

      swiftcli models

      swiftcli models --output json | jq '.[].model_type'

      swiftcli models --local --output json
    """
    if local:
        # lazy: the hub clients' cache scanners stay out of `models` without --local and out of --help
        from swiftcli.cli.local_models import show_local_models

        show_local_models(out.json)
        return

    rows = all_models()
    if out.json:
        result(json.dumps([asdict(m) for m in rows], indent=2))
        return

    table = Table(title="swiftcli model types")
    for column in ("model_type", "template", "dtype", "vLLM", "input", "ModelScope id", "Hugging Face id"):
        table.add_column(column, overflow="fold")
    for m in rows:
        table.add_row(m.model_type + (" (embedded)" if m.embedded else ""), m.template, m.torch_dtype,
                      "yes" if m.support_vllm else "no", "+".join(("text", *m.modalities)),
                      m.modelscope_id or "-", m.hf_id or "-")
    stdout.print(table)
