"""OpenAI request fields -> swiftcli's generation settings and decoding constraints."""

from __future__ import annotations

from typing import Any

from swiftcli.config.sampling import merge_generation
from swiftcli.config.spec import GenerationConfig
from swiftcli.server.errors import APIError
from swiftcli.server.protocol import SamplingFields
from swiftcli.server.structured import request_constraint


def sampling_config(base: GenerationConfig, req: SamplingFields, max_tokens: int | None,
                    logprobs: int | None) -> GenerationConfig:
    """The request's sampling laid over the server's base by the one rule (`merge_generation`: a temperature
    above 0 samples, 0 is greedy), then the fields that are per request only."""
    given = {name: getattr(req, name) for name in SAMPLING_FIELDS}
    per_request: dict[str, Any] = {"max_new_tokens": max_tokens, "n": req.n, "ignore_eos": req.ignore_eos,
                                   "logprobs": logprobs}
    if req.logit_bias:
        per_request["logit_bias"] = logit_bias(req.logit_bias)
    return merge_generation(base, given).copy(stop=[*base.stop, *req.stop_list()], **per_request)


# Request fields that are GenerationConfig fields of the same name; None (left out) keeps the server's default.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty",
                   "seed", "min_p", "min_tokens", "skip_special_tokens", "include_stop_str_in_output")


def logit_bias(bias: dict[str, float]) -> dict[int, float]:
    """OpenAI's {"token id": bias in [-100, 100]}."""
    out: dict[int, float] = {}
    for key, value in bias.items():
        if not key.lstrip("-").isdigit() or int(key) < 0:
            raise APIError(400, f"logit_bias keys are token ids; {key!r} is not one", param="logit_bias")
        if not -100 <= value <= 100:
            raise APIError(400, f"logit_bias values are in [-100, 100]; got {value}", param="logit_bias")
        out[int(key)] = float(value)
    return out


def guided_decoding(req: SamplingFields) -> dict[str, Any] | None:
    return request_constraint(req)
