"""Does vLLM give the answers transformers gives? Greedy token-by-token comparison, with logprobs.

The same prompts (encoded once, by swiftcli's template) run greedily on vLLM and on transformers. For a LoRA
checkpoint there are three sides: transformers with the adapter (peft, the training-time reference), vLLM with
the adapter, and the merged model on vLLM. Each side is compared with the reference, per prompt: how many tokens
agree, where they first differ, and the largest logprob gap on the tokens both chose.

A difference is not always a bug. A greedy choice between two tokens whose logprobs are within a small epsilon
(a near-tie) flips with the dtype, the kernels, eager vs compiled, even the batch: the embedded model's first
token for "What is the capital of France?" is P("The")=0.155 vs P("L")=0.14. Such a divergence is reported as a
near-tie and does not fail the check; a divergence where both sides were sure, a large logprob gap, or
non-finite logprobs (a broken adapter) do.
"""

from __future__ import annotations

import gc
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from swiftcli.config.spec import EngineConfig, GenerationConfig, ModelSpec
from swiftcli.engines.base import EngineRequest, generate_all
from swiftcli.engines.pt import get_model_tokenizer
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.export.adapters import check_adapter
from swiftcli.hub.resolve import resolve_model
from swiftcli.registry.templates import get_template

DEFAULT_PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in one sentence what a CPU does.",
    "List three fruits.",
)
TOP_LOGPROBS = 5
EngineStarter = Callable[[ModelSpec, EngineConfig], Any]


@dataclass
class Trace:
    """One side's greedy answer to one prompt: the tokens, the logprob of each, and the top logprobs per step."""

    tokens: list[int]
    logprobs: list[float]
    top: list[dict[int, float]]
    text: str = ""


@dataclass
class PromptParity:
    prompt: str
    reference_tokens: int
    agreed: int
    first_divergence: int | None
    max_logprob_gap: float
    margin: float | None
    verdict: str  # match | near-tie | diverges | logprob-gap | non-finite
    reference_text: str = ""
    candidate_text: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict in ("match", "near-tie")


@dataclass
class SideComparison:
    reference: str
    candidate: str
    prompts: list[PromptParity]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.prompts)


