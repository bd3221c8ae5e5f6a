"""Per-model generation defaults: the registry's apply where the checkpoint's generation_config.json sets no
sampling, and the sampling in force is said in one line (chat banner, app-ui settings)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from swiftcli.config.sampling import describe_sampling, describe_sent
from swiftcli.config.spec import SAMPLING_KEYS, GenerationConfig, ModelSpec
from swiftcli.registry import models


def spec_for(model_dir: Path, model_type: str | None) -> ModelSpec:
    return ModelSpec(model_dir=model_dir, model_type=model_type, template_type="chatml")


def test_embedded_model_defaults_are_greedy_with_a_repetition_guard(embedded_spec):
    data = json.loads((embedded_spec.model_dir / "generation_config.json").read_text())
    assert not SAMPLING_KEYS & data.keys(), "the embedded checkpoint states no sampling of its own"
    config = GenerationConfig.for_model(embedded_spec)
    assert config.greedy and config.repetition_penalty == 1.1
    # A temperature alone turns sampling on again (the defaults do not pin do_sample).
    assert not config.copy(temperature=0.7).greedy


def test_a_checkpoints_own_sampling_wins_whole(tmp_path: Path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": 0.6, "max_new_tokens": 99}))
    config = GenerationConfig.for_model(spec_for(tmp_path, "smollm2-135m-instruct"))
    assert config.temperature == 0.6 and not config.greedy and config.max_new_tokens == 99
    assert config.repetition_penalty == 1.0, "no mix of the file's sampling and the registry's"
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 2, "max_new_tokens": 99}))
    config = GenerationConfig.for_model(spec_for(tmp_path, "qwen2_5-7b-instruct"))
    assert (config.temperature, config.top_p, config.top_k, config.repetition_penalty) == (0.7, 0.8, 20, 1.05)
    assert config.max_new_tokens == 99
    # Unregistered or unknown: ms-swift's fallback.
    assert GenerationConfig.for_model(spec_for(tmp_path, None)) == GenerationConfig(max_new_tokens=99)
    assert GenerationConfig.for_model(spec_for(tmp_path / "none", None)) == GenerationConfig()
    assert GenerationConfig.for_model(spec_for(tmp_path, "llama3_1-8b-instruct"), temperature=0.2).temperature == 0.2


@pytest.mark.parametrize("info", models.all_models(), ids=lambda i: i.model_type)
def test_registered_defaults_are_valid_generation_configs(info):
    names = {f.name for f in fields(GenerationConfig)}
    assert set(info.generation_defaults) <= names
    GenerationConfig(**info.generation_defaults)


def test_model_card_families_have_defaults():
    for name in models.names():
        # Vision-language checkpoints ship their own generation_config.json; the text families' cards are here.
        if name.startswith(("qwen2_5-", "qwen3-", "llama3")) and not models.get(name).modalities:
            assert models.generation_defaults(name), name
    assert models.generation_defaults("llama3_2-1b-instruct")["top_k"] == 0, "Llama's card sets no top_k"
    assert models.generation_defaults(None) == {} and models.generation_defaults("nope") == {}


def test_sampling_said_in_one_line():
    assert describe_sampling(GenerationConfig(temperature=0, repetition_penalty=1.1, max_new_tokens=300)) == (
        "greedy, repetition_penalty 1.1, max_new_tokens 300")
    assert describe_sampling(GenerationConfig()) == "temperature 0.3, top_p 0.7, top_k 20, max_new_tokens 2048"
    assert describe_sampling(GenerationConfig(top_k=0, seed=3, max_new_tokens=None)) == (
        "temperature 0.3, top_p 0.7, seed 3")
    assert describe_sent({}) == "the server's defaults"
    assert describe_sent({"temperature": 0.0, "do_sample": False, "stop": []}) == (
        "greedy; the rest the server's defaults")
