"""The ms-swift command lines the README quotes run verbatim: each is parsed and checked by `swift` (options,
aliases, values, files) up to the point where it would resolve and load its model, which this test stops."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def quoted_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### ms-swift command lines"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's ms-swift section has no sh block"
    return [line for line in block.group(1).splitlines() if line.startswith("swift ")]


class Reached(Exception):
    """The line got through parsing and every check, to the model load."""


@pytest.fixture
def stop_at_model_load(monkeypatch, tmp_path):
    def reached(*args, **kwargs):
        raise Reached

    for target in ("swiftcli.loading.resolve_spec", "swiftcli.engines.loader.start_engine",
                   "swiftcli.export.merge.merge_lora", "swiftcli.export.quantize.quantize_model"):
        monkeypatch.setattr(target, reached)
    # Ports the lines name may be taken on this machine: binding is not what is tested here.
    monkeypatch.setattr("swiftcli.cli.deploy.check_listen", lambda *args: None)
    monkeypatch.setattr("swiftcli.cli.app_ui.check_port_free", lambda *args: None)
    monkeypatch.setattr("swiftcli.cli.output.engine_logs", lambda *args: None)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "What is the capital of France?"}\n', encoding="utf-8")
    # The checkpoint the lines name, as a training run leaves it: its args.json names the datasets.
    ckpt = tmp_path / "output" / "vx-xxx" / "checkpoint-xxx"
    ckpt.mkdir(parents=True)
    (ckpt / "args.json").write_text(json.dumps({"val_dataset": [str(rows)]}), encoding="utf-8")
    monkeypatch.chdir(tmp_path)


def test_the_readme_quotes_both_generations():
    lines = quoted_lines()
    assert len(lines) >= 8 and any("--adapters" in line for line in lines)
    assert any("--ckpt_dir" in line for line in lines)


@pytest.mark.parametrize("line", quoted_lines())
def test_readme_ms_swift_line_runs_verbatim(line, stop_at_model_load):
    args = shlex.split(line)
    assert args[0] == "swift"
    result = CliRunner().invoke(app, args[1:], input="What is the capital of France?\n")
    assert isinstance(result.exception, Reached), (result.exit_code, result.output)
