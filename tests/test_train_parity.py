"""Train/serve parity: what `deploy` will do with a checkpoint against what its training run did (args.json /
sft_args.json, generation_config.json, the adapter), one line per difference, and `--strict_parity true` refusing.

The comparison is pure (the tokenizer only): most tests here run it directly on the embedded model's tokenizer.
One test starts a real server; the refusals happen before any engine starts.
"""

from __future__ import annotations

import json
import time
import types
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.config.spec import GenerationConfig, ModelSpec
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.errors import CheckpointError
from swiftcli.export.train_parity import (
    compare_adapter,
    refuse_differences,
    serving_template,
    train_serve_report,
)
from swiftcli.hub.resolve import resolve_model
from swiftcli.registry.templates import SMOLLM2_SYSTEM, get_template
from swiftcli.server.watch import WatchedCheckpoint, _same_as_training

PIRATE = "You are a pirate."
BASE_ARGS = {"model_type": "smollm2-135m-instruct", "template_type": "smollm2", "sft_type": "lora"}


@pytest.fixture(scope="module")
def base() -> ModelSpec:
    return resolve_model()


@pytest.fixture(scope="module")
def served(base: ModelSpec):
    """The template a plain `deploy` of the embedded model prompts with (its registry default system prompt)."""
    return get_template(base.template_type, load_tokenizer(base), base.default_system)


@pytest.fixture(scope="module")
def defaults(base: ModelSpec) -> GenerationConfig:
    return GenerationConfig.from_model_dir(base.model_dir)


def checkpoint(folder: Path, args: dict | None, args_file: str = "args.json", generation: dict | None = None) -> Path:
    """A checkpoint folder with only what the comparison reads (and adapter_config.json, so that it resolves)."""
    folder.mkdir(parents=True, exist_ok=True)
    if args is not None:
        (folder / args_file).write_text(json.dumps(args))
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    return folder


@pytest.mark.parametrize("args_file", ["args.json", "sft_args.json"])
def test_a_training_system_prompt_the_server_lacks_is_one_line(tmp_path, served, defaults, args_file):
    ckpt = checkpoint(tmp_path / "checkpoint-10", {**BASE_ARGS, "system": PIRATE}, args_file)
    report = train_serve_report(ckpt, served, defaults)
    assert not report.ok
    (difference,) = report.differences
    assert difference.aspect == "prompt"
    (line,) = report.summary()
    assert line.startswith("checkpoint-10: prompt: system prompt differs")
    assert repr(PIRATE) in line and repr(SMOLLM2_SYSTEM[:57] + "...") in line
    # The token ids part where the system text starts: after "<|im_start|>system\n".
    trained = get_template("smollm2", served.tokenizer, PIRATE).encode("x")
    served_ids = served.encode("x")
    first = next(i for i, (a, b) in enumerate(zip(trained, served_ids, strict=False)) if a != b)
    assert f"they part at token {first}" in line


@pytest.mark.parametrize("args_file", ["args.json", "sft_args.json"])
def test_deploy_ckpt_dir_follows_training_system_prompt_and_says_same(tmp_path, base, defaults, args_file):
    ckpt = checkpoint(tmp_path / "checkpoint-10", {**BASE_ARGS, "model_id_or_path": str(base.model_dir),
                                                   "system": PIRATE}, args_file)
    spec = resolve_model(ckpt_dir=ckpt)  # what deploy --ckpt_dir serves
    assert spec.default_system == PIRATE
    report = train_serve_report(ckpt, serving_template(spec), defaults)
    assert report.ok, report.lines()
    (line,) = report.summary()
    assert line.startswith("checkpoint-10: serving matches training: prompt same ") and repr(PIRATE) in line
    # A --system given to deploy differs from training, and says so.
    overridden = resolve_model(ckpt_dir=ckpt, system="Be brief.")
    assert not train_serve_report(ckpt, serving_template(overridden), defaults).ok


