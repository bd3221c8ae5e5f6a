"""Text-completion prompts in every shape OpenAI's legacy API takes, and the prompt-scoring parts of its answer.

Evaluation harnesses (lm-evaluation-harness's `local-completions`) send token ids and score a continuation from
the prompt's own log-probabilities: `echo=true, logprobs=N, max_tokens=0|1`. The answer then lists the prompt's
tokens first (the first one has no logprob: nothing precedes it), then the generated ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from swiftcli.server.errors import APIError
from swiftcli.server.protocol import MAX_PROMPTS, CompletionRequest

Steps = Sequence[dict[int, float] | None]


def completion_prompts(req: CompletionRequest, tokenizer: Any) -> list[tuple[str, list[int]]]:
    """(text, token ids) for each prompt of the request; 400 for empty prompts, too many, or unknown ids."""
    raw: Any = req.prompt
    prompts: list[Any] = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw)
    if not prompts:
        raise APIError(400, "prompt must not be empty", param="prompt")
    if len(prompts) > MAX_PROMPTS:
        raise APIError(400, f"a request takes at most {MAX_PROMPTS} prompts, not {len(prompts)}", param="prompt")
    vocab = len(tokenizer)
    out: list[tuple[str, list[int]]] = []
    for prompt in prompts:
        if isinstance(prompt, str):
            ids = list(tokenizer.encode(prompt, add_special_tokens=True))
            text = prompt
        else:
            ids = [int(t) for t in prompt]
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise APIError(400, f"prompt token id {bad[0]} is out of the vocabulary's range [0, {vocab})",
                               param="prompt")
            text = tokenizer.decode(ids) if req.echo else ""
        if not ids:
            raise APIError(400, "prompt must not be empty", param="prompt")
        out.append((text, ids))
    return out


def check_scoring_fields(req: CompletionRequest) -> int | None:
    """The prompt_logprobs the engine must compute for this request (None: none); 400 for combinations we cannot
    honour."""
    if req.max_tokens == 0 and not req.echo:
        raise APIError(400, "max_tokens 0 needs echo=true (it scores the prompt without generating)",
                       param="max_tokens")
    if req.prompt_logprobs is not None and req.stream:
        raise APIError(400, "prompt_logprobs are not available with stream=true", param="prompt_logprobs")
    wanted = [n for n in (req.prompt_logprobs, req.logprobs if req.echo else None) if n is not None]
    return max(wanted) if wanted else None


def echoed_tokens(prompt_ids: list[int], prompt_steps: Steps | None, out_ids: list[int],
                  out_steps: Steps | None, scoring_only: bool) -> tuple[list[int], list[dict[int, float] | None]]:
    """Token ids and per-token logprobs for an echoed choice: the prompt's, then (unless max_tokens was 0) the
    generated ones."""
    steps: list[dict[int, float] | None] = list(prompt_steps) if prompt_steps else [None] * len(prompt_ids)
    if scoring_only:
        return list(prompt_ids), steps
    return [*prompt_ids, *out_ids], [*steps, *(out_steps or [{}] * len(out_ids))]


def vllm_prompt_logprobs(ids: list[int], steps: Steps | None, top: int, token: Callable[[int], str]
                         ) -> list[dict[str, dict[str, Any]] | None] | None:
    """vLLM's `prompt_logprobs` field: per prompt token None (the first) or {token id: {logprob, rank,
    decoded_token}} for the token itself and the `top` likeliest; rank is None where it is beyond those."""
    if steps is None:
        return None
    shown: list[dict[str, dict[str, Any]] | None] = []
    for tid, step in zip(ids, steps, strict=False):
        if step is None:
            shown.append(None)
            continue
        ranked = sorted(step.items(), key=lambda kv: -kv[1])
        ranks = {k: r + 1 for r, (k, _) in enumerate(ranked[:top])}
        keep = [k for k, _ in ranked[:top]]
        if tid not in ranks:
            keep.append(tid)
        shown.append({str(k): {"logprob": step[k], "rank": ranks.get(k), "decoded_token": token(k)}
                      for k in keep})
    return shown
