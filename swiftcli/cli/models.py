"""`swiftcli models`: the registered model types."""

from __future__ import annotations

import json

from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.config.commands import OutputOptions


@with_options(out=OutputOptions)
@handled
def models_command(*, out: OutputOptions) -> None:
    """List registered model types with their hub ids, template and vLLM support.

    [b]Examples[/b]

      swiftcli models

      swiftcli models --output json | jq '.[].model_type'
    """
    from dataclasses import asdict

    from swiftcli.cli.output import result
    from swiftcli.registry.models import all_models

    rows = all_models()
    if out.json:
        result(json.dumps([asdict(m) for m in rows], indent=2))
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
