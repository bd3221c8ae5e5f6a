"""`swiftcli models`: the registered model types."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from swiftcli.cli.errors import handled


@handled
def models_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List registered model types with their hub ids, template, vLLM support and input (text, image, video).

    [b]Examples[/b]

      swiftcli models

      swiftcli models --json | jq '.[].model_type'
    """
    from dataclasses import asdict

    from swiftcli.registry.models import all_models

    rows = all_models()
    if as_json:
        print(json.dumps([asdict(m) for m in rows], indent=2))
        return
    from rich.table import Table

    from swiftcli.cli.output import stdout

    table = Table(title="swiftcli model types")
    for column in ("model_type", "template", "dtype", "vLLM", "input", "ModelScope id", "Hugging Face id"):
        table.add_column(column, overflow="fold")
    for m in rows:
        table.add_row(m.model_type + (" (embedded)" if m.embedded else ""), m.template, m.torch_dtype,
                      "yes" if m.support_vllm else "no", "+".join(("text", *m.modalities)),
                      m.modelscope_id or "-", m.hf_id or "-")
    stdout.print(table)
