"""Data-parallel replicas and multi-node launches, on vLLM's own data parallelism.

vLLM runs `data_parallel_size` engine cores behind one AsyncLLM, with a coordinator and its own load balancing;
its offline `LLM` refuses data_parallel_size > 1 ("not supported for single-process usage and may hang"). So
every scaled-out launch goes through AsyncLLM: `deploy` serves it as it is, and dataset runs (infer, eval, the
checkpoint sweep) drive it from an event loop on a thread through `DataParallelVllmEngine`, which gives each
batch's rows to replicas by prompt length (longest first, to the least loaded replica) so that the replicas
finish together. Multi-node launches (`--nnodes`, `--node_rank`, `--master_addr`, `--headless`) are vLLM's; a
worker node runs `run_headless`, vLLM's engines without an API server.

On CPU each rank's OpenMP threads are bound to cores of their own (engines.parallel): VLLM_CPU_OMP_THREADS_BIND
lists one core group per local rank, in vLLM's [DP, PP, TP] order, and vLLM gives each replica its slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from swiftcli.config.distributed import is_distributed, local_replicas, sizes_text
from swiftcli.config.spec import EngineConfig, ModelSpec
from swiftcli.engines.base import EngineCapabilities, EngineRequest, RequestResult
from swiftcli.errors import EngineError, UsageError

SCALING_OPTIONS = ("data_parallel_size", "data_parallel_size_local", "data_parallel_address", "nnodes", "node_rank",
                   "master_addr", "master_port", "headless", "ray_address")


def check_scaling(config: EngineConfig, backend: str) -> None:
    """Refuse scaling-out settings a backend cannot honour, before loading."""
    if backend != "vllm" and (is_distributed(config) or config.ray_address):
        defaults = EngineConfig()
        option = next(name for name in SCALING_OPTIONS if getattr(config, name) != getattr(defaults, name))
        raise UsageError(f"--{option} needs the vllm backend (vLLM's data parallel and multi-node launch)",
                         "drop --infer_backend pt")


def check_replica_devices(config: EngineConfig, devices: int, kind: str) -> None:
    """This node's replicas x TP x PP ranks must each have a device (a GPU, or on CPU a core of their own)."""
    per_replica = config.tensor_parallel_size * config.pipeline_parallel_size
    replicas = local_replicas(config)
    if replicas * per_replica <= devices:
        return
    fit = devices // per_replica
    wanted = sizes_text(config)
    if fit >= 1:
        hint = (f"with TP {config.tensor_parallel_size} x PP {config.pipeline_parallel_size}, --data_parallel_size "
                f"up to {fit} fits" + (" per node" if config.nnodes > 1 else ""))
    else:
        hint = f"TP x PP must be at most {devices} for one replica"
    raise UsageError(f"{wanted} needs {replicas * per_replica} {kind}s on this node, but {devices} "
                     f"{'are' if devices != 1 else 'is'} available", hint)


def vllm_scaling_args(config: EngineConfig) -> dict[str, Any]:
    """The scaling-out settings in vLLM's engine argument names (only those that were set)."""
    args: dict[str, Any] = {}
    if config.data_parallel_size > 1:
        args["data_parallel_size"] = config.data_parallel_size
    if config.data_parallel_size_local is not None:
        args["data_parallel_size_local"] = config.data_parallel_size_local
    if config.data_parallel_address is not None:
        args["data_parallel_address"] = config.data_parallel_address
    if config.nnodes > 1:
        args.update(nnodes=config.nnodes, node_rank=config.node_rank)
        if config.data_parallel_size > 1 and config.node_rank > 0:
            # vLLM infers a worker's first replica from its rank only for its own API server; say it here
            args["data_parallel_start_rank"] = config.node_rank * local_replicas(config)
    if config.master_addr is not None:
        args["master_addr"] = config.master_addr
    if config.master_port is not None:
        args["master_port"] = config.master_port
    return args


def spread_by_length(lengths: Sequence[int], replicas: int) -> list[int]:
    """A replica for each request: longest first, each to the replica with the fewest tokens so far (the
    longest-processing-time rule), so that replicas finish close together. Ties go to the lower replica."""
    load = [0] * replicas
    chosen = [0] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        replica = min(range(replicas), key=lambda r: (load[r], r))
        chosen[i] = replica
        load[replica] += max(1, lengths[i])
    return chosen


