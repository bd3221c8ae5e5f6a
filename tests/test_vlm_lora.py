"""LoRA on a vision-language model: an adapter that trains the vision tower is refused for serving (vLLM would
drop those weights), with --merge_lora true as the way out; merging it keeps the vision part."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from swiftcli.engines.modalities import check_language_only
from swiftcli.errors import CheckpointError


def adapter(tmp_path, names, config=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, **(config or {})}))
    save_file({n: np.zeros((4, 4), dtype=np.float32) for n in names}, str(tmp_path / "adapter_model.safetensors"))
    return tmp_path / "adapter_model.safetensors"


TEXT = "base_model.model.model.text_model.layers.0.self_attn.q_proj.lora_A.weight"
VISION = "base_model.model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"


def test_adapters_touching_the_vision_tower_are_refused_with_the_way_out(tmp_path):
    text_only = adapter(tmp_path / "t", [TEXT])
    check_language_only(tmp_path / "t", {}, text_only)
    both = adapter(tmp_path / "b", [TEXT, VISION])
    with pytest.raises(CheckpointError, match="trains the vision tower") as info:
        check_language_only(tmp_path / "b", {}, both)
    assert "--merge_lora true" in (info.value.hint or "")
    for config in ({"target_modules": ".*vision_model.*q_proj"}, {"modules_to_save": ["connector"]},
                   {"modules_to_save": ["multi_modal_projector"]}):
        with pytest.raises(CheckpointError, match="trains the vision tower"):
            check_language_only(tmp_path / "t", config, text_only)


@pytest.mark.slow
def test_a_real_vision_adapter_is_refused_for_serving_and_merges_whole(tiny_vlm, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from swiftcli.export.adapters import check_adapter
    from swiftcli.export.merge import merge_lora
    from swiftcli.hub.resolve import resolve_model

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(tmp_path / "ckpt")
    spec = resolve_model(ckpt_dir=tmp_path / "ckpt")
    assert spec.modalities == ("image",)
    with pytest.raises(CheckpointError, match="trains the vision tower"):
        check_adapter(tmp_path / "ckpt", spec)
    result = merge_lora(tmp_path / "ckpt", tmp_path / "merged", verify=False)
    merged = AutoModelForImageTextToText.from_pretrained(str(result.output_dir), dtype=torch.float32)
    original = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm), dtype=torch.float32)
    name = "model.vision_model.encoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], original.state_dict()[name])  # the vision part merged
    assert (result.output_dir / "processor_config.json").is_file()
