"""Dataset rows on a Ray cluster, through Ray Data's vLLM batch processor (`ray.data.llm`).

swiftcli renders every prompt here, with the same template and sampling as a local run, and hands Ray Data token
ids and vLLM sampling settings; Ray's own chat-template, tokenize and detokenize stages are off, so the cluster
answers exactly the prompts a local engine would get. Results go through the same writer as a local run: in input
order, one flushed line each, resumable after a crash.

Ray Data schedules vLLM engine actors on the cluster (`--data_parallel_size` of them); each asks for CPU cores
when the cluster has no GPUs, so a CPU-only `ray start --head --num-cpus N` runs it too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.data.runs import ResultFile, Row, RunStats, StreamWriter, result_row
from swiftcli.engines.base import EngineRequest, check_context_length
from swiftcli.engines.vllm import engine_args, sampling_params
from swiftcli.errors import InputError, MissingDependencyError, SwiftError
from swiftcli.generation.core import encode_request
from swiftcli.generation.thinking import split_thinking

RAY_HINT = 'install the Ray extra: pip install "swiftcli[ray]"'
# vLLM sampling fields that swiftcli sets (engines.vllm.sampling_params); passed to Ray Data as a plain dict.
SAMPLING_FIELDS = ("n", "max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty",
                   "frequency_penalty", "seed", "stop", "stop_token_ids", "ignore_eos", "logprobs", "min_p",
                   "min_tokens", "logit_bias", "skip_special_tokens", "include_stop_str_in_output")


def import_ray_llm() -> Any:
    try:
        import ray  # deferred: ray loads only when needed (a light start-up)
        import ray.data.llm  # noqa: F401 - the batch processor, checked before the cluster is contacted
    except ImportError as exc:
        raise MissingDependencyError(f"Ray Data is not available ({exc})", RAY_HINT) from None
    return ray


def model_context(spec: ModelSpec, config: EngineConfig) -> int:
    """The context length the engines will have: --max_model_len, else the model's config.json."""
    if config.max_model_len:
        return config.max_model_len
    try:
        data = json.loads((spec.model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data = data.get("text_config") or data
    return int(data.get("max_position_embeddings") or data.get("max_sequence_length") or 2048)


def sampling_dict(request: EngineRequest, max_model_len: int) -> dict[str, Any]:
    """The vLLM sampling settings of one request, as a local vLLM engine would build them."""
    max_tokens = check_context_length(len(request.prompt_ids), request.config.max_new_tokens, max_model_len)
    params = sampling_params(request, max_tokens)
    values = {name: getattr(params, name) for name in SAMPLING_FIELDS}
    return {k: (list(v) if isinstance(v, (list, tuple, set)) else v) for k, v in values.items()
            if v is not None and v != [] and v != {}}


def ray_engine_kwargs(spec: ModelSpec, config: EngineConfig) -> dict[str, Any]:
    """vLLM engine arguments for each Ray Data engine actor: a local engine's, one replica each."""
    args = engine_args(spec, replace(config, data_parallel_size=1, ray_address=None))
    for key in ("model", "tokenizer"):
        args.pop(key, None)
    return args


class RayAnswerer:
    """Answers rows[done:] on a Ray cluster: `answer(rows, writer, done, stats, on_row)`, as a local engine does."""

    def __init__(self, address: str, spec: ModelSpec, engine: EngineConfig, template: Any, config: GenerationConfig,
                 skip_bad_rows: bool = False) -> None:
        self.ray = import_ray_llm()
        self.address = address
        self.spec = spec
        self.engine = engine
        self.template = template
        self.config = config
        self.skip_bad_rows = skip_bad_rows
        self.max_model_len = model_context(spec, engine)
        self.engine_kwargs = ray_engine_kwargs(spec, engine)

    def connect(self) -> None:
        try:
            self.ray.init(address=self.address, log_to_driver=False, logging_level="ERROR",
                          include_dashboard=False, ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SwiftError(f"cannot reach the Ray cluster at {self.address}: {_first_line(exc)}",
                             "start one with `ray start --head`, and pass the address it prints") from None
        context = self.ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # swiftcli's own progress bar counts the rows

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()

    def __call__(self, rows: Sequence[Row], writer: ResultFile | StreamWriter, done: int, stats: RunStats,
                 on_row: Callable[[RunStats], None] | None = None) -> RunStats:
        t0 = time.perf_counter()
        items = []
        for i, row in list(enumerate(rows))[done:]:
            try:
                request = encode_request(self.template, row.sample.request(), self.config)
                items.append({"index": i, "tokenized_prompt": request.prompt_ids,
                              "sampling_params": sampling_dict(request, self.max_model_len)})
            except SwiftError as exc:
                problem = f"{row.record.where}: {exc.message}"
                if not self.skip_bad_rows:
                    raise InputError(problem, "fix the row, or pass --skip_bad_rows true") from None
                writer.add(i, {**result_row(row.sample, ""), "response": None, "error": problem})
                stats.skipped.append(problem)
        if not items:
            return stats
        for out in self._answers(items):
            i = int(out["index"])
            reasoning, answer = split_thinking(self.template, str(out["generated_text"]))
            line = result_row(rows[i].sample, answer)
            if reasoning is not None:
                line["reasoning"] = reasoning
            writer.add(i, line)
            stats.count(int(out["num_input_tokens"]), int(out["num_generated_tokens"]), t0)
            if on_row is not None:
                on_row(stats)
        stats.seconds = time.perf_counter() - t0
        return stats

    def _answers(self, items: list[dict[str, Any]]) -> Any:
        # deferred: ray loads only when needed (a light start-up)
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        replicas = max(1, self.engine.data_parallel_size)
        per_replica = self.engine.tensor_parallel_size * self.engine.pipeline_parallel_size
        gpus = float(self.ray.cluster_resources().get("GPU", 0))
        # Without GPUs in the cluster, each engine actor asks for CPU cores instead of Ray Data's default GPU.
        bundles = None if gpus else {"bundles": [{"CPU": 1}] * per_replica}
        processor = build_processor(vLLMEngineProcessorConfig(
            model_source=str(self.spec.model_dir),
            engine_kwargs=self.engine_kwargs,
            batch_size=max(1, min(64, -(-len(items) // replicas))),
            concurrency=replicas,
            chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
            placement_group_config=bundles,
            log_engine_metrics=False,
        ))
        dataset = processor(self.ray.data.from_items(items))
        yield from dataset.iter_rows()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__

