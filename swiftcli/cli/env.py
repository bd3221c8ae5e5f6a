"""`swiftcli env`: versions, devices, vLLM's platform, paths and environment variables, for bug reports."""

from __future__ import annotations

import json
from typing import Any

from swiftcli.cli import output
from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.config.commands import OutputOptions
from swiftcli.environment import collect


@with_options(out=OutputOptions)
@handled
def env_command(*, out: OutputOptions) -> None:
    """Show what a bug report needs: versions (swiftcli, Python, vLLM, torch, transformers, hub clients, CUDA and
    driver), devices, vLLM's platform, the paths in use and the set environment variables (secrets redacted).

    [b]Examples[/b]

      swiftcli env

      swiftcli env --output json | jq .versions
    """
    with output.phase("Collecting"):
        info = collect()
    if out.json:
        output.result(json.dumps(info, indent=2))
        return
    output.result(render_text(info))


def render_text(info: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, values in info.items():
        lines.append(f"{section.replace('_', ' ')}:")
        if not isinstance(values, dict):
            lines.append(f"  {values}")
            continue
        if not values:
            lines.append("  (none)")
        for key, value in values.items():
            shown = "-" if value is None else ", ".join(map(str, value)) if isinstance(value, list) else value
            lines.append(f"  {key}: {shown}")
    return "\n".join(lines)
