"""vLLM's AsyncLLM behind the AsyncEngine protocol: the engine core runs in its own process, and outputs
arrive on the server's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.engines.base import Completion, EngineRequest, RequestResult, check_context_length
from swiftcli.engines.heap import freeze_startup_heap, thaw_heap
from swiftcli.engines.outputs import to_result
from swiftcli.engines.scheduler import SERVER, log_limits, usage_context
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.engines.vllm_inputs import token_input
from swiftcli.errors import EngineError, InputError


class AsyncVllmEngine:
    """vLLM's AsyncLLM (the engine core runs in its own process; outputs arrive on this event loop)."""

    backend = "vllm"

    def __init__(self, spec: ModelSpec, config: EngineConfig | None = None) -> None:
        from swiftcli.engines.vllm import _first_line, _start_hint, engine_args, import_vllm

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
            # vLLM's OpenAI server's scheduler budgets, not the generic engine's (engines.scheduler)
            self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args), usage_context=usage_context(SERVER))
        except (ValueError, RuntimeError, OSError, TypeError) as exc:
            raise EngineError(f"vLLM could not start: {_first_line(exc)}", _start_hint(exc)) from exc
        self.engine_args = args
        self.scheduler_limits = log_limits(self.llm.vllm_config, SERVER)
        self.hf_tokenizer = load_tokenizer(spec, self.config.trust_remote_code)
        self.max_model_len = int(self.llm.model_config.max_model_len)
        self.generation_config = GenerationConfig.from_model_dir(spec.model_dir)
        self.lora_enabled = bool(args.get("enable_lora"))
        self._lora: dict[str, Any] = {}
        for path in spec.adapters:
            self.add_lora(path.name, str(path))
        self.default_adapter = spec.adapters[0].name if spec.adapters else None
        freeze_startup_heap()

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
        from swiftcli.engines.vllm import _first_line, sampling_params

        max_tokens = check_context_length(len(request.prompt_ids), request.config.max_new_tokens,
                                          self.max_model_len)
        try:
            params = sampling_params(request, max_tokens)
            if guided:
                from vllm.sampling_params import StructuredOutputsParams

                params.structured_outputs = StructuredOutputsParams(**guided)
            prompt = token_input(self.llm, request.prompt_ids)
        except _client_errors() as exc:  # vLLM's validation of sampling settings and of the prompt
            raise InputError(_first_line(exc)) from None
        adapter = request.adapter or self.default_adapter
        if adapter is not None and adapter not in self._lora:
            raise InputError(f"unknown LoRA adapter {adapter!r}")
        stream = self.llm.generate(prompt, params,
                                   request.request_id, lora_request=self._lora.get(adapter) if adapter else None)
        parts: dict[int, Completion] = {}
        try:
            async for output in stream:
                result = to_result(request.request_id, output)
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
            thaw_heap()


def _client_errors() -> tuple[type[BaseException], ...]:
    """Exceptions vLLM raises for a bad request (as opposed to a broken engine)."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:
        return (ValueError,)
    return (ValueError, VLLMClientError)
