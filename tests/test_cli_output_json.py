"""`--output json` where a command prints a result, with the work itself recorded instead of run (fast)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.export.merge import ExportResult


def test_export_prints_its_result_as_json(monkeypatch, tmp_path):
    out = tmp_path / "ckpt-merged"
    monkeypatch.setattr("swiftcli.cli.output.engine_logs", lambda *args: None)
    monkeypatch.setattr("swiftcli.export.merge.merge_lora", lambda *args, **kwargs: ExportResult(out, True, 0.5))
    plain = CliRunner().invoke(app, ["export", "--ckpt_dir", str(tmp_path), "--merge_lora", "true"])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout == f"{out}\n"
    for spelling in (["--output", "json"], ["-o", "json"], ["--json"]):
        result = CliRunner().invoke(app, ["export", "--ckpt_dir", str(tmp_path), "--merge_lora", "true", *spelling])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"output_dir": str(out), "reused": True, "seconds": 0.5, "verify": None}


def test_models_json_is_the_registry():
    from swiftcli.registry.models import all_models

    rows = json.loads(CliRunner().invoke(app, ["models", "-o", "json"]).stdout)
    assert [row["model_type"] for row in rows] == [m.model_type for m in all_models()]
