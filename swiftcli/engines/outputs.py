"""vLLM's RequestOutput -> our RequestResult, for the offline and the async engine alike."""

from __future__ import annotations

from typing import Any

from swiftcli.engines.base import Completion, RequestResult


def to_result(request_id: str, output: Any) -> RequestResult:
    """Cumulative state of one request. Each candidate carries its own finish_reason: with n > 1 one may finish
    before the others."""
    completions = []
    for out in output.outputs:
        logprobs = None
        if out.logprobs:
            logprobs = [{tok: lp.logprob for tok, lp in step.items()} for step in out.logprobs]
        completions.append(Completion(out.index, out.text, list(out.token_ids), out.finish_reason, logprobs))
    result = RequestResult(request_id, len(output.prompt_token_ids or []), completions, bool(output.finished))
    result.prompt_logprobs = prompt_logprobs(getattr(output, "prompt_logprobs", None))
    return result


def prompt_logprobs(steps: Any) -> list[dict[int, float] | None] | None:
    """vLLM's per-prompt-token {id: Logprob} (first None) -> {id: float}; -inf becomes -9999 (JSON has no inf)."""
    if not steps:
        return None
    return [None if step is None else {tok: max(lp.logprob, -9999.0) for tok, lp in step.items()} for step in steps]
