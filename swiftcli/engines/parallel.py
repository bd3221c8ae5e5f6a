"""Tensor and pipeline parallel: sizes checked against the model before loading, CPU thread binding.

vLLM shards attention heads across tensor-parallel ranks: the heads must divide evenly, and so must the KV heads
(or, with more ranks than KV heads, the ranks by the KV heads, which vLLM then replicates). Pipeline stages take
contiguous runs of layers; vLLM balances an uneven split itself, so a stage count needs only to be at most the
number of layers. Workers run under vLLM's multiprocessing executor on one machine; `--distributed_executor_backend
ray` hands them to a Ray cluster for several machines.

On CPU, vLLM binds each worker's OpenMP threads to its own NUMA node and refuses to start with more workers than
nodes ("Not enough allowed NUMA nodes"). There `cpu_thread_binding` spreads the allowed CPUs over the workers
instead, via VLLM_CPU_OMP_THREADS_BIND; a value the user set is left alone.

One CPU worker runs inside the process that drives it (`worker_in_process`): vLLM's default starts it as a process
of its own, one more start of torch and vLLM and one message between processes per step. vLLM keeps its
model-parallel state once per process, so a process hosts one engine's worker at a time: closing a second one there
would tear that state down under the first.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swiftcli.errors import UsageError

BIND_VARIABLE = "VLLM_CPU_OMP_THREADS_BIND"
MULTIPROCESSING_VARIABLE = "VLLM_ENABLE_V1_MULTIPROCESSING"


def model_shape(model_dir: Path) -> dict[str, int]:
    """Attention heads, KV heads and layers from config.json (the text model's, for multimodal configs)."""
    try:
        config: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    config = config.get("text_config") or config.get("llm_config") or config
    heads = config.get("num_attention_heads") or config.get("n_head") or config.get("num_heads")
    layers = config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers")
    kv_heads = config.get("num_key_value_heads") or config.get("multi_query_group_num") or heads
    shape = {"heads": heads, "kv_heads": kv_heads, "layers": layers}
    return {k: int(v) for k, v in shape.items() if isinstance(v, int) and v > 0}


def tp_fits(tp: int, heads: int, kv_heads: int) -> bool:
    if heads % tp:
        return False
    return kv_heads % tp == 0 if tp <= kv_heads else tp % kv_heads == 0


def check_parallel_sizes(model_dir: Path, tensor_parallel_size: int, pipeline_parallel_size: int,
                         devices: int | None = None) -> None:
    """Raise a UsageError naming the sizes that would work, before any weights are loaded. `devices`: the
    accelerators this process may use (None: not limited, as on CPU or with a Ray cluster)."""
    for name, value in (("tensor_parallel_size", tensor_parallel_size),
                        ("pipeline_parallel_size", pipeline_parallel_size)):
        if value < 1:
            raise UsageError(f"--{name} must be at least 1, not {value}")
    shape = model_shape(model_dir)
    heads, kv_heads, layers = shape.get("heads"), shape.get("kv_heads", shape.get("heads")), shape.get("layers")
    if tensor_parallel_size > 1 and heads and kv_heads and not tp_fits(tensor_parallel_size, heads, kv_heads):
        working = [n for n in range(1, heads + 1) if tp_fits(n, heads, kv_heads)]
        raise UsageError(
            f"--tensor_parallel_size {tensor_parallel_size} does not divide this model's {heads} attention heads "
            f"and {kv_heads} KV heads",
            f"sizes that work: {', '.join(map(str, working))}",
        )
    if pipeline_parallel_size > 1 and layers and pipeline_parallel_size > layers:
        raise UsageError(
            f"--pipeline_parallel_size {pipeline_parallel_size} is more than this model's {layers} layers",
            f"use at most {layers} pipeline stages",
        )
    if devices is not None:
        check_device_count(tensor_parallel_size, pipeline_parallel_size, devices, shape)


def check_device_count(tensor_parallel_size: int, pipeline_parallel_size: int, devices: int,
                       shape: dict[str, int]) -> None:
    """Each tensor x pipeline rank takes one device of this machine: refuse more ranks than devices."""
    world = tensor_parallel_size * pipeline_parallel_size
    if world <= devices:
        return
    heads, kv_heads = shape.get("heads"), shape.get("kv_heads", shape.get("heads"))
    fit = [n for n in range(1, devices + 1) if not heads or not kv_heads or tp_fits(n, heads, kv_heads)]
    wanted = (f"--tensor_parallel_size {tensor_parallel_size}" if pipeline_parallel_size == 1 else
              f"--tensor_parallel_size {tensor_parallel_size} x --pipeline_parallel_size {pipeline_parallel_size}")
    found = "no GPU is" if devices == 0 else f"{devices} GPU{'s are' if devices > 1 else ' is'}"
    hint = ("tensor parallel sizes that fit: " + ", ".join(map(str, fit)) if devices else
            "check CUDA_VISIBLE_DEVICES and the driver (nvidia-smi), or use --infer_backend pt")
    raise UsageError(f"{wanted} needs {world} GPUs, but {found} visible to this process", hint)


def visible_gpus() -> int:
    """GPUs this process may use (honours CUDA_VISIBLE_DEVICES) without initialising CUDA, so that vLLM can
    still fork its workers afterwards."""
    try:
        # lazy: keeps start-up free of torch, which may be absent
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count())


