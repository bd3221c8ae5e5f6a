"""Checks of the scaling-out settings that need no model and no device: replica and node counts, a worker node's
head address, sizes that divide. They run when the EngineConfig is built, so a wrong launch fails in one line
before anything loads (vLLM would find most of these only after its start-up, in a traceback)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swiftcli.errors import UsageError

if TYPE_CHECKING:
    from swiftcli.config.spec import EngineConfig


def check_distributed(config: EngineConfig) -> None:
    """Raise a UsageError naming the option, with a hint that says what fits."""
    for name in ("data_parallel_size", "nnodes"):
        if getattr(config, name) < 1:
            raise UsageError(f"--{name} must be at least 1, not {getattr(config, name)}")
    dp, local, nnodes, rank = (config.data_parallel_size, config.data_parallel_size_local, config.nnodes,
                               config.node_rank)
    if local is not None and not 1 <= local <= dp:
        raise UsageError(f"--data_parallel_size_local {local} must be between 1 and --data_parallel_size {dp}")
    if not 0 <= rank < nnodes:
        raise UsageError(f"--node_rank {rank} must be between 0 and {nnodes - 1} (--nnodes {nnodes})",
                         "the head node is rank 0; workers count from 1")
    if config.master_port is not None and not 0 < config.master_port < 65536:
        raise UsageError(f"--master_port must be in 1..65535, not {config.master_port}")
    worker = rank > 0 or (local is not None and local < dp and config.headless)
    if worker and not (config.master_addr or config.data_parallel_address):
        raise UsageError(f"a worker node (--node_rank {rank}) needs --master_addr, the head node's address",
                         "pass the address the head node was started with, e.g. --master_addr 10.0.0.1")
    world = dp * config.tensor_parallel_size * config.pipeline_parallel_size
    if nnodes > 1 and world % nnodes:
        fits = [n for n in range(1, world + 1) if world % n == 0]
        raise UsageError(
            f"--nnodes {nnodes} does not divide the {world} workers of {sizes_text(config)}",
            f"node counts that divide them: {', '.join(map(str, fits))}",
        )
    if nnodes > 1 and local is not None and local * nnodes != dp and dp > 1:
        raise UsageError(
            f"--data_parallel_size_local {local} on each of --nnodes {nnodes} is {local * nnodes} replicas, "
            f"not --data_parallel_size {dp}",
            f"use --data_parallel_size_local {dp // nnodes}" if dp % nnodes == 0 else
            "give each node the same share of the replicas",
        )
    if config.headless and nnodes == 1 and (local is None or local == dp):
        raise UsageError("--headless runs the engines of a worker node, but this launch has one node",
                         "add --nnodes N --node_rank R --master_addr HEAD, or leave out --headless")
    if rank > 0 and not config.headless:
        raise UsageError(f"a worker node (--node_rank {rank}) runs without an API server: add --headless",
                         "only the head node (--node_rank 0) serves requests")
    if config.ray_address is not None and nnodes > 1:
        raise UsageError("--ray_address and --nnodes are two ways to span hosts: choose one",
                         "with Ray, start the cluster with `ray start` and leave out --nnodes")


def sizes_text(config: EngineConfig) -> str:
    """`--data_parallel_size 2 x --tensor_parallel_size 2`: the sizes above 1 (TP alone when all are 1)."""
    parts = [f"--{name} {getattr(config, name)}" for name in
             ("data_parallel_size", "tensor_parallel_size", "pipeline_parallel_size") if getattr(config, name) > 1]
    return " x ".join(parts) or f"--tensor_parallel_size {config.tensor_parallel_size}"


def local_replicas(config: EngineConfig) -> int:
    """Data-parallel replicas that run on this node."""
    if config.data_parallel_size_local is not None:
        return config.data_parallel_size_local
    return max(1, config.data_parallel_size // config.nnodes)


def is_distributed(config: EngineConfig) -> bool:
    """Settings that go through vLLM's data-parallel or multi-node launch (not the plain one-engine path)."""
    return (config.data_parallel_size > 1 or config.nnodes > 1 or config.headless
            or config.data_parallel_size_local is not None or config.data_parallel_address is not None
            or config.master_addr is not None or config.master_port is not None)