def test_templates_are_compared_by_their_tokens_not_their_names(tmp_path, served, defaults):
    # The model's own chat template renders SmolLM2's default system prompt as the registry's smollm2 does.
    hf = checkpoint(tmp_path / "hf", {**BASE_ARGS, "template_type": None, "template": "hf"})
    assert train_serve_report(hf, served, defaults).ok
    # ms-swift 3.x's `template`; chatml has another default system prompt and a BOS.
    chatml = checkpoint(tmp_path / "chatml", {"model_type": "smollm2-135m-instruct", "template": "chatml"})
    (line,) = train_serve_report(chatml, served, defaults).summary()
    assert "training (template chatml, system 'You are a helpful assistant.')" in line
    unknown = checkpoint(tmp_path / "unknown", {**BASE_ARGS, "template_type": "no-such-template"})
    (line,) = train_serve_report(unknown, served, defaults).summary()
    assert "cannot render training's prompt: unknown template_type 'no-such-template'" in line
    bare = checkpoint(tmp_path / "bare", None)
    (line,) = train_serve_report(bare, served, defaults).summary()
    assert "no args.json or sft_args.json" in line


def test_the_checkpoints_generation_config_against_the_servers_defaults(tmp_path, served, defaults):
    hot = checkpoint(tmp_path / "hot", BASE_ARGS, generation={"do_sample": True, "temperature": 0.9, "top_p": 0.7,
                                                              "max_new_tokens": 100})
    report = train_serve_report(hot, served, defaults)
    (difference,) = report.differences
    assert difference.aspect == "generation_config"
    assert difference.detail == (f"the checkpoint's temperature 0.9, max_new_tokens 100; the server's default "
                                 f"temperature {defaults.temperature:g}, max_new_tokens {defaults.max_new_tokens}")
    # The server's own defaults, as the checkpoint states them: the same.
    same = checkpoint(tmp_path / "same", BASE_ARGS, generation={
        "temperature": defaults.temperature, "top_p": defaults.top_p, "top_k": defaults.top_k})
    assert train_serve_report(same, served, defaults).ok
    # Greedy on both sides: top_p does not matter then.
    greedy = checkpoint(tmp_path / "greedy", BASE_ARGS, generation={"do_sample": False, "top_p": 0.1})
    assert train_serve_report(greedy, served, defaults.copy(temperature=0.0, do_sample=False)).ok
    assert not train_serve_report(greedy, served, defaults).ok


def test_strict_parity_refuses_with_the_first_difference_named(tmp_path, served, defaults):
    pirate = train_serve_report(checkpoint(tmp_path / "pirate", {**BASE_ARGS, "system": PIRATE}), served, defaults)
    plain = train_serve_report(checkpoint(tmp_path / "plain", BASE_ARGS), served, defaults)
    refuse_differences([plain])
    with pytest.raises(CheckpointError) as info:
        refuse_differences([plain, pirate])
    assert info.value.message == f"serving differs from training: {pirate.lines(differences_only=True)[0]}"
    assert "--strict_parity" in (info.value.hint or "")


def test_an_adapter_vllm_would_apply_in_part_is_a_difference(tmp_path, base):
    """The report reuses export.adapters; deploy refuses such an adapter before it (tests/test_vlm_lora.py)."""
    folder = tmp_path / "vision"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    names = ["base_model.model.model.text_model.layers.0.self_attn.q_proj.lora_A.weight",
             "base_model.model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"]
    save_file({n: np.zeros((4, 4), dtype=np.float32) for n in names}, str(folder / "adapter_model.safetensors"))
    vlm = ModelSpec(model_dir=tmp_path / "no-weights", model_type=None, template_type="hf", modalities=("image",))
    item = compare_adapter(folder, vlm)
    assert not item.same and "trains the vision tower" in item.detail