def numa_nodes() -> int:
    nodes = [p for p in Path("/sys/devices/system/node").glob("node[0-9]*") if p.is_dir()]
    return max(1, len(nodes))


def cpu_thread_binding(workers: int, cpus: list[int] | None = None, nodes: int | None = None) -> str | None:
    """A VLLM_CPU_OMP_THREADS_BIND value giving each worker its own CPUs, or None when vLLM's own
    NUMA binding can place them (one node per worker)."""
    nodes = numa_nodes() if nodes is None else nodes
    if workers <= nodes:
        return None
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else sorted(cpus)
    if workers <= len(cpus):
        size, extra = divmod(len(cpus), workers)
        groups, start = [], 0
        for rank in range(workers):
            end = start + size + (1 if rank < extra else 0)
            groups.append(cpus[start:end])
            start = end
    else:  # more workers than CPUs: share them round-robin
        groups = [[cpus[rank % len(cpus)]] for rank in range(workers)]
    return "|".join(",".join(map(str, group)) for group in groups)


# The value swiftcli chose is noted beside it, so that this process and its children can tell it from the user's.
AUTO_MARK = "SWIFTCLI_AUTO_THREADS_BIND"


def prepare_cpu_workers(workers: int) -> str | None:
    """Set VLLM_CPU_OMP_THREADS_BIND for this many CPU workers unless the user chose a value; returns what
    was set (None when nothing was needed or the user's value stands)."""
    current = os.environ.get(BIND_VARIABLE, "auto")
    ours = os.environ.get(AUTO_MARK)
    if current != "auto" and current != ours:
        return None  # the user's own binding wins
    value = cpu_thread_binding(workers) if workers > 1 else None
    if value is None:
        if ours is not None and current == ours:
            del os.environ[BIND_VARIABLE]
        os.environ.pop(AUTO_MARK, None)
        return None
    os.environ[BIND_VARIABLE] = os.environ[AUTO_MARK] = value
    return value


# Engines whose worker runs in this process now (at most one: see the module's docstring).
_hosted_workers = {"count": 0}


@contextmanager
def worker_in_process(args: dict[str, Any], *, is_cpu: bool, distributed: bool,
                      here: bool = False) -> Iterator[bool]:
    """While vLLM starts an engine of one CPU worker, run that worker inside the process that drives it: the
    command's own for `vllm.LLM` (`here`), the engine core's for the server's AsyncLLM
    (VLLM_ENABLE_V1_MULTIPROCESSING=0). On 2 cores this halves the start and generates 1.3x (one stream) to 1.6x
    (32 prompts) faster (benchmarks/RESULTS.md). Several workers, data parallel, several nodes, a named executor, a
    VLLM_ENABLE_V1_MULTIPROCESSING the user set, and a `here` engine while this process already hosts one keep
    vLLM's own layout. `distributed`: the engine's settings go through vLLM's data-parallel or multi-node launch
    (config.distributed.is_distributed). Yields whether a `here` engine's worker runs in this process: the engine
    then calls `release_hosted_worker` once it has shut down."""
    read_vllm_environment_afresh()
    sizes = ("tensor_parallel_size", "pipeline_parallel_size")
    one_worker = all(int(args.get(size) or 1) == 1 for size in sizes) and not distributed
    chosen = bool(args.get("distributed_executor_backend")) or MULTIPROCESSING_VARIABLE in os.environ
    if not is_cpu or not one_worker or chosen or (here and _hosted_workers["count"]):
        yield False
        return
    os.environ[MULTIPROCESSING_VARIABLE] = "0"
    try:
        yield here
    finally:
        os.environ.pop(MULTIPROCESSING_VARIABLE, None)
    if here:  # started: this process now hosts its worker
        _hosted_workers["count"] += 1


def read_vllm_environment_afresh() -> None:
    """An engine core that starts in a process makes vLLM read its environment variables once there, and answer
    every later read from that cache (vllm.envs.enable_envs_cache). The next engine this process starts must see
    the variables as they are now: this layout choice, and the thread binding of its workers."""
    envs = sys.modules.get("vllm.envs")
    disable = getattr(envs, "disable_envs_cache", None)
    if disable is not None:
        disable()


def release_hosted_worker() -> None:
    """A `worker_in_process(here=True)` engine has shut down: the process may host another engine's worker."""
    _hosted_workers["count"] = max(0, _hosted_workers["count"] - 1)
