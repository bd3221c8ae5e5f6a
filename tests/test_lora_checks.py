"""LoRA adapters are checked when `swiftcli deploy` starts, before any model loads: a readable config, a rank
the engine takes (raised, and said so, when needed), and weights shaped for the base model."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app


@pytest.fixture
def adapter(lora_ckpt, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(lora_ckpt, folder)
    return folder


def _deploy(*args: str):
    return CliRunner().invoke(app, ["deploy", "--port", "1", *args])


def test_unreadable_config_is_refused_before_loading(adapter):
    (adapter / "adapter_config.json").write_text("{not json")
    result = _deploy("--lora_modules", f"bad={adapter}")
    assert result.exit_code == 1, result.output
    assert "cannot read adapter_config.json" in result.stderr
    assert "Traceback" not in result.output


def test_adapter_of_another_base_model_is_refused(adapter):
    import torch
    from safetensors.torch import save_file

    # lora_A takes inputs of width 4096: a 7B model's adapter, not one for this 576-wide model.
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 4096),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(4096, 8)},
              str(adapter / "adapter_model.safetensors"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "llama-7b"}))
    result = _deploy("--lora_modules", f"other={adapter}")
    assert result.exit_code == 1, result.output
    assert "is not an adapter of this base model" in result.stderr
    assert "4096" in result.stderr and "trained on llama-7b" in result.stderr


def test_rank_above_the_limit_raises_it_and_says_so(adapter, embedded_spec, capsys):
    from swiftcli.cli.deploy import check_adapters
    from swiftcli.config.spec import EngineConfig

    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "r": 8, "rank_pattern": {"q_proj": 24}}))
    engine = EngineConfig(enable_lora=True, max_lora_rank=16)
    assert check_adapters({"wide": str(adapter)}, embedded_spec, engine).max_lora_rank == 32
    assert engine.max_lora_rank == 16  # the caller's config is left as it was
    assert "Raising --max_lora_rank from 16 to 32: adapter wide has rank 24." in capsys.readouterr().err
    engine = EngineConfig(enable_lora=True, max_lora_rank=64)
    assert check_adapters({"wide": str(adapter)}, embedded_spec, engine).max_lora_rank == 64


def test_the_session_adapter_passes(lora_ckpt, embedded_spec):
    from swiftcli.export.adapters import check_adapter

    info = check_adapter(lora_ckpt, embedded_spec)
    assert info.rank == 8 and info.modules > 0