def test_watch_logs_the_differences_and_strict_leaves_the_checkpoint_unloaded(tmp_path, served, defaults):
    ckpt = checkpoint(tmp_path / "run" / "checkpoint-10", {**BASE_ARGS, "system": PIRATE})
    for strict in (False, True):
        state = types.SimpleNamespace(template=served, settings=types.SimpleNamespace(
            generation=defaults, strict_parity=strict))
        row = WatchedCheckpoint("checkpoint-10", ckpt, 10, 0.0)
        assert _same_as_training(state, row) is not strict
        assert len(row.parity) == 1 and "system prompt differs" in row.parity[0]
        assert str(tmp_path) not in row.row()["parity"][0]
        if strict:
            assert row.reason is not None and row.reason.startswith("serving differs from training")


@pytest.fixture(scope="module")
def adapters(base, tmp_path_factory):
    """Real peft adapters of the embedded model: one trained with a system prompt the server lacks, one without."""
    from checkpoints import make_lora_adapter

    root = tmp_path_factory.mktemp("parity")
    pirate = make_lora_adapter(base.model_dir, root / "pirate" / "checkpoint-10", args_file="args.json",
                               extra_args={"system": PIRATE})
    plain = make_lora_adapter(base.model_dir, root / "plain" / "checkpoint-10", args_file="args.json")
    return pirate, plain


def test_deploy_strict_parity_exits_1_before_serving(adapters):
    pirate, plain = adapters
    runner = CliRunner()
    result = runner.invoke(app, ["deploy", "--lora_modules", f"pirate={pirate}", "--lora_modules",
                                 f"plain={plain}", "--strict_parity", "true", "--port", "8479"])
    assert result.exit_code == 1, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error.startswith("Error: serving differs from training: pirate: prompt: system prompt differs"), error
    assert "Traceback" not in result.output and "Serving" not in result.output
    assert "plain: serving matches training" in result.output
    # deploy --ckpt_dir follows args.json's system prompt; a --system given over it is a difference.
    result = runner.invoke(app, ["deploy", "--ckpt_dir", str(pirate), "--system", "Be brief.",
                                 "--strict_parity", "true", "--port", "8479"])
    assert result.exit_code == 1 and "system 'Be brief.'" in result.output, result.output


@pytest.mark.slow
def test_deploy_says_each_difference_at_start_and_per_watched_checkpoint(adapters, tmp_path):
    import httpx
    from checkpoints import make_lora_adapter
    from server_utils import start_server

    pirate, plain = adapters
    run = tmp_path / "run"
    make_lora_adapter(resolve_model().model_dir, run / "checkpoint-10", args_file="args.json",
                      extra_args={"system": PIRATE})
    server = start_server(["--lora_modules", f"pirate={pirate}", "--lora_modules", f"plain={plain}",
                           "--watch", str(run), "--max_lora_rank", "8"], timeout=900)
    try:
        start = server.output()
        assert "pirate: prompt: system prompt differs: training (template smollm2, system 'You are a pirate.')" \
            in start, start[-3000:]
        assert "plain: serving matches training: prompt same" in start
        with httpx.Client(base_url=server.root_url, timeout=30) as client:
            deadline = time.monotonic() + 180
            row = {}
            while not row.get("loaded") and time.monotonic() < deadline:
                time.sleep(0.5)
                row = {r["id"]: r for r in client.get("/v1/checkpoints").json()["data"]}.get("checkpoint-10", {})
            assert row.get("loaded"), row
        assert row["parity"] and "system prompt differs" in row["parity"][0]
        assert "checkpoint-10: prompt: system prompt differs" in server.output()
    finally:
        assert server.stop() == 0, server.output()[-3000:]


@pytest.mark.slow
def test_deploy_refuses_an_adapter_vllm_would_apply_in_part(tiny_vlm, tmp_path):
    """A real peft adapter on a vision-language model that trains the vision tower: deploy refuses it before the
    engine starts, with --merge_lora true as the way out (the library checks: tests/test_vlm_lora.py)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(tmp_path / "checkpoint-5")
    result = CliRunner().invoke(app, ["deploy", "--ckpt_dir", str(tmp_path / "checkpoint-5"), "--port", "8479"])
    assert result.exit_code == 1, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "trains the vision tower" in error
    assert "--merge-lora true" in result.output.replace("--merge_lora", "--merge-lora")  # the hint
    assert "Traceback" not in result.output
