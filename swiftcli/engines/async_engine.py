"""Async engines for servers: vLLM's `AsyncLLM`, and the pt backend run in a worker thread.

`generate(request)` yields cumulative `RequestResult`s like `Engine.stream`; closing or cancelling the iterator
aborts the engine request, so a client that goes away frees its capacity at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any, Protocol

from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.engines.base import Completion, EngineRequest, RequestResult, check_context_length
from swiftcli.errors import EngineError, InputError, UsageError


class AsyncEngine(Protocol):
    """A loaded model serving many concurrent requests from one event loop."""

    backend: str
    spec: ModelSpec
    hf_tokenizer: Any
    generation_config: GenerationConfig
    max_model_len: int

    @property
    def lora_names(self) -> list[str]: ...

    def generate(self, request: EngineRequest, *, guided: dict[str, Any] | None = None
                 ) -> AsyncIterator[RequestResult]:
        """Yield the request's cumulative state as it grows; the last one has `finished=True`.

        `guided` constrains the output: `{"json": schema}` or `{"json_object": True}` (vLLM only).
        """
        ...

    async def abort(self, request_id: str) -> None: ...

    def add_lora(self, name: str, path: str) -> None: ...

    async def aclose(self) -> None: ...


def create_async_engine(spec: ModelSpec, config: EngineConfig | None = None, backend: str | None = None
                        ) -> AsyncEngine:
    """Start an async engine; same checks and defaults as `swiftcli.engines.create_engine`."""
    from swiftcli.engines import default_backend

    backend = backend or default_backend()
    config = config or EngineConfig()
    if backend == "vllm":
        if not spec.support_vllm:
            raise EngineError(f"{spec.name} is not supported by vLLM", "use --infer_backend pt")
        return AsyncVllmEngine(spec, config)
    if backend == "pt":
        from swiftcli.engines import create_engine

        return ThreadedAsyncEngine(create_engine(spec, config, backend="pt"))
    raise UsageError(f"unknown infer_backend {backend!r}", "choose vllm or pt")


class AsyncVllmEngine:
    """vLLM's AsyncLLM (the engine core runs in its own process; outputs arrive on this event loop)."""

    backend = "vllm"

    def __init__(self, spec: ModelSpec, config: EngineConfig | None = None) -> None:
        from swiftcli.engines.vllm import _first_line, _start_hint, engine_args, import_vllm, load_tokenizer

        import_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.spec = spec
        self.config = config or EngineConfig()
        args = engine_args(spec, self.config)
        args.setdefault("disable_log_stats", True)
        if spec.adapters:
            args["enable_lora"] = True
        try:
            self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        except (ValueError, RuntimeError, OSError, TypeError) as exc:
            raise EngineError(f"vLLM could not start: {_first_line(exc)}", _start_hint(exc)) from exc
        self.engine_args = args
        self.hf_tokenizer = load_tokenizer(spec, self.config.trust_remote_code)
        self.max_model_len = int(self.llm.model_config.max_model_len)
        self.generation_config = GenerationConfig.from_model_dir(spec.model_dir)
        self.lora_enabled = bool(args.get("enable_lora"))
        self._lora: dict[str, Any] = {}
        for path in spec.adapters:
            self.add_lora(path.name, str(path))
        self.default_adapter = spec.adapters[0].name if spec.adapters else None

    @property
    def lora_names(self) -> list[str]:
        return list(self._lora)

    def add_lora(self, name: str, path: str) -> None:
        from vllm.lora.request import LoRARequest

        if not self.lora_enabled:
            raise EngineError("LoRA adapters need an engine started with LoRA enabled",
                              "pass --vllm_enable_lora true (or --lora_modules)")
        self._lora[name] = LoRARequest(name, len(self._lora) + 1, path)

    async def generate(self, request: EngineRequest, *, guided: dict[str, Any] | None = None
                       ) -> AsyncIterator[RequestResult]:
        from vllm.inputs import TokensPrompt

        from swiftcli.engines.vllm import _first_line, sampling_params

        max_tokens = check_context_length(len(request.prompt_ids), request.config.max_new_tokens,
                                          self.max_model_len)
        try:
            params = sampling_params(request, max_tokens)
            if guided:
                from vllm.sampling_params import StructuredOutputsParams

                params.structured_outputs = StructuredOutputsParams(**guided)
        except _client_errors() as exc:  # vLLM's validation of sampling settings
            raise InputError(_first_line(exc)) from None
        adapter = request.adapter or self.default_adapter
        if adapter is not None and adapter not in self._lora:
            raise InputError(f"unknown LoRA adapter {adapter!r}")
        stream = self.llm.generate(TokensPrompt(prompt_token_ids=request.prompt_ids), params,
                                   request.request_id, lora_request=self._lora.get(adapter) if adapter else None)
        parts: dict[int, Completion] = {}
        try:
            async for output in stream:
                result = _to_result(request.request_id, output)
                # With n > 1 candidates may be reported one at a time; keep the latest state of each.
                for completion in result.outputs:
                    parts[completion.index] = completion
                result.outputs = [parts[i] for i in sorted(parts)]
                yield result
        except _client_errors() as exc:  # vLLM's request validation
            raise InputError(_first_line(exc)) from None
        finally:
            # Closing vLLM's generator aborts the request in the engine core when it has not finished.
            await stream.aclose()

    async def abort(self, request_id: str) -> None:
        await self.llm.abort(request_id)

    def num_unfinished(self) -> int:
        return int(self.llm.get_num_unfinished_requests())

    async def aclose(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.shutdown()
            del self.llm


def _to_result(request_id: str, output: Any) -> RequestResult:
    # Each candidate carries its own finish_reason (with n > 1 one may finish before the others).
    completions = []
    for out in output.outputs:
        logprobs = None
        if out.logprobs:
            logprobs = [{tok: lp.logprob for tok, lp in step.items()} for step in out.logprobs]
        completions.append(Completion(out.index, out.text, list(out.token_ids), out.finish_reason, logprobs))
    return RequestResult(request_id, len(output.prompt_token_ids or []), completions, bool(output.finished))


def _client_errors() -> tuple[type[BaseException], ...]:
    """Exceptions vLLM raises for a bad request (as opposed to a broken engine)."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:
        return (ValueError,)
    return (ValueError, VLLMClientError)


class ThreadedAsyncEngine:
    """Any sync Engine (the pt backend) behind the async interface: requests run one at a time on a worker
    thread; results hop to the event loop through a queue."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.backend = engine.backend
        self.spec = engine.spec
        self.hf_tokenizer = engine.hf_tokenizer
        self.generation_config = engine.generation_config
        self.max_model_len = engine.max_model_len
        self._lock = threading.Lock()

    @property
    def lora_names(self) -> list[str]:
        return [p.name for p in self.spec.adapters]

    def add_lora(self, name: str, path: str) -> None:
        raise EngineError("the pt backend applies LoRA adapters at load time only",
                          "pass --ckpt_dir with the adapter, or use --infer_backend vllm")

    async def generate(self, request: EngineRequest, *, guided: dict[str, Any] | None = None
                       ) -> AsyncIterator[RequestResult]:
        if guided:
            raise InputError("response_format needs the vllm backend")
        check_context_length(len(request.prompt_ids), request.config.max_new_tokens, self.max_model_len)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                with self._lock:
                    if stop.is_set():
                        return
                    stream = self.engine.stream([request])
                    try:
                        for result in stream:
                            loop.call_soon_threadsafe(queue.put_nowait, result)
                            if stop.is_set():
                                break
                    finally:
                        stream.close()
            except BaseException as exc:  # surfaced on the event loop
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        thread = threading.Thread(target=work, name=f"generate-{request.request_id}", daemon=True)
        thread.start()
        finished = False
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
        finally:
            if not finished:
                stop.set()
                self.engine.abort([request.request_id])

    async def abort(self, request_id: str) -> None:
        self.engine.abort([request_id])

    def num_unfinished(self) -> int:
        return 0

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.close)
