"""Check a merge: the merged model and base + adapter must pick the same greedy tokens (in float32).

The reference (base + adapter, unmerged) is sampled before merging; the merged model is then loaded back from
what was written, so the check covers the saved files, the dtype cast included. Besides the tokens, it reports
the largest logit difference over the reference's sequence (teacher-forced), a measure of rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from swiftcli.errors import SwiftError

VERIFY_PROMPTS = (
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain in two sentences what a binary search does.",
)
VERIFY_NEW_TOKENS = 24


class VerificationError(SwiftError):
    """The merged model does not reproduce base + adapter."""


@dataclass
class Sample:
    """Greedy tokens for one prompt and the logits over prompt + tokens."""

    prompt: str
    prompt_ids: list[int]
    tokens: list[int]
    logits: Any = field(repr=False, default=None)


@dataclass
class PromptCheck:
    prompt: str
    reference_tokens: list[int]
    merged_tokens: list[int]
    max_logit_diff: float

    @property
    def same_tokens(self) -> bool:
        return self.reference_tokens == self.merged_tokens


@dataclass
class VerifyReport:
    checks: list[PromptCheck]

    @property
    def ok(self) -> bool:
        return all(c.same_tokens for c in self.checks)

    @property
    def max_logit_diff(self) -> float:
        return max((c.max_logit_diff for c in self.checks), default=0.0)

    def summary(self) -> str:
        same = sum(c.same_tokens for c in self.checks)
        return (f"{same}/{len(self.checks)} prompts give the same greedy tokens; "
                f"largest logit difference {self.max_logit_diff:.2e}")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "max_logit_diff": self.max_logit_diff,
                "prompts": [{"prompt": c.prompt, "same_tokens": c.same_tokens,
                             "max_logit_diff": c.max_logit_diff} for c in self.checks]}


def encode_prompts(template: Any, prompts: Sequence[str] = VERIFY_PROMPTS) -> list[tuple[str, list[int]]]:
    return [(p, template.encode(p)) for p in prompts]


def sample(model: Any, prompts: Sequence[tuple[str, list[int]]], stop_ids: Sequence[int],
           max_new_tokens: int = VERIFY_NEW_TOKENS) -> list[Sample]:
    """Greedy decoding with a KV cache, one prompt at a time (no padding, so nothing differs between models).

    Keeps the logits of every position (prompt and answer) for the comparison.
    """
    # lazy: keeps --help and start-up free of torch
    import torch

    samples = []
    with torch.inference_mode():
        for text, prompt_ids in prompts:
            out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
            steps = [out.logits[0].float()]
            tokens: list[int] = []
            for _ in range(max_new_tokens):
                token = int(torch.argmax(steps[-1][-1]))
                tokens.append(token)
                if token in stop_ids or len(tokens) == max_new_tokens:
                    break
                out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
                steps.append(out.logits[0].float())
            samples.append(Sample(text, list(prompt_ids), tokens, torch.cat(steps)))
    return samples


def compare(reference: Sequence[Sample], model: Any) -> VerifyReport:
    """Run `model` teacher-forced on each reference sequence and compare its greedy choices and logits.

    If the model's argmax matches the reference token at every answer position, its own greedy decoding
    produces the same tokens (by induction over positions), so one forward pass per prompt suffices.
    """
    # lazy: keeps --help and start-up free of torch
    import torch

    checks = []
    with torch.inference_mode():
        for ref in reference:
            sequence = ref.prompt_ids + ref.tokens
            logits = model(input_ids=torch.tensor([sequence])).logits[0].float()
            n = len(ref.prompt_ids)
            # Logits at position i predict token i + 1: the answer's tokens come from positions n - 1 ...
            rows = ref.logits.shape[0]
            diff = float((logits[:rows] - ref.logits).abs().max())
            choices = [int(t) for t in torch.argmax(logits[n - 1: n - 1 + len(ref.tokens)], dim=-1)]
            merged: list[int] = []
            for expected, chosen in zip(ref.tokens, choices, strict=True):
                merged.append(chosen)
                if chosen != expected:
                    break
            checks.append(PromptCheck(ref.prompt, ref.tokens, merged, diff))
    return VerifyReport(checks)