@dataclass
class ParityReport:
    model: str
    dtype: str
    max_new_tokens: int
    near_tie: float
    max_logprob_gap: float
    comparisons: list[SideComparison] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(c.ok for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def compare_traces(reference: Trace, candidate: Trace, prompt: str, near_tie: float, max_gap: float
                   ) -> PromptParity:
    """Where `candidate` first leaves `reference`, how sure both were there, and the largest logprob gap before."""
    shared = min(len(reference.tokens), len(candidate.tokens))
    first = next((i for i in range(shared) if reference.tokens[i] != candidate.tokens[i]), None)
    if first is None and len(reference.tokens) != len(candidate.tokens):
        first = shared
    agreed = shared if first is None else first
    pairs = list(zip(reference.logprobs[:agreed], candidate.logprobs[:agreed], strict=True))
    finite = all(math.isfinite(a) and math.isfinite(b) for a, b in pairs)
    gap = max((abs(a - b) for a, b in pairs), default=0.0) if finite else math.inf
    margin = _margin(reference, candidate, first) if first is not None and first < shared else None
    if not finite or (first is not None and first < shared and not _finite_at(reference, candidate, first)):
        verdict = "non-finite"
    elif first is not None:
        verdict = "near-tie" if margin is not None and margin < near_tie else "diverges"
    else:
        verdict = "match"
    if verdict in ("match", "near-tie") and gap > max_gap:
        verdict = "logprob-gap"
    return PromptParity(prompt, len(reference.tokens), agreed, first, gap, margin, verdict, reference.text,
                        candidate.text)


def _finite_at(reference: Trace, candidate: Trace, i: int) -> bool:
    return math.isfinite(reference.logprobs[i]) and math.isfinite(candidate.logprobs[i])


def _margin(reference: Trace, candidate: Trace, i: int) -> float | None:
    """How much each side preferred its own token over the other's at the divergence; the larger of the two
    (a near-tie needs both sides to call it close). None when neither side ranked the other's token."""
    a, b = reference.tokens[i], candidate.tokens[i]
    margins = []
    if b in reference.top[i]:
        margins.append(reference.logprobs[i] - reference.top[i][b])
    if a in candidate.top[i]:
        margins.append(candidate.logprobs[i] - candidate.top[i][a])
    if not margins:
        return None
    return max(margins)


def vllm_traces(engine: Any, prompts: Sequence[list[int]], stop_ids: Sequence[int], max_new_tokens: int,
                adapter: str | None = None) -> list[Trace]:
    """Greedy answers from a swiftcli vLLM engine (all prompts in one batch), with TOP_LOGPROBS per step."""
    config = GenerationConfig(temperature=0.0, do_sample=False, max_new_tokens=max_new_tokens,
                              logprobs=TOP_LOGPROBS, seed=0)
    requests = [EngineRequest(list(ids), config, stop_token_ids=list(stop_ids), adapter=adapter) for ids in prompts]
    traces = []
    for result in generate_all(engine, requests):
        out = result.outputs[0]
        steps = out.logprobs or [{} for _ in out.token_ids]
        traces.append(Trace(list(out.token_ids), [s.get(t, math.nan) for s, t in zip(steps, out.token_ids,
                                                                                          strict=True)],
                            [dict(s) for s in steps], out.text))
    return traces


def transformers_traces(spec: ModelSpec, prompts: Sequence[list[int]], stop_ids: Sequence[int],
                        max_new_tokens: int, dtype: str) -> list[Trace]:
    """Greedy answers from transformers (peft applies `spec.adapters`), one prompt at a time: no padding."""
    import torch  # deferred: torch loads only when needed (a light start-up)

    model, tokenizer = get_model_tokenizer(spec, dtype, device="cpu")
    traces = []
    try:
        for ids in prompts:
            with torch.inference_mode():
                out = model.generate(
                    input_ids=torch.tensor([list(ids)]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                    eos_token_id=list(stop_ids), pad_token_id=list(stop_ids)[0], output_logits=True,
                    return_dict_in_generate=True,
                )
            tokens = out.sequences[0, len(ids):].tolist()
            logprobs, top = [], []
            for step, token in zip(out.logits, tokens, strict=False):
                lp = torch.log_softmax(step[0].float(), dim=-1)
                values, indices = lp.topk(TOP_LOGPROBS)
                logprobs.append(float(lp[token]))
                top.append({int(i): float(v) for i, v in zip(indices, values, strict=True)})
            traces.append(Trace(tokens[: len(logprobs)], logprobs, top,
                                tokenizer.decode(tokens, skip_special_tokens=True)))
    finally:
        del model
        gc.collect()
    return traces


def run_parity(
    spec: ModelSpec,
    start_engine: EngineStarter,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    *,
    dtype: str = "float32",
    max_new_tokens: int = 32,
    near_tie: float = 0.1,
    max_logprob_gap: float = 0.05,
    check_merged: bool = True,
    engine_config: EngineConfig | None = None,
    on_message: Callable[[str], None] | None = None,
) -> ParityReport:
    """Run `prompts` greedily on every side and compare each with transformers (with the adapter, if any)."""
    say = on_message or (lambda _m: None)
    template = get_template(spec.template_type, load_tokenizer(spec), spec.default_system)
    encoded = [template.encode(p) for p in prompts]
    stops = template.stop_token_ids
    report = ParityReport(spec.name, dtype, max_new_tokens, near_tie, max_logprob_gap)
    lora = bool(spec.adapters)
    say(f"transformers{' + adapter' if lora else ''} ({dtype}), the reference")
    reference = transformers_traces(spec, encoded, stops, max_new_tokens, dtype)
    ref_name = "transformers+lora" if lora else "transformers"
    config = replace(engine_config or EngineConfig(), dtype=dtype)

    def side(name: str, run: Callable[[], list[Trace]]) -> None:
        say(f"{name} ({dtype})")
        try:
            traces = run()
        except Exception as exc:  # noqa: BLE001 - a side that cannot run is a finding of the check, not a crash
            report.errors.append(f"{name}: {_first_line(exc)}")
            return
        report.comparisons.append(SideComparison(ref_name, name, [
            compare_traces(r, c, p, near_tie, max_logprob_gap)
            for r, c, p in zip(reference, traces, prompts, strict=True)]))

    if not lora:
        side("vllm", lambda: _on_engine(start_engine, spec, config, encoded, stops, max_new_tokens))
        return report
    side("vllm+lora", lambda: _lora_side(start_engine, spec, config, encoded, stops, max_new_tokens))
    if check_merged:
        side("vllm merged", lambda: _merged_side(start_engine, spec, config, encoded, stops, max_new_tokens, dtype))
    return report


def _on_engine(start_engine: EngineStarter, spec: ModelSpec, config: EngineConfig, encoded: list[list[int]],
               stops: list[int], max_new_tokens: int, adapter: tuple[str, str] | None = None) -> list[Trace]:
    engine = start_engine(spec, config)
    try:
        if adapter is not None:
            engine.add_lora(*adapter)
        return vllm_traces(engine, encoded, stops, max_new_tokens, adapter[0] if adapter else None)
    finally:
        engine.close()


def _lora_side(start_engine: EngineStarter, spec: ModelSpec, config: EngineConfig, encoded: list[list[int]],
               stops: list[int], max_new_tokens: int) -> list[Trace]:
    base = replace(spec, adapters=(), ckpt_dir=None)
    path = spec.adapters[0]
    rank = check_adapter(path, base).rank
    lora_config = replace(config, enable_lora=True, max_lora_rank=max(config.max_lora_rank, rank))
    return _on_engine(start_engine, base, lora_config, encoded, stops, max_new_tokens,
                      (f"parity-{path.name}-{id(spec)}", str(path)))


def _merged_side(start_engine: EngineStarter, spec: ModelSpec, config: EngineConfig, encoded: list[list[int]],
                 stops: list[int], max_new_tokens: int, dtype: str) -> list[Trace]:
    """Merge into a temporary folder in the check's dtype (a bf16 merge would round the weights the reference
    keeps in float32), then run it on vLLM as a plain model."""
    from swiftcli.export.merge import merge_lora  # looked up per call: tests patch it on its module

    folder = Path(tempfile.mkdtemp(prefix="swiftcli-parity-"))
    try:
        merged = merge_lora(spec.adapters[0], folder / "merged", model_id_or_path=str(spec.model_dir), dtype=dtype,
                            verify=False).output_dir
        merged_spec = resolve_model(ckpt_dir=merged, template_type=spec.template_type, system=spec.default_system)
        return _on_engine(start_engine, merged_spec, replace(config, enable_lora=False), encoded, stops,
                          max_new_tokens)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
