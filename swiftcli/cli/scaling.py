"""The CLI side of scaling out: a worker node of `deploy` (`--headless`), and what other commands refuse."""

from __future__ import annotations

from swiftcli.cli import output
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig
from swiftcli.errors import UsageError


def refuse_worker_options(command: str, engine: EngineConfig) -> None:
    """Only `deploy` runs a worker node; other commands run on the head node (node_rank 0)."""
    if engine.headless or engine.node_rank > 0:
        raise UsageError(f"{command} runs on the head node: --headless and --node_rank above 0 are for worker "
                         "nodes of deploy",
                         "start workers with `swiftcli deploy --headless --node_rank R --master_addr HEAD ...`")


def run_worker_node(model: ModelOptions, engine: EngineConfig) -> None:
    """This node's engines, joined to the head node, with no API server, until SIGTERM or Ctrl-C."""
    from swiftcli.engines import check_backend, default_backend
    from swiftcli.engines.data_parallel import check_scaling, run_headless
    from swiftcli.engines.loader import resolve_spec

    backend = model.infer_backend or default_backend()
    check_scaling(engine, backend)
    spec = resolve_spec(model)
    check_backend(spec, engine, backend)
    log = output.engine_logs("deploy")
    head = engine.data_parallel_address or engine.master_addr
    output.message(f"Worker node {engine.node_rank} of {engine.nnodes}: serving {spec.name} for the head node at "
                   f"{head}" + (f"; engine logs in {log.path}" if log.path else ""))
    run_headless(spec, engine)
