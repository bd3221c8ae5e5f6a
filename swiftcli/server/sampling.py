"""OpenAI request fields -> swiftcli's generation settings and decoding constraints."""

from __future__ import annotations

from typing import Any

from swiftcli.config.spec import GenerationConfig
from swiftcli.server.errors import APIError
from swiftcli.server.protocol import SamplingFields
from swiftcli.server.structured import request_constraint


def sampling_config(base: GenerationConfig, req: SamplingFields, max_tokens: int | None,
                    logprobs: int | None) -> GenerationConfig:
    values: dict[str, Any] = {"max_new_tokens": max_tokens, "n": req.n, "ignore_eos": req.ignore_eos,
                              "logprobs": logprobs}
    if req.temperature is not None:
        values.update(temperature=req.temperature, do_sample=req.temperature > 0)
    for name in ("top_p", "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed",
                 "min_p", "min_tokens", "skip_special_tokens", "include_stop_str_in_output"):
        value = getattr(req, name)
        if value is not None:
            values[name] = value
    if req.logit_bias:
        values["logit_bias"] = logit_bias(req.logit_bias)
    return base.copy(stop=[*base.stop, *req.stop_list()], **values)


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
