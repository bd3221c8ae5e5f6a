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

from swiftcli.apiclient import http_client, reply_message
from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import EngineRequest, check_context_length, generate_all
from swiftcli.errors import EngineError, InputError, SwiftError
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
    if item.images:
        raise InputError("multiple choice rows with images are scored by generation",
                         "pass --eval_mc_method generate")
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


def score_local(engine: Any, items: Sequence[EvalItem], on_progress: Progress | None = None,
                chunk: int = 64, adapter: str | None = None) -> Generated:
    """Every option of `chunk` items at a time as one engine batch, read from the continuation's prompt
    logprobs (batches bound the pt backend's padded batch; vLLM schedules each one as it likes), on `adapter`
    (a LoRA the engine holds) when given. An engine that cannot compute prompt logprobs for several prompts in
    one step runs them one at a time itself (`batched_prompt_logprobs`); the scores are the same."""
    progress = on_progress or (lambda _: None)
    start = time.perf_counter()
    predictions: list[Prediction] = []
    for first in range(0, len(items), chunk):
        predictions += _score_batch(engine, items[first : first + chunk], progress, adapter)
    return Generated(predictions, time.perf_counter() - start)


def _score_batch(engine: Any, items: Sequence[EvalItem], progress: Progress, adapter: str | None
                 ) -> list[Prediction]:
    tokenizer = engine.hf_tokenizer

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False))

    config = GenerationConfig(max_new_tokens=1, do_sample=False, temperature=0.0)
    out: dict[int, Prediction] = {}
    planned: dict[int, list[tuple[EngineRequest, int]]] = {}
    for i, item in enumerate(items):
        try:
            if item.error is not None:
                raise EngineError(item.error)
            context, options = contexts(item)
            pairs = [encode_pair(encode, context, option) for option in options]
            requests = [(EngineRequest([*ctx, *cont], config, adapter=adapter, prompt_logprobs=1), len(ctx))
                        for ctx, cont in pairs]
            for request, _ in requests:
                check_context_length(len(request.prompt_ids), 1, engine.max_model_len)
        except SwiftError as exc:
            out[i] = Prediction(error=str(exc) if item.error is None else item.error)
            progress(1)
            continue
        planned[i] = requests
    owner = {request.request_id: i for i, requests in planned.items() for request, _ in requests}
    left = {i: len(requests) for i, requests in planned.items()}

    def finished(result: Any) -> None:
        i = owner[result.request_id]
        left[i] -= 1
        if not left[i]:
            progress(1)

    results = generate_all(engine, [r for requests in planned.values() for r, _ in requests], finished)
    by_id = {r.request_id: r for r in results}
    for i, requests in planned.items():
        scores = [continuation_score(by_id[r.request_id].prompt_logprobs or [], r.prompt_ids, start)
                  for r, start in requests]
        out[i] = prediction(items[i], scores, sum(len(r.prompt_ids) for r, _ in requests))
    return [out[i] for i in range(len(items))]


def score_remote(target: RemoteTarget, model: str, items: Sequence[EvalItem], concurrency: int = 8,
                 on_progress: Progress | None = None) -> Generated:
    """Each item's options as one /v1/completions request (token-id prompts, echo, logprobs=1, max_tokens=0)."""
    return asyncio.run(_score_remote(target, model, items, concurrency, on_progress or (lambda _: None)))


async def _score_remote(target: RemoteTarget, model: str, items: Sequence[EvalItem], concurrency: int,
                        progress: Progress) -> Generated:
    root = target.url.removesuffix("/v1")
    semaphore = asyncio.Semaphore(concurrency)
    async with http_client(target.token, timeout=target.timeout_s) as client:

        async def encode(text: str) -> list[int]:
            reply = await client.post(f"{root}/tokenize", json={"prompt": text, "add_special_tokens": False})
            if reply.status_code == 404:
                raise EngineError(f"{root} has no /tokenize endpoint, which loglikelihood scoring needs",
                                  "use a swiftcli or vLLM server, or --eval-mc-method generate")
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
            body = reply.json()
        except ValueError:
            body = None
        raise _RequestFailed(reply_message(reply.status_code, body, reply.text))


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
