"""The config loader: model_type, model path, ckpt_dir (args.json / sft_args.json / LoRA adapter), bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swiftcli.errors import CheckpointError, EngineError, ModelNotFoundError
from swiftcli.hub.resolve import resolve_model


def _full_checkpoint(embedded_spec, path: Path, args: dict | None, args_file: str = "args.json") -> Path:
    """A full-weights checkpoint dir (files linked from the embedded model) with ms-swift's argument file."""
    path.mkdir(parents=True)
    for item in embedded_spec.model_dir.iterdir():
        if item.is_file() and not item.name.startswith("."):
            (path / item.name).symlink_to(item)
    if args is not None:
        (path / args_file).write_text(json.dumps(args))
    return path


def test_no_options_is_the_embedded_model(embedded_spec):
    assert embedded_spec.model_type == "smollm2-135m-instruct"
    assert embedded_spec.template_type == "smollm2"
    assert (embedded_spec.model_dir / "config.json").is_file()
    assert resolve_model(model_id_or_path=str(embedded_spec.model_dir)).model_type == "smollm2-135m-instruct"


def test_args_json_of_ms_swift_3(embedded_spec, tmp_path):
    ckpt = _full_checkpoint(embedded_spec, tmp_path / "v0" / "checkpoint-5",
                            {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "model_type": "smollm2-135m-instruct",
                             "template": "chatml", "system": "You are a pirate."})
    spec = resolve_model(ckpt_dir=ckpt)
    assert spec.model_dir == ckpt.resolve() and spec.adapters == ()
    assert spec.template_type == "chatml" and spec.default_system == "You are a pirate."


def test_sft_args_json_in_the_parent_of_ms_swift_2(embedded_spec, tmp_path):
    run = tmp_path / "output" / "v1-20240101"
    ckpt = _full_checkpoint(embedded_spec, run / "checkpoint-100", None)
    (run / "sft_args.json").write_text(json.dumps({"model_type": "smollm2-135m-instruct", "template_type": "AUTO",
                                                  "system": "Be brief."}))
    spec = resolve_model(ckpt_dir=ckpt)
    assert spec.model_type == "smollm2-135m-instruct" and spec.template_type == "smollm2"
    assert spec.default_system == "Be brief."


def test_lora_checkpoint_resolves_its_base(lora_ckpt, embedded_spec):
    spec = resolve_model(ckpt_dir=lora_ckpt)
    assert spec.model_dir == embedded_spec.model_dir
    assert spec.adapters == (lora_ckpt.resolve(),)
    assert spec.template_type == "smollm2"


def test_lora_base_from_adapter_config_alone(lora_ckpt, embedded_spec, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (bare / name).symlink_to(lora_ckpt / name)
    assert json.loads((bare / "adapter_config.json").read_text())["base_model_name_or_path"]
    spec = resolve_model(ckpt_dir=bare)
    assert spec.model_dir == embedded_spec.model_dir and spec.adapters == (bare.resolve(),)


def test_lora_on_vllm_without_enable_lora_names_the_merge_command(lora_ckpt):
    from swiftcli.config import EngineConfig
    from swiftcli.engines import create_engine

    spec = resolve_model(ckpt_dir=lora_ckpt)
    with pytest.raises(EngineError) as err:
        create_engine(spec, EngineConfig(enable_lora=False), backend="vllm")
    assert "swiftcli export --ckpt_dir" in err.value.hint and "--merge_lora true" in err.value.hint


@pytest.mark.parametrize("kwargs, error, words", [
    ({"model_type": "qwen-7b-chatt"}, ModelNotFoundError, "qwen-7b-chat"),
    ({"model_id_or_path": "/nonexistent/model"}, ModelNotFoundError, "/nonexistent/model"),
    ({"ckpt_dir": "/nonexistent/ckpt"}, CheckpointError, "does not exist"),
])
def test_bad_model_options(kwargs, error, words):
    with pytest.raises(error) as err:
        resolve_model(**kwargs)
    assert words in f"{err.value} {err.value.hint}"


def test_ckpt_dir_without_weights_or_args(tmp_path):
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(CheckpointError, match="neither model weights"):
        resolve_model(ckpt_dir=tmp_path / "ckpt")
