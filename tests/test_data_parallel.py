"""Data parallel and multi-node options: checks before anything loads, vLLM's argument names, and how a batch is
spread over replicas. The engine runs are in test_data_parallel_runs.py."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.config import EngineConfig
from swiftcli.engines import parallel
from swiftcli.engines.data_parallel import check_replica_devices, spread_by_length, vllm_scaling_args
from swiftcli.errors import UsageError

runner = CliRunner()


@pytest.mark.parametrize("settings, message, hint", [
    ({"nnodes": 2, "node_rank": 1, "headless": True, "tensor_parallel_size": 3, "pipeline_parallel_size": 2},
     "a worker node (--node_rank 1) needs --master_addr", "e.g. --master_addr"),
    ({"nnodes": 3, "data_parallel_size": 2, "master_addr": "10.0.0.1"},
     "--nnodes 3 does not divide the 2 workers of --data_parallel_size 2", "node counts that divide them: 1, 2"),
    ({"nnodes": 2, "node_rank": 2, "master_addr": "h"}, "--node_rank 2 must be between 0 and 1", "workers count"),
    ({"data_parallel_size": 2, "data_parallel_size_local": 3}, "must be between 1 and --data_parallel_size 2", None),
    ({"data_parallel_size": 4, "data_parallel_size_local": 1, "nnodes": 2, "master_addr": "h"},
     "is 2 replicas, not --data_parallel_size 4", "use --data_parallel_size_local 2"),
    ({"headless": True}, "--headless runs the engines of a worker node, but this launch has one node", "--nnodes"),
    ({"nnodes": 2, "node_rank": 1, "master_addr": "h", "data_parallel_size": 2}, "add --headless", None),
    ({"data_parallel_size": 0}, "--data_parallel_size must be at least 1", None),
])
def test_launch_checks_need_no_model(settings, message, hint):
    with pytest.raises(UsageError) as err:
        EngineConfig(**settings)
    assert message in err.value.message
    if hint:
        assert hint in (err.value.hint or "")


def test_a_worker_node_with_its_head_is_fine():
    config = EngineConfig(data_parallel_size=2, nnodes=2, node_rank=1, master_addr="127.0.0.1", headless=True)
    assert vllm_scaling_args(config) == {"data_parallel_size": 2, "nnodes": 2, "node_rank": 1,
                                         "data_parallel_start_rank": 1, "master_addr": "127.0.0.1"}
    assert vllm_scaling_args(EngineConfig()) == {}  # one engine: vLLM's arguments are untouched


def test_replicas_beyond_the_devices_name_the_sizes_that_fit():
    with pytest.raises(UsageError) as err:
        check_replica_devices(EngineConfig(data_parallel_size=3), 2, "CPU core")
    assert err.value.message == "--data_parallel_size 3 needs 3 CPU cores on this node, but 2 are available"
    assert err.value.hint == "with TP 1 x PP 1, --data_parallel_size up to 2 fits"
    with pytest.raises(UsageError) as err:
        check_replica_devices(EngineConfig(data_parallel_size=2, tensor_parallel_size=3), 4, "GPU")
    assert "--data_parallel_size 2 x --tensor_parallel_size 3 needs 6 GPUs" in err.value.message
    assert err.value.hint == "with TP 3 x PP 1, --data_parallel_size up to 1 fits"
    check_replica_devices(EngineConfig(data_parallel_size=4, data_parallel_size_local=2, nnodes=2,
                                       master_addr="h"), 2, "GPU")  # two of the four on this node


def test_rows_spread_by_length_finish_together():
    lengths = [100, 10, 90, 20, 80, 30, 70, 40]
    chosen = spread_by_length(lengths, 2)
    loads = [sum(n for n, r in zip(lengths, chosen, strict=True) if r == replica) for replica in (0, 1)]
    assert sorted(loads) == [220, 220]
    assert spread_by_length([5, 5, 5, 5], 2) == [0, 1, 0, 1]  # equal rows alternate, in input order
    assert spread_by_length([3], 4) == [0]
    many = spread_by_length(list(range(1, 101)), 3)
    totals = [sum(n for n, r in zip(range(1, 101), many, strict=True) if r == k) for k in range(3)]
    assert max(totals) - min(totals) <= 1


def test_cli_takes_ms_swift_spelling_and_refuses_before_loading(tmp_path, monkeypatch):
    def no_engine(*args):
        raise AssertionError("an engine started")

    monkeypatch.setattr("swiftcli.engines.loader.start_engine", no_engine)
    result = runner.invoke(app, ["infer", "--query", "Hi", "--vllm_data_parallel_size", "2",
                                 "--infer_backend", "pt"])
    assert result.exit_code == 2, result.output
    assert "--data-parallel-size needs the vllm backend" in result.stderr
    result = runner.invoke(app, ["infer", "--query", "Hi", "--headless", "true", "--nnodes", "2", "--node_rank", "1",
                                 "--data_parallel_size", "2", "--master_addr", "127.0.0.1"])
    assert result.exit_code == 2 and "infer runs on the head node" in result.stderr
    result = runner.invoke(app, ["deploy", "--nnodes", "2", "--node_rank", "1", "--headless", "true"])
    assert result.exit_code == 2 and "needs --master-addr" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error and its hint


@pytest.mark.slow  # imports vLLM (about 10 s) where no test before it in this process has
def test_more_replicas_than_cores_refused_before_the_engine(monkeypatch):
    monkeypatch.delenv(parallel.BIND_VARIABLE, raising=False)
    monkeypatch.delenv(parallel.AUTO_MARK, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # a process that may use 2 cores
    result = runner.invoke(app, ["infer", "--query", "Hi", "--data_parallel_size", "3"])
    assert result.exit_code == 2, result.output
    assert "--data-parallel-size 3 needs 3 CPU cores on this node, but 2 are available" in result.stderr
    assert "up to 2 fits" in result.stderr and "Traceback" not in result.output


def test_cpu_replicas_get_a_core_each(embedded_spec, monkeypatch):
    monkeypatch.delenv(parallel.BIND_VARIABLE, raising=False)
    monkeypatch.delenv(parallel.AUTO_MARK, raising=False)
    monkeypatch.setattr(parallel, "numa_nodes", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    from swiftcli.engines.vllm import engine_args

    args = engine_args(embedded_spec, EngineConfig(data_parallel_size=2))
    assert args["data_parallel_size"] == 2
    assert os.environ[parallel.BIND_VARIABLE] == "0|1"  # vLLM gives replica r the r-th group


class FakeReplicas:
    """An AsyncVllmEngine stand-in: answers each request after a delay that grows with its prompt, on its replica."""

    def __init__(self):
        self.engine_args, self.scheduler_limits, self.max_model_len = {}, None, 100
        self.hf_tokenizer = self.generation_config = None
        self.lora_names, self.errored = [], False
        from swiftcli.engines.base import EngineCapabilities

        self.capabilities = EngineCapabilities()
        self.seen, self.cancelled = {}, []

    async def generate(self, request):
        import asyncio

        from swiftcli.engines.base import Completion, RequestResult

        self.seen[request.request_id] = request.replica
        try:
            await asyncio.sleep(0.01 * len(request.prompt_ids))
            yield RequestResult(request.request_id, len(request.prompt_ids), [Completion(0, "x")], finished=False)
            await asyncio.sleep(0.01 * len(request.prompt_ids))
            yield RequestResult(request.request_id, len(request.prompt_ids), [Completion(0, "xy")], finished=True)
        except asyncio.CancelledError:
            self.cancelled.append(request.request_id)
            raise

    async def aclose(self):
        pass


def test_data_parallel_bridge_spreads_returns_and_cancels(monkeypatch):
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.engines.base import EngineRequest
    from swiftcli.engines.data_parallel import DataParallelVllmEngine

    fake = FakeReplicas()

    async def start(spec, config):
        return fake

    monkeypatch.setattr(DataParallelVllmEngine, "_start", staticmethod(start))
    engine = DataParallelVllmEngine(None, EngineConfig(data_parallel_size=2))  # type: ignore[arg-type]
    try:
        requests = [EngineRequest([1] * n, GenerationConfig(), request_id=f"r{n}") for n in (9, 1, 5, 3)]
        finals = list(engine.final_results(requests))
        assert sorted(r.request_id for r in finals) == ["r1", "r3", "r5", "r9"] and all(r.finished for r in finals)
        assert fake.seen == {"r9": 0, "r5": 1, "r3": 1, "r1": 1}  # 9 tokens on one replica, 5+3+1 on the other
        states = list(engine.stream(requests[:1]))
        assert [s.outputs[0].text for s in states] == ["x", "xy"]

        stream = engine.final_results([EngineRequest([1] * 50, GenerationConfig(), request_id="slow")])
        stream.close()  # never started: nothing to cancel
        stream = engine.stream([EngineRequest([1] * 50, GenerationConfig(), request_id="slow"),
                                EngineRequest([1], GenerationConfig(), request_id="fast")])
        first = next(stream)
        assert first.request_id == "fast"
        stream.close()  # the slow one is still running: closing aborts it
        assert "slow" in fake.cancelled
    finally:
        engine.close()
    assert not engine._thread.is_alive()
