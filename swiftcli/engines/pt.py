"""The transformers backend (`pt`): batched generation with left padding, streaming, cuda when available."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.engines.base import (
    Completion,
    EngineCapabilities,
    EngineRequest,
    RequestResult,
    check_context_length,
)
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.errors import InputError, MissingDependencyError

_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32", "half": "float16", "float": "float32"}


def _torch() -> Any:
    try:
        # lazy: keeps --help free of torch; a missing one is reported by name
        import torch
    except ImportError:
        raise MissingDependencyError("the pt backend needs torch", "install swiftcli[cpu] or torch") from None
    return torch


def get_model_tokenizer(
    spec: ModelSpec, dtype: str | None = None, trust_remote_code: bool = False, device: str | None = None
) -> tuple[Any, Any]:
    """Load a transformers model (with its LoRA adapters applied) and tokenizer."""
    torch = _torch()
    # lazy: keeps --help and start-up free of torch, transformers, the hub clients
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = _DTYPES.get(dtype or spec.torch_dtype or "bfloat16", "bfloat16")
    model = AutoModelForCausalLM.from_pretrained(
        spec.model_dir, dtype=getattr(torch, name), trust_remote_code=trust_remote_code
    ).to(device)  # type: ignore[arg-type]
    if spec.adapters:
        try:
            from peft import PeftModel  # deferred: peft loads only when needed (a light start-up)
        except ImportError:
            raise MissingDependencyError("LoRA adapters on the pt backend need peft", "pip install peft") from None
        for path in spec.adapters:
            model = PeftModel.from_pretrained(model, str(path))
    model.eval()
    return model, load_tokenizer(spec, trust_remote_code)


class _BatchStreamer:
    """Receives each step's new tokens for the whole batch from `generate` (transformers' streamer hook)."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self._first = True

    def put(self, value: Any) -> None:
        if self._first:  # the first call carries the prompt
            self._first = False
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(None)


@dataclass
class _Batch:
    """One `generate` call: its arguments, and what decides when a row stops and how long it may grow."""

    kwargs: dict[str, Any]
    stop_ids: set[int]
    stop_strings: list[str]
    max_new: int


class _Rows:
    """Tokens so far, and whether each output row has stopped (a row per request and candidate)."""

    def __init__(self, count: int) -> None:
        self.tokens: list[list[int]] = [[] for _ in range(count)]
        self.done = [False] * count


