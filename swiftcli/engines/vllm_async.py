"""vLLM's AsyncLLM behind the AsyncEngine protocol: the engine core runs in its own process, and outputs
arrive on the server's event loop."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from swiftcli.config.distributed import is_distributed
from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.engines.base import Completion, EngineRequest, RequestResult, check_context_length
from swiftcli.engines.detach import engine_core_detached
from swiftcli.engines.heap import freeze_startup_heap, thaw_heap
from swiftcli.engines.modalities import check_accepts
from swiftcli.engines.outputs import to_result
from swiftcli.engines.parallel import worker_in_process
from swiftcli.engines.scheduler import SERVER, log_limits, usage_context
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.engines.vllm import (
    SHUTDOWN_GRACE_SECONDS,
    VLLM_CAPABILITIES,
    _first_line,
    _start_hint,
    engine_args,
    import_vllm,
    platform_defaults,
    sampling_params,
    started_capabilities,
)
from swiftcli.engines.vllm_inputs import rendered_ids, token_input_async
from swiftcli.errors import EngineError, EngineUnavailableError, InputError, OverloadedError


class AsyncVllmEngine:
    """vLLM's AsyncLLM (the engine core runs in its own process; outputs arrive on this event loop)."""

    backend = "vllm"
    capabilities = replace(VLLM_CAPABILITIES, final_results=False)

    def __init__(self, spec: ModelSpec, config: EngineConfig | None = None) -> None:
        import_vllm()
        from vllm.engine.arg_utils import AsyncEngineArgs  # deferred: vllm loads only when needed (a light start-up)
        from vllm.v1.engine.async_llm import AsyncLLM

        self.spec = spec
        self.config = config or EngineConfig()
        args = engine_args(spec, self.config)
        args.setdefault("disable_log_stats", True)
        if spec.adapters:
            args["enable_lora"] = True
        try:
            # vLLM's OpenAI server's scheduler budgets, not the generic engine's (engines.scheduler); the engine
            # core in its own session, so that Ctrl-C or a group SIGTERM lets the server drain
            with engine_core_detached(), worker_in_process(args, is_cpu=platform_defaults().is_cpu,
                                                           distributed=is_distributed(self.config)):
                self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args), usage_context=usage_context(SERVER))
        except (ValueError, RuntimeError, OSError, TypeError) as exc:
            raise EngineError(f"vLLM could not start: {_first_line(exc)}", _start_hint(exc)) from exc
        self.engine_args = args
        self.scheduler_limits = log_limits(self.llm.vllm_config, SERVER)
        self.hf_tokenizer = load_tokenizer(spec, self.config.trust_remote_code)
        self.max_model_len = int(self.llm.model_config.max_model_len)
        self.vocab_size = int(self.llm.model_config.get_vocab_size())
        self.max_num_seqs = int(self.llm.vllm_config.scheduler_config.max_num_seqs)
        self.generation_config = GenerationConfig.from_model_dir(spec.model_dir)
        self.lora_enabled = bool(args.get("enable_lora"))
        self._lora: dict[str, Any] = {}
        self._lora_ids = itertools.count(1)  # never reused: vLLM caches adapters by id, even after unloading
        for path in spec.adapters:
            self.add_lora(path.name, str(path))
        self.default_adapter = spec.adapters[0].name if spec.adapters else None
        self.capabilities = started_capabilities(args, final_results=False)
        freeze_startup_heap()

    @property
    def lora_names(self) -> list[str]:
        return list(self._lora)

    def add_lora(self, name: str, path: str) -> None:
        from vllm.lora.request import LoRARequest  # deferred: vllm loads only when needed (a light start-up)

        if not self.lora_enabled:
            raise EngineError("LoRA adapters need an engine started with LoRA enabled",
                              "pass --vllm_enable_lora true (or --lora_modules)")
        self._lora[name] = LoRARequest(name, next(self._lora_ids), path)

    async def load_lora(self, name: str, path: str) -> None:
        """Add an adapter at runtime and load it into the engine now, so a bad one fails here, not in a request."""
        self.add_lora(name, path)
        try:
            await self.llm.add_lora(self._lora[name])
        except BaseException:
            del self._lora[name]
            raise

    async def unload_lora(self, name: str) -> None:
        """Forget an adapter: requests that name it afterwards are refused."""
        request = self._lora.pop(name)
        await self.llm.remove_lora(request.lora_int_id)

    async def generate(self, request: EngineRequest, *, guided: dict[str, Any] | None = None
                       ) -> AsyncIterator[RequestResult]:
        if request.multi_modal_data:
            check_accepts(self.spec, request.multi_modal_data)
        try:
            prompt = await token_input_async(self.llm, request.prompt_ids, request.multi_modal_data)
        except _client_errors() as exc:  # the processor's and vLLM's checks of the prompt and its images
            raise InputError(_first_line(exc)) from None
        max_tokens = check_context_length(len(rendered_ids(prompt, request.prompt_ids)),
                                          request.config.max_new_tokens, self.max_model_len)
        if request.prompt_logprobs is not None and not self.capabilities.batched_prompt_logprobs:
            # Concurrent requests share engine steps here, and a batched step would kill the engine.
            raise InputError("prompt logprobs (echo with logprobs, prompt_logprobs) are not available on vLLM's CPU "
                             "backend with LoRA enabled; serve without LoRA, or merge the adapter first")
        try:
            params = sampling_params(request, max_tokens)
            if guided:
                # deferred: vllm loads only when needed (a light start-up)
                from vllm.sampling_params import StructuredOutputsParams

                params.structured_outputs = StructuredOutputsParams(**guided)
        except _client_errors() as exc:  # vLLM's validation of sampling settings and of the prompt
            raise InputError(_first_line(exc)) from None
        adapter = request.adapter or self.default_adapter
        if adapter is not None and adapter not in self._lora:
            raise InputError(f"unknown LoRA adapter {adapter!r}")
        stream = self.llm.generate(prompt, params, request.request_id,
                                   lora_request=self._lora.get(adapter) if adapter else None,
                                   data_parallel_rank=request.replica,
                                   priority=request.priority if self.capabilities.priority_scheduling else 0)
        parts: dict[int, Completion] = {}
        try:
            async for output in stream:
                result = to_result(request.request_id, output)
                # With n > 1 candidates may be reported one at a time; keep the latest state of each.
                for completion in result.outputs:
                    parts[completion.index] = completion
                result.outputs = [parts[i] for i in sorted(parts)]
                yield result
        except Exception as exc:
            await self._abort_quietly(request.request_id)
            raise _request_error(exc) from None
        finally:
            # Closing vLLM's generator aborts the request in the engine core when it has not finished.
            await stream.aclose()

    async def _abort_quietly(self, request_id: str) -> None:
        # vLLM registers a request in its output processor before sending it to the engine core, and does
        # not unregister it when the sending fails: abort it ourselves, or it is held forever.
        if self.errored:
            return
        try:
            await self.llm.abort(request_id)
        except Exception:  # noqa: BLE001 - the request's own error is the one to report
            pass

    @property
    def errored(self) -> bool:
        """True once the engine core has died: every request fails until the process restarts."""
        llm = getattr(self, "llm", None)
        return bool(llm is not None and llm.errored)

    @property
    def failure(self) -> str | None:
        """Which data-parallel rank stopped, once the engine has died (None otherwise, or with one rank)."""
        from swiftcli.engines.data_parallel import failed_replica  # here: engines.data_parallel imports this module

        llm = getattr(self, "llm", None)
        return failed_replica(llm) if llm is not None and self.errored else None

    def replicas(self) -> list[Any]:
        """Each data-parallel engine rank (engines.data_parallel.ReplicaState); empty with one."""
        from swiftcli.engines.data_parallel import replica_states  # here: engines.data_parallel imports this module

        llm = getattr(self, "llm", None)
        return list(replica_states(llm)) if llm is not None else []

    async def abort(self, request_id: str) -> None:
        await self.llm.abort(request_id)

    def num_unfinished(self) -> int:
        return int(self.llm.get_num_unfinished_requests())

    async def aclose(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            shutdown_llm(llm)
            del self.llm
            thaw_heap()


def _request_error(exc: Exception) -> Exception:
    """vLLM's exception -> ours: bad request, overload, dead engine; anything else unchanged."""
    try:
        from vllm.exceptions import GracefulHTTPError  # deferred: vllm loads only when needed (a light start-up)
        from vllm.v1.engine.exceptions import EngineDeadError
    except ImportError:
        GracefulHTTPError = EngineDeadError = ()  # type: ignore[assignment,misc]  # noqa: N806
    if isinstance(exc, EngineDeadError):
        return EngineUnavailableError("the engine has stopped", "the server exits so that it can be restarted")
    if isinstance(exc, GracefulHTTPError):
        return OverloadedError("the engine's queue is full", "retry later")
    if isinstance(exc, _client_errors()):  # vLLM's request validation
        return InputError(_first_line(exc))
    return exc


def _client_errors() -> tuple[type[BaseException], ...]:
    """Exceptions vLLM raises for a bad request (as opposed to a broken engine)."""
    try:
        from vllm.exceptions import VLLMClientError  # deferred: vllm loads only when needed (a light start-up)
    except ImportError:
        return (ValueError,)
    return (ValueError, VLLMClientError)


def shutdown_llm(llm: Any) -> None:
    """Stop an AsyncLLM, giving requests in flight a grace period where the release takes one."""
    try:
        llm.shutdown(timeout=SHUTDOWN_GRACE_SECONDS)
    except TypeError:  # releases whose shutdown takes no timeout
        llm.shutdown()