class DataParallelVllmEngine:
    """The offline Engine protocol over vLLM's data-parallel AsyncLLM, whose event loop runs on a thread.

    A batch's requests are spread over the replicas by prompt length; results come back as they finish, in any
    order (callers that write in input order, as dataset runs do, keep their order). Closing a stream early
    aborts what still runs.
    """

    backend = "vllm"
    capabilities: EngineCapabilities

    def __init__(self, spec: ModelSpec, config: EngineConfig | None = None) -> None:
        self.spec = spec
        self.config = config or EngineConfig()
        self.replicas = self.config.data_parallel_size
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="swiftcli-data-parallel", daemon=True)
        self._thread.start()
        try:
            # Built on the loop's thread: vLLM's client binds its sockets and output task to the running loop.
            self._engine = self._call(self._start(spec, self.config))
        except BaseException:
            self._stop_loop()
            raise
        self.engine_args = self._engine.engine_args
        # the async engine's, with finished states only for batches (what `final_results` gives)
        self.capabilities = replace(self._engine.capabilities, final_results=True)
        self.hf_tokenizer = self._engine.hf_tokenizer
        self.generation_config = self._engine.generation_config
        self.max_model_len = self._engine.max_model_len
        self.scheduler_limits = self._engine.scheduler_limits

    @staticmethod
    async def _start(spec: ModelSpec, config: EngineConfig) -> Any:
        from swiftcli.engines.vllm_async import AsyncVllmEngine  # here: engines.vllm_async imports this module

        return AsyncVllmEngine(spec, config)

    def _call(self, coroutine: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @property
    def lora_names(self) -> list[str]:
        return list(self._engine.lora_names)

    def add_lora(self, name: str, path: str) -> None:
        self._engine.add_lora(name, path)

    def stream(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        return self._run(requests, final_only=False)

    def final_results(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        return self._run(requests, final_only=True)

    def _run(self, requests: Sequence[EngineRequest], final_only: bool) -> Iterator[RequestResult]:
        replicas = spread_by_length([len(r.prompt_ids) for r in requests], self.replicas)
        placed = [replace(r, replica=replica) for r, replica in zip(requests, replicas, strict=True)]
        results: queue.Queue[Any] = queue.Queue()
        driver: dict[str, Any] = {}
        ended = threading.Event()
        job = asyncio.run_coroutine_threadsafe(self._drive(placed, results, final_only, driver, ended), self._loop)
        finished = 0
        try:
            while finished < len(placed):
                try:
                    item = results.get(timeout=0.5)
                except queue.Empty:
                    if job.done() and results.empty():
                        job.result()  # the driver's own error, else it ended early
                        raise EngineError("the data-parallel engine stopped before every request finished") from None
                    continue
                if isinstance(item, BaseException):
                    raise item
                if item.finished:
                    finished += 1
                yield item
        finally:
            if not job.done():
                # Cancelling the driver cancels each request's generator, which aborts it in vLLM; wait for that,
                # so that the engine holds none of these requests once the stream is closed.
                task = driver.get("task")
                if task is None:
                    job.cancel()
                else:
                    self._loop.call_soon_threadsafe(task.cancel)
                    ended.wait(30)

    async def _drive(self, requests: list[EngineRequest], results: queue.Queue[Any], final_only: bool,
                     driver: dict[str, Any], ended: threading.Event) -> None:
        driver["task"] = asyncio.current_task()

        async def one(request: EngineRequest) -> None:
            async for state in self._engine.generate(request):
                if state.finished or not final_only:
                    results.put(state)

        tasks = [asyncio.ensure_future(one(r)) for r in requests]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            results.put(exc)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            ended.set()

    def abort(self, request_ids: Sequence[str]) -> None:
        for request_id in request_ids:
            with contextlib.suppress(Exception):
                self._call(self._engine.abort(request_id), timeout=30)

    @property
    def errored(self) -> bool:
        return bool(self._engine.errored)

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):
                self._call(engine.aclose(), timeout=120)
            del self._engine
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def run_headless(spec: ModelSpec, config: EngineConfig) -> None:
    """A worker node: this node's share of the engines (its data-parallel replicas, or its TP/PP ranks), joined
    to the head node, with no API server; returns when they stop (SIGTERM or Ctrl-C)."""
    from swiftcli.engines.vllm import engine_args, import_vllm  # here: engines.vllm imports this module

    import_vllm()
    # deferred: vllm loads only when needed (a light start-up)
    from vllm.entrypoints.cli.serve import run_headless as vllm_run_headless
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    # vLLM's own headless launch reads an argparse namespace: build it from vLLM's parser, then lay our
    # engine arguments (already in vLLM's names) over it.
    namespace = make_arg_parser(FlexibleArgumentParser()).parse_args(["--model", str(spec.model_dir)])
    for key, value in engine_args(spec, config).items():
        setattr(namespace, key, value)
    namespace.headless = True
    namespace.api_server_count = 0
    vllm_run_headless(namespace)


def _engine_manager(llm: Any) -> Any:
    resources = getattr(getattr(llm, "engine_core", None), "resources", None)
    return getattr(resources, "engine_manager", None)


@dataclass(frozen=True)
class ReplicaState:
    """One data-parallel engine rank: its process, and the requests this API process has in flight on it."""

    rank: int
    pid: int | None
    exitcode: int | None  # None while it runs
    unfinished: int


def replica_states(llm: Any) -> list[ReplicaState]:
    """Each data-parallel engine core this process started; empty with one engine core (or an unknown layout)."""
    processes = list(getattr(_engine_manager(llm), "processes", None) or [])
    if len(processes) < 2:
        return []
    client = getattr(llm, "engine_core", None)
    identities = list(getattr(client, "core_engines", None) or [])
    inflight = getattr(client, "engine_inflight", None) or {}
    out = []
    for index, proc in enumerate(processes):
        suffix = str(getattr(proc, "name", "")).rpartition("DP")[2]
        rank = int(suffix) if suffix.isdigit() else index
        unfinished = int(inflight.get(identities[rank], 0)) if rank < len(identities) else 0
        out.append(ReplicaState(rank, getattr(proc, "pid", None), getattr(proc, "exitcode", None), unfinished))
    return out


def failed_replica(llm: Any) -> str | None:
    """Which data-parallel rank stopped, as vLLM's engine monitor saw it: "rank 1 (pid 123, exit code -9)"."""
    manager = _engine_manager(llm)
    name = getattr(manager, "failed_proc_name", None)
    if not name:
        return None
    for state in replica_states(llm):
        if name.endswith(f"DP{state.rank}"):
            return f"rank {state.rank} (pid {state.pid}, exit code {state.exitcode})"
    return str(name)
