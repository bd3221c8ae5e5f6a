"""`swiftcli models`: the registered model types."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from swiftcli.cli.errors import handled


@handled
def models_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    local: Annotated[bool, typer.Option("--local", help="List the models on this disk (downloaded and converted) "
                                        "instead: id, hub, revision, size, partial downloads, last use, path.")
                     ] = False,
    output_format: Annotated[str | None, typer.Option("--output", "-o", metavar="json",
                                                      help="json: print JSON instead of a table.")] = None,
) -> None:
    """List registered model types with their hub ids, template and vLLM support; --local lists the models on disk.

    [b]Examples[/b]

      swiftcli models

      swiftcli models --json | jq '.[].model_type'

      swiftcli models --local --output json
    """
    from dataclasses import asdict

    if output_format not in (None, "json", "text"):
        from swiftcli.errors import UsageError

        raise UsageError(f"--output {output_format} is not json or text")
    as_json = as_json or output_format == "json"
    if local:
        from swiftcli.cli.local_models import show_local_models

        show_local_models(as_json)
        return

    from swiftcli.registry.models import all_models

    rows = all_models()
    if as_json:
        print(json.dumps([asdict(m) for m in rows], indent=2))
        return
    from rich.table import Table

    from swiftcli.cli.output import stdout

    table = Table(title="swiftcli model types")
    for column in ("model_type", "template", "dtype", "vLLM", "ModelScope id", "Hugging Face id"):
        table.add_column(column, overflow="fold")
    for m in rows:
        table.add_row(m.model_type + (" (embedded)" if m.embedded else ""), m.template, m.torch_dtype,
                      "yes" if m.support_vllm else "no", m.modelscope_id or "-", m.hf_id or "-")
    stdout.print(table)
