"""Multiple choice scored by loglikelihood, the way lm-evaluation-harness scores MMLU, ARC or HellaSwag.

Each option's text is a continuation of the prompt "Question: ...\\nAnswer:"; the model's log-probability of
those tokens picks the answer: `accuracy` is the argmax of the sums (lm-eval's `acc`), `accuracy_norm` of the
sums divided by the option's length in characters (`acc_norm`). No chat template: the same plain text as
lm-eval's tasks, so the numbers can be checked against it. Context and continuation are tokenized as lm-eval
does: the whole text once, the context alone, and the continuation is what the whole adds.

Local engines score from prompt logprobs (vLLM: `prompt_logprobs`; pt: a forward pass); a server from
`/v1/completions` with `echo=true, logprobs=1, max_tokens=0`, tokenized by its `/tokenize`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.errors import EngineError
from swiftcli.eval.datasets import EvalItem
from swiftcli.eval.runner import Generated, Prediction, RemoteTarget

Progress = Callable[[int], None]
Encode = Callable[[str], list[int]]


@dataclass
class Scored:
    """One option's continuation: its log-probability, and whether greedy decoding would produce it."""

    logprob: float
    greedy: bool


def contexts(item: EvalItem) -> tuple[str, list[str]]:
    """The prompt (few-shot examples first) and each option as its continuation."""
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in item.choice_shots)
    return f"{shots}Question: {item.question}\nAnswer:", [f" {c}" for c in item.choices]


def encode_pair(encode: Encode, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids); trailing spaces of the context move to the continuation."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = encode(context + continuation)
    start = len(encode(context))
    return whole[:start], whole[start:]


def continuation_score(steps: Sequence[dict[int, float] | None], ids: Sequence[int], start: int) -> Scored:
    """Sum of the logprobs of ids[start:] from per-position logprob maps (each holds the token and the top one)."""
    total, greedy = 0.0, True
    for pos in range(start, len(ids)):
        step = steps[pos] or {}
        value = step[ids[pos]]
        total += value
        greedy = greedy and value >= max(step.values())
    return Scored(total, greedy)


def prediction(item: EvalItem, scores: list[Scored], prompt_tokens: int) -> Prediction:
    """The option the loglikelihoods pick, as a prediction carrying every option's score."""
    best = max(range(len(scores)), key=lambda i: scores[i].logprob)
    return Prediction(item.choices[best], prompt_tokens, 0, "loglikelihood",
                      loglikelihoods=[s.logprob for s in scores], greedy=[s.greedy for s in scores])


def score_local(engine: Any, items: Sequence[EvalItem], on_progress: Progress | None = None) -> Generated:
    """Every option of every item as one engine batch, reading the continuation's prompt logprobs."""
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.engines.base import EngineRequest, generate_all

    progress = on_progress or (lambda _: None)
    tokenizer = engine.hf_tokenizer

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    config = GenerationConfig(max_new_tokens=1, do_sample=False, temperature=0.0)
    start = time.perf_counter()
    predictions: list[Prediction] = []
    for item in items:  # one item per batch keeps the progress bar moving; options share one batch
        if item.error is not None:
            predictions.append(Prediction(error=item.error))
            progress(1)
            continue
        context, options = contexts(item)
        pairs = [encode_pair(encode, context, option) for option in options]
        requests = [EngineRequest([*ctx, *cont], config, prompt_logprobs=1) for ctx, cont in pairs]
        try:
            results = generate_all(engine, requests)
        except EngineError as exc:
            predictions.append(Prediction(error=str(exc)))
            progress(1)
            continue
        scores = [continuation_score(r.prompt_logprobs or [], q.prompt_ids, len(ctx))
                  for r, q, (ctx, _) in zip(results, requests, pairs, strict=True)]
        predictions.append(prediction(item, scores, sum(len(q.prompt_ids) for q in requests)))
        progress(1)
    return Generated(predictions, time.perf_counter() - start)


def score_remote(target: RemoteTarget, model: str, items: Sequence[EvalItem], concurrency: int = 8,
                 on_progress: Progress | None = None) -> Generated:
    """Each item's options as one /v1/completions request (token-id prompts, echo, logprobs=1, max_tokens=0)."""
    return asyncio.run(_score_remote(target, model, items, concurrency, on_progress or (lambda _: None)))


async def _score_remote(target: RemoteTarget, model: str, items: Sequence[EvalItem], concurrency: int,
                        progress: Progress) -> Generated:
    import httpx

    root = target.url.removesuffix("/v1")
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=target.timeout_s) as client:

        async def encode(text: str) -> list[int]:
            reply = await client.post(f"{root}/tokenize", json={"prompt": text, "add_special_tokens": False})
            if reply.status_code == 404:
                raise EngineError(f"{root} has no /tokenize endpoint, which loglikelihood scoring needs",
                                  "use a swiftcli or vLLM server, or --eval_mc_method generate")
            _check(reply)
            return list(reply.json()["tokens"])

        async def one(item: EvalItem) -> Prediction:
            if item.error is not None:
                progress(1)
                return Prediction(error=item.error)
            async with semaphore:
                try:
                    return await _score_item(client, target.url, model, item, encode)
                except _RequestFailed as exc:
                    return Prediction(error=str(exc))
                finally:
                    progress(1)

        start = time.perf_counter()
        predictions = await asyncio.gather(*(one(item) for item in items))
    return Generated(list(predictions), time.perf_counter() - start)


class _RequestFailed(Exception):
    """One item's request failed; the item is reported as failed and the run goes on."""


def _check(reply: Any) -> None:
    if reply.status_code >= 400:
        try:
            message = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text[:300]
        raise _RequestFailed(f"server answered {reply.status_code}: {message}")


async def _score_item(client: Any, url: str, model: str, item: EvalItem, encode: Callable[[str], Any]
                      ) -> Prediction:
    context, options = contexts(item)
    context = context.rstrip()
    context_ids = await encode(context)
    wholes = [await encode(context + option) for option in options]
    reply = await client.post(f"{url}/completions", json={
        "model": model, "prompt": wholes, "echo": True, "logprobs": 1, "max_tokens": 0, "temperature": 0})
    _check(reply)
    choices = sorted(reply.json()["choices"], key=lambda c: c["index"])
    scores = []
    for choice in choices:
        lps = choice["logprobs"]
        steps = lps["token_logprobs"][len(context_ids):]
        tops = lps["top_logprobs"][len(context_ids):]
        scores.append(Scored(sum(steps), all(s >= max(t.values()) for s, t in zip(steps, tops, strict=True))))
    return prediction(item, scores, sum(len(w) for w in wholes))
