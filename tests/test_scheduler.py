"""Scheduler budgets: `deploy` runs with the max_num_seqs / max_num_batched_tokens vLLM's own OpenAI server picks
for the same engine arguments, offline engines with `vllm.LLM`'s; the device-count check before loading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swiftcli.config import EngineConfig
from swiftcli.engines import parallel, scheduler
from swiftcli.engines.vllm import engine_args
from swiftcli.errors import UsageError

LOG_LINE = re.compile(r"vLLM scheduler \((server|offline) defaults\): max_num_seqs=(\d+) max_num_batched_tokens=(\d+)")


def vllm_server_limits(args: dict[str, object]) -> scheduler.SchedulerLimits:
    """What `python -m vllm.entrypoints.openai.api_server` resolves for these engine arguments: its own
    argument parser, `AsyncEngineArgs.from_cli_args`, and the usage context its engine client passes."""
    import inspect

    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    flags = ["--model", str(args["model"])]
    for key, value in args.items():
        if key in ("model", "tokenizer") or value is None or value is False:
            continue
        flags += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    namespace = make_arg_parser(FlexibleArgumentParser()).parse_args(flags)
    # The context vLLM's server builds its engine with, read from the server itself.
    context = inspect.signature(build_async_engine_client).parameters["usage_context"].default
    config = AsyncEngineArgs.from_cli_args(namespace).create_engine_config(context)
    return scheduler.limits_of(config)


@pytest.fixture
def restore_binding(monkeypatch):
    # engine_args binds CPU threads for several workers; keep that out of the other tests' environment.
    monkeypatch.delenv(parallel.BIND_VARIABLE, raising=False)
    monkeypatch.delenv(parallel.AUTO_MARK, raising=False)


@pytest.mark.parametrize("tp", [1, 3])
def test_server_budgets_match_vllm_server(embedded_spec, restore_binding, tp):
    """With 3 CPU workers vLLM's server budgets (384 / 6144) differ from the generic engine's (128 / 2048)
    and from vllm.LLM's (768 / 12288), so the context swiftcli's servers pass is what is checked here."""
    args = engine_args(embedded_spec, EngineConfig(tensor_parallel_size=tp))
    ours = scheduler.planned_limits(args, scheduler.SERVER)
    assert ours == vllm_server_limits(args)
    if tp == 3:
        assert ours != scheduler.planned_limits(args, "ENGINE_CONTEXT")
        assert ours != scheduler.planned_limits(args, scheduler.OFFLINE)


def test_user_budget_wins(embedded_spec, restore_binding):
    args = engine_args(embedded_spec, EngineConfig(max_num_seqs=7))
    assert scheduler.planned_limits(args, scheduler.SERVER).max_num_seqs == 7


@pytest.mark.slow
def test_deploy_logs_vllm_server_budgets(embedded_spec, deploy_server):
    """A live `swiftcli -v deploy` (the session's): the budgets it logs are those of its running engine, and equal
    vLLM's server's for the same engine arguments."""
    found = LOG_LINE.findall(deploy_server.output())
    assert found, deploy_server.output()[-3000:]
    kind, seqs, tokens = found[-1]
    assert kind == "server"
    expected = vllm_server_limits(engine_args(embedded_spec, EngineConfig(seed=0)))
    assert (int(seqs), int(tokens)) == (expected.max_num_seqs, expected.max_num_batched_tokens)


def test_offline_engine_gets_llm_budgets(vllm_engine):
    args = dict(vllm_engine.engine_args)
    assert vllm_engine.scheduler_limits == scheduler.planned_limits(args, scheduler.OFFLINE)
    assert vllm_engine.scheduler_limits == scheduler.limits_of(vllm_engine.llm.llm_engine.vllm_config)


def _llama_8b_dir(root: Path) -> Path:
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_attention_heads": 32,
              "num_key_value_heads": 8, "num_hidden_layers": 32, "hidden_size": 4096}
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_more_ranks_than_gpus_refused_with_sizes_that_fit(tmp_path):
    model_dir = _llama_8b_dir(tmp_path)
    with pytest.raises(UsageError) as err:
        parallel.check_parallel_sizes(model_dir, 4, 1, devices=2)
    assert err.value.message == "--tensor_parallel_size 4 needs 4 GPUs, but 2 GPUs are visible to this process"
    assert err.value.hint == "tensor parallel sizes that fit: 1, 2"
    with pytest.raises(UsageError, match=r"2 x --pipeline_parallel_size 2 needs 4 GPUs, but 3 GPUs"):
        parallel.check_parallel_sizes(model_dir, 2, 2, devices=3)
    with pytest.raises(UsageError, match="no GPU is visible"):
        parallel.check_parallel_sizes(model_dir, 2, 1, devices=0)
    parallel.check_parallel_sizes(model_dir, 2, 1, devices=2)  # fits
    parallel.check_parallel_sizes(model_dir, 8, 1, devices=None)  # not counted (CPU, Ray)


def test_cpu_engine_args_do_not_count_gpus(embedded_spec, restore_binding):
    # On CPU each rank is a process: three ranks on a machine without GPUs are fine.
    assert engine_args(embedded_spec, EngineConfig(tensor_parallel_size=3))["tensor_parallel_size"] == 3


def test_loaded_engine_freezes_startup_heap(vllm_engine):
    """The loaded engine's start-up objects are out of the collector's sight, so a full collection no longer
    walks them (vLLM's server does the same)."""
    import gc

    assert gc.get_freeze_count() > 100_000


def test_heap_thawed_when_the_last_engine_closes(monkeypatch):
    import gc

    from swiftcli.engines import heap

    monkeypatch.setattr(heap, "_frozen", {"engines": 0})
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    heap.freeze_startup_heap()
    heap.freeze_startup_heap()
    heap.thaw_heap()
    assert calls == ["freeze", "freeze"]
    heap.thaw_heap()
    assert calls == ["freeze", "freeze", "unfreeze"]
