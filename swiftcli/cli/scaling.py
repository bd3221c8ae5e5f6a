"""The CLI side of scaling out: a worker node of `deploy` (`--headless`), and what other commands refuse."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from swiftcli.cli import output
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationConfig
from swiftcli.data.ray_runs import RayAnswerer, import_ray_llm
from swiftcli.engines import check_backend, default_backend
from swiftcli.engines.data_parallel import check_scaling, run_headless
from swiftcli.engines.loader import merge_generation
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.errors import UsageError
from swiftcli.registry.templates import get_template


def refuse_worker_options(command: str, engine: EngineConfig) -> None:
    """Only `deploy` runs a worker node; other commands run on the head node (node_rank 0)."""
    if engine.headless or engine.node_rank > 0:
        raise UsageError(f"{command} runs on the head node: --headless and --node_rank above 0 are for worker "
                         "nodes of deploy",
                         "start workers with `swiftcli deploy --headless --node_rank R --master_addr HEAD ...`")


def run_worker_node(model: ModelOptions, engine: EngineConfig) -> None:
    """This node's engines, joined to the head node, with no API server, until SIGTERM or Ctrl-C."""
    from swiftcli.loading import resolve_spec  # looked up per call: tests patch it on its module

    backend = model.infer_backend or default_backend()
    check_scaling(engine, backend)
    spec = resolve_spec(model)
    check_backend(spec, engine, backend)
    log = output.engine_logs("deploy")
    head = engine.data_parallel_address or engine.master_addr
    output.message(f"Worker node {engine.node_rank} of {engine.nnodes}: serving {spec.name} for the head node at "
                   f"{head}" + (f"; engine logs in {log.path}" if log.path else ""))
    run_headless(spec, engine)


def ray_dataset_answerer(model: ModelOptions, engine: EngineConfig, gen: Any, skip_bad_rows: bool,
                         defaults: dict[str, Any]) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """`infer --val_dataset ... --ray_address ADDR`: a context that connects to the cluster and yields the row
    answerer (data.ray_runs), with swiftcli's template and sampling, as a local engine's would be."""

    @contextlib.contextmanager
    def connected() -> Iterator[Any]:
        from swiftcli.loading import resolve_spec  # looked up per call: tests patch it on its module

        import_ray_llm()
        spec = resolve_spec(model)
        config = merge_generation(GenerationConfig.from_model_dir(spec.model_dir), gen.given(), **defaults)
        template = get_template(spec.template_type, load_tokenizer(spec, engine.trust_remote_code),
                                spec.default_system, enable_thinking=config.enable_thinking)
        output.engine_logs("infer")
        answerer = RayAnswerer(str(engine.ray_address), spec, engine, template, config, skip_bad_rows)
        with output.phase(f"Connecting to Ray at {engine.ray_address}"):
            answerer.connect()
        try:
            yield lambda rows, writer, done, stats, on_row: answerer(rows, writer, done, stats, on_row)
        finally:
            answerer.close()

    return connected


def check_ray_address(engine: EngineConfig, dataset: bool) -> None:
    """--ray_address serves --distributed_executor_backend ray, or a dataset run through Ray Data; nothing else."""
    if engine.ray_address and engine.distributed_executor_backend != "ray" and not dataset:
        raise UsageError("--ray_address needs --distributed_executor_backend ray, or a dataset (--val_dataset) "
                         "to run through Ray Data")
