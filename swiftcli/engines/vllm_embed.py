"""Embeddings on vLLM's pooling runner (`runner="pooling"`, `convert="embed"` in vllm 0.32): a decoder model's
normalized last-token hidden state, unless the checkpoint declares its own pooling (sentence-transformers models
do). The async engine serves /v1/embeddings; `embed_texts` is the offline path of `infer --task embedding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swiftcli.config.distributed import is_distributed
from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.engines.detach import engine_core_detached
from swiftcli.engines.parallel import worker_in_process
from swiftcli.engines.scheduler import SERVER, usage_context
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.engines.vllm import (
    _first_line,
    _shutdown_core,
    _start_hint,
    engine_args,
    import_vllm,
    platform_defaults,
)
from swiftcli.engines.vllm_async import _request_error, shutdown_llm
from swiftcli.engines.vllm_inputs import token_input
from swiftcli.errors import EngineError, InputError

POOLING_ARGS = {"runner": "pooling", "convert": "embed"}


def _pooling_args(spec: ModelSpec, config: EngineConfig) -> dict[str, Any]:
    import_vllm()
    if spec.adapters or config.enable_lora:
        raise InputError("embeddings are served from the base model: LoRA adapters are not supported with "
                         "--task embedding", "merge the adapter first (swiftcli export --merge_lora true)")
    return {**engine_args(spec, config), **POOLING_ARGS, "disable_log_stats": True}


def check_dimensions(model_config: Any, dimensions: int | None) -> None:
    """`dimensions` is for Matryoshka models only, and within their size (checked here to word the error)."""
    if dimensions is None:
        return
    if not model_config.is_matryoshka:
        raise InputError("this model does not support `dimensions` (it is not a Matryoshka embedding model)")
    size = int(model_config.embedding_size)
    allowed = model_config.matryoshka_dimensions
    if not 1 <= dimensions <= size or (allowed and dimensions not in allowed):
        raise InputError(f"dimensions must be one of {list(allowed)}" if allowed else
                         f"dimensions must be in [1, {size}], not {dimensions}")


class AsyncVllmEmbedder:
    """vLLM's AsyncLLM with the pooling runner: `await embed(prompt_ids, request_id)` -> one vector."""

    backend = "vllm"
    lora_names: list[str] = []

    def __init__(self, spec: ModelSpec, config: EngineConfig | None = None) -> None:
        self.spec = spec
        self.config = config or EngineConfig()
        args = _pooling_args(spec, self.config)  # imports vLLM after our logging settings
        # lazy: keeps --help and start-up free of torch, vLLM, transformers, the hub clients, FastAPI
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        try:
            with engine_core_detached(), worker_in_process(args, is_cpu=platform_defaults().is_cpu,
                                                           distributed=is_distributed(self.config)):
                self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args), usage_context=usage_context(SERVER))
        except (ValueError, RuntimeError, OSError, TypeError) as exc:
            raise EngineError(f"vLLM could not start: {_first_line(exc)}", _start_hint(exc)) from exc
        self.hf_tokenizer = load_tokenizer(spec, self.config.trust_remote_code)
        model_config = self.llm.model_config
        self.max_model_len = int(model_config.max_model_len)
        self.vocab_size = int(model_config.get_vocab_size())
        self.embedding_size = int(model_config.embedding_size)
        self.max_num_seqs = int(self.llm.vllm_config.scheduler_config.max_num_seqs)
        self.generation_config = GenerationConfig.from_model_dir(spec.model_dir)

    async def embed(self, prompt_ids: list[int], request_id: str, dimensions: int | None = None) -> list[float]:
        # lazy: keeps --help and start-up free of torch, vLLM, transformers, the hub clients
        from vllm.pooling_params import PoolingParams

        check_dimensions(self.llm.model_config, dimensions)
        params = PoolingParams(task="embed", dimensions=dimensions)
        stream = self.llm.encode(token_input(self.llm, prompt_ids), params, request_id)
        data: Any = None
        try:
            async for output in stream:
                data = output.outputs.data
        except Exception as exc:
            raise _request_error(exc) from None
        finally:
            await stream.aclose()  # aborts the request in the engine core when the client went away
        return [float(x) for x in data.tolist()]

    @property
    def errored(self) -> bool:
        llm = getattr(self, "llm", None)
        return bool(llm is not None and llm.errored)

    def num_unfinished(self) -> int:
        return int(self.llm.get_num_unfinished_requests())

    async def aclose(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            shutdown_llm(llm)
            del self.llm


def embed_texts(spec: ModelSpec, config: EngineConfig, texts: Sequence[str]) -> list[list[float]]:
    """Vectors for `texts` with an offline pooling engine (started and closed here)."""

    args = _pooling_args(spec, config)  # imports vLLM after our logging settings
    # lazy: keeps --help and start-up free of torch, vLLM, transformers, the hub clients, FastAPI
    from vllm import LLM

    args.pop("disable_log_stats")
    try:
        with worker_in_process(args, is_cpu=platform_defaults().is_cpu, distributed=is_distributed(config),
                               here=True) as hosted:
            llm = LLM(**args)
    except (ValueError, RuntimeError, OSError, TypeError) as exc:
        raise EngineError(f"vLLM could not start: {_first_line(exc)}", _start_hint(exc)) from exc
    try:
        tokenizer = load_tokenizer(spec, config.trust_remote_code)
        prompts = [{"prompt_token_ids": list(tokenizer.encode(text, add_special_tokens=True))} for text in texts]
        outputs = llm.embed(prompts, use_tqdm=False)  # type: ignore[arg-type]
        return [[float(x) for x in out.outputs.embedding] for out in outputs]
    finally:
        _shutdown_core(llm.llm_engine, hosted)
        del llm