class PtEngine:
    """transformers generate behind the Engine protocol. Requests of one call with the same sampling
    settings run as one left-padded batch."""

    backend = "pt"
    # Adapters are applied at load time (peft); prompt logprobs come from one forward pass per request.
    capabilities = EngineCapabilities(lora=True, prompt_logprobs=True, batched_prompt_logprobs=True)

    def __init__(self, spec: ModelSpec, config: EngineConfig | None = None) -> None:
        self.spec = spec
        self.config = config or EngineConfig()
        self.model, self.hf_tokenizer = get_model_tokenizer(spec, self.config.dtype, self.config.trust_remote_code)
        model_config = self.model.config
        self.max_model_len = int(
            self.config.max_model_len or getattr(model_config, "max_position_embeddings", None) or 4096
        )
        self.generation_config = GenerationConfig.from_model_dir(spec.model_dir)
        self._aborted: set[str] = set()
        self._lock = threading.Lock()

    def stream(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        groups: dict[str, list[EngineRequest]] = {}
        for request in requests:
            check_context_length(len(request.prompt_ids), request.config.max_new_tokens, self.max_model_len)
            _refuse_vllm_only(request)
            key = repr((request.config, sorted(request.stop), sorted(request.stop_token_ids)))
            groups.setdefault(key, []).append(request)
        for group in groups.values():
            yield from self._stream_batch(group)

    def _stream_batch(self, requests: list[EngineRequest]) -> Iterator[RequestResult]:
        torch = _torch()
        cfg = requests[0].config
        batch = self._batch(requests)
        streamer = _BatchStreamer()
        ids = [r.request_id for r in requests]
        kwargs = {**batch.kwargs, "streamer": streamer, "stopping_criteria": self._abort_criteria(ids)}
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    if cfg.seed is not None:
                        torch.manual_seed(cfg.seed)
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the caller's thread below
                errors.append(exc)
                streamer.end()

        rows = _Rows(len(requests) * cfg.n)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        complete = False
        try:
            yield from self._follow(streamer, requests, batch, rows)
            complete = True
        finally:
            if not complete:  # the caller closed the stream: stop generating now, not at max_new_tokens
                self.abort(ids)
            thread.join()
            if not complete:
                with self._lock:
                    self._aborted.difference_update(ids)
        if errors:
            raise errors[0]
        for i, request in enumerate(requests):
            if request.request_id not in self._aborted:
                yield self._result(request, rows.tokens, rows.done, cfg.n, i, batch.stop_strings, batch.max_new,
                                   final=True)
        with self._lock:
            self._aborted.difference_update(ids)

    def _batch(self, requests: list[EngineRequest]) -> _Batch:
        """`generate`'s arguments for requests that share sampling settings: left-padded prompts, sampling, stops."""
        torch = _torch()
        cfg = requests[0].config
        tokenizer = self.hf_tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        width = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in requests])
        attention = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in requests])
        max_new = min(
            check_context_length(len(r.prompt_ids), cfg.max_new_tokens, self.max_model_len) for r in requests
        )
        stop_ids = sorted(set(requests[0].stop_token_ids) | {tokenizer.eos_token_id} - {None})
        stop_strings = [*cfg.stop, *requests[0].stop]
        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(self.model.device),
            "attention_mask": attention.to(self.model.device),
            "max_new_tokens": max_new,
            "do_sample": not cfg.greedy,
            "num_return_sequences": cfg.n,
            "repetition_penalty": cfg.repetition_penalty,
            "eos_token_id": stop_ids,
            "pad_token_id": pad,
        }
        if not cfg.greedy:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k if cfg.top_k > 0 else None)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if cfg.min_p > 0 and not cfg.greedy:
            kwargs["min_p"] = cfg.min_p
        if cfg.min_tokens > 0:
            kwargs["min_new_tokens"] = cfg.min_tokens
        if stop_strings:
            kwargs.update(stop_strings=stop_strings, tokenizer=tokenizer)
        return _Batch(kwargs, set(stop_ids), stop_strings, max_new)

    def _follow(self, streamer: _BatchStreamer, requests: list[EngineRequest], batch: _Batch, rows: _Rows
                ) -> Iterator[RequestResult]:
        """Each step's tokens into the rows, and every live request's state after it; ends when `generate` ends
        or every request of the batch was aborted."""
        n = requests[0].config.n
        ids = [r.request_id for r in requests]
        while True:
            step = streamer.queue.get()
            if step is None:
                return
            for row, tok in enumerate(step):
                if rows.done[row]:
                    continue
                rows.tokens[row].append(tok)  # a stop token counts as generated, as in vLLM, but shows no text
                rows.done[row] = tok in batch.stop_ids
            for i, request in enumerate(requests):
                if request.request_id in self._aborted:
                    continue
                yield self._result(request, rows.tokens, rows.done, n, i, batch.stop_strings, batch.max_new,
                                   final=False)
            if all(r in self._aborted for r in ids):
                return

    def _result(
        self, request: EngineRequest, tokens: list[list[int]], done: list[bool], n: int, i: int,
        stop_strings: list[str], max_new: int, final: bool,
    ) -> RequestResult:
        outputs = []
        for j in range(n):
            row = i * n + j
            shown = tokens[row][:-1] if done[row] else tokens[row]
            text, hit_stop = _decode(self.hf_tokenizer, shown, stop_strings, final)
            reason = None
            if final:
                reason = "stop" if done[row] or hit_stop or len(tokens[row]) < max_new else "length"
            outputs.append(Completion(j, text, list(tokens[row]), reason))
        result = RequestResult(request.request_id, len(request.prompt_ids), outputs, final)
        if final:
            self._attach_logprobs(request, result)
        return result

    def _attach_logprobs(self, request: EngineRequest, result: RequestResult) -> None:
        """Prompt and output log-probabilities from one forward pass over prompt + answer (done after generating,
        so generation itself stays as fast as without them)."""
        top_out = request.config.logprobs
        if request.prompt_logprobs is None and top_out is None:
            return
        top = max(request.prompt_logprobs or 0, top_out or 0)
        size = len(request.prompt_ids)
        for out in result.outputs:
            steps = token_logprobs(self.model, [*request.prompt_ids, *out.token_ids], top)
            if request.prompt_logprobs is not None and result.prompt_logprobs is None:
                result.prompt_logprobs = steps[:size]
            if top_out is not None:
                out.logprobs = [s or {} for s in steps[size:]]

    def _abort_criteria(self, ids: list[str]) -> Any:
        """Ends `generate` early once every request of the batch was aborted (frees the model at once)."""
        # lazy: keeps --help and start-up free of torch, transformers, the hub clients
        from transformers import StoppingCriteria, StoppingCriteriaList

        engine = self

        class Aborted(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                torch = _torch()
                stop = all(r in engine._aborted for r in ids)
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        return StoppingCriteriaList([Aborted()])

    def abort(self, request_ids: Sequence[str]) -> None:
        with self._lock:
            self._aborted.update(request_ids)

    def close(self) -> None:
        self.model = None


def token_logprobs(model: Any, ids: list[int], top: int) -> list[dict[int, float] | None]:
    """Each token's log-probability given the ones before it, with the `top` likeliest alternatives; the first
    token has none (None), as in vLLM's prompt_logprobs."""
    torch = _torch()
    with torch.inference_mode():
        logits = model(torch.tensor([ids], device=model.device)).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        chosen = logprobs.gather(1, torch.tensor(ids[1:], device=logprobs.device).unsqueeze(1))[:, 0].tolist()
        best = logprobs.topk(top, dim=-1) if top > 0 else None
    steps: list[dict[int, float] | None] = [None]
    for pos, tok in enumerate(ids[1:]):
        step = {} if best is None else dict(zip(best.indices[pos].tolist(), best.values[pos].tolist(), strict=True))
        step[tok] = chosen[pos]
        steps.append(step)
    return steps


def _decode(tokenizer: Any, token_ids: list[int], stop_strings: list[str], final: bool) -> tuple[str, bool]:
    """Text so far, cut at a stop string; while streaming, hold back an incomplete multi-byte character."""
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    for stop in stop_strings:
        pos = text.find(stop)
        if pos != -1:
            return text[:pos], True
    if not final:
        text = text.rstrip("\ufffd")
    return text, False


def _refuse_vllm_only(request: EngineRequest) -> None:
    """Settings only the vLLM backend honours are refused by name rather than ignored."""
    cfg = request.config
    defaults = GenerationConfig()
    names = [name for name in ("logit_bias", "skip_special_tokens", "include_stop_str_in_output")
             if getattr(cfg, name) != getattr(defaults, name)]
    if request.guided:
        names.append("structured outputs")
    names += [f"{modality}s" for modality, items in (request.multi_modal_data or {}).items() if items]
    if names:
        raise InputError(f"{', '.join(names)} need the vllm backend", "drop them, or use --infer_backend vllm")
