"""Loglikelihood scoring of multiple choice: tokenization split, sums, acc/acc_norm picks (fast, no model).
The real engines and servers are checked against lm-eval in test_lm_eval.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from swiftcli.engines.base import EngineRequest, RequestResult
from swiftcli.eval.datasets import EvalItem
from swiftcli.eval.loglikelihood import contexts, continuation_score, encode_pair, score_local
from swiftcli.eval.scoring import loglikelihood_scores


class CharTokenizer:
    """One token per character (its code point), so splits and sums are easy to check by hand."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


class ScoringEngine:
    """Logprob of token t at any position: -t/1000, the top alternative always at -0.01 (so none is greedy)."""

    hf_tokenizer = CharTokenizer()
    max_model_len = 80

    def __init__(self) -> None:
        self.batches: list[int] = []

    def stream(self, requests: Sequence[EngineRequest]) -> Iterator[RequestResult]:
        self.batches.append(len(requests))
        for r in requests:
            steps: list[dict[int, float] | None] = [None]
            steps += [{t: -t / 1000, 1: -0.01} for t in r.prompt_ids[1:]]
            yield RequestResult(r.request_id, len(r.prompt_ids), [], finished=True, prompt_logprobs=steps)


def item(question: str, choices: list[str], answer: str, **extra: Any) -> EvalItem:
    return EvalItem("mc", 0, 1, "multiple_choice", reference=answer, letters="ABCD"[: len(choices)],
                    choices=choices, question=question, **extra)


def test_contexts_and_the_lm_eval_split():
    shots = item("Q2", ["x", "y"], "A", choice_shots=[["Q1", "yes"]])
    context, options = contexts(shots)
    assert context == "Question: Q1\nAnswer: yes\n\nQuestion: Q2\nAnswer:" and options == [" x", " y"]
    tokenizer = CharTokenizer()
    ctx, cont = encode_pair(tokenizer.encode, "Answer: ", "no")
    assert ctx == tokenizer.encode("Answer:") and cont == tokenizer.encode(" no")  # the space moves over


def test_sums_and_greedy_flags():
    steps: list[dict[int, float] | None] = [None, {5: -1.0, 6: -0.5}, {7: -0.25}]
    scored = continuation_score(steps, [4, 5, 7], 1)
    assert scored.logprob == -1.25 and scored.greedy is False
    assert continuation_score(steps, [4, 5, 7], 2).greedy is True


def test_acc_and_acc_norm_can_pick_differently():
    row = item("q", ["a", "bbbbbbbbbb"], "B")
    scores = loglikelihood_scores(row, [-2.0, -5.0])
    assert scores["extracted"] == "A" and scores["correct"] is False
    assert scores["scores"] == {"accuracy": 0.0, "accuracy_norm": 100.0}  # -5/10 beats -2/1


def test_score_local_batches_options_and_reports_bad_rows():
    engine = ScoringEngine()
    good = item("hi", ["ab", "c"], "B")
    too_long = item("x" * 100, ["a", "b"], "A")
    broken = EvalItem("mc", 2, 3, "multiple_choice", error="bad row")
    seen: list[int] = []
    generated = score_local(engine, [good, too_long, broken, good], seen.append, chunk=3)
    first, long_row, bad, last = generated.predictions
    # " ab" and " c" after "Question: hi\nAnswer:": one logprob per continuation character.
    assert first.loglikelihoods == [-(32 + 97 + 98) / 1000, -(32 + 99) / 1000]
    assert first.text == "c" and first.greedy == [False, False] and last.loglikelihoods == first.loglikelihoods
    assert long_row.error is not None and "context" in long_row.error and bad.error == "bad row"
    assert engine.batches == [2, 2] and sum(seen) == 4
