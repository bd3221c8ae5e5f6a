"""The sampling in force, said in one line: the chat banner and the chat page show it, so that a user knows
whether answers are greedy (the same every time) or sampled before reading one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swiftcli.config.spec import GenerationConfig
from swiftcli.errors import SwiftError


def describe_sampling(config: GenerationConfig) -> str:
    """e.g. "greedy, repetition_penalty 1.1, max_new_tokens 2048" or "temperature 0.3, top_p 0.7, top_k 20"."""
    if config.greedy:
        parts = ["greedy"]
    else:
        parts = [f"temperature {config.temperature:g}", f"top_p {config.top_p:g}"]
        if config.top_k > 0:
            parts.append(f"top_k {config.top_k}")
    for name in ("repetition_penalty", "presence_penalty", "frequency_penalty"):
        value = getattr(config, name)
        if value != (1.0 if name == "repetition_penalty" else 0.0):
            parts.append(f"{name} {value:g}")
    if config.seed is not None and not config.greedy:
        parts.append(f"seed {config.seed}")
    if config.max_new_tokens is not None:
        parts.append(f"max_new_tokens {config.max_new_tokens}")
    return ", ".join(parts)


def describe_sent(values: Mapping[str, Any]) -> str:
    """Sampling fields sent to a server; what is not sent is the server's default."""
    shown = {k: v for k, v in values.items() if v is not None and k != "do_sample" and v != []}
    if not shown:
        return "the server's defaults"
    text = ", ".join("greedy" if k == "temperature" and v == 0 else f"{k} {v}" for k, v in shown.items())
    return f"{text}; the rest the server's defaults"


CHAT_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty")


def chat_sampling(config: GenerationConfig) -> dict[str, float | int]:
    """The sampling a person's chat starts from, as request fields: what a server lists for its model
    (`chat_sampling` in /v1/models) so that `chat --api_url` and `app-ui --api_url` start where a local chat
    does. Greedy sends temperature 0 alone (top_p and top_k do not matter then); neutral values are left out."""
    values: dict[str, float | int] = {"temperature": 0.0 if config.greedy else config.temperature}
    if not config.greedy:
        values["top_p"] = config.top_p
        if config.top_k > 0:
            values["top_k"] = config.top_k
    if config.repetition_penalty != 1.0:
        values["repetition_penalty"] = config.repetition_penalty
    return values


def read_chat_sampling(listed: Any) -> dict[str, float | int]:
    """A server's `chat_sampling` as listed, when it is well formed and valid; {} otherwise (servers other than
    `swiftcli deploy` do not list one, and the clients then send only what the user set)."""
    if not isinstance(listed, Mapping) or "temperature" not in listed or set(listed) - set(CHAT_SAMPLING_KEYS):
        return {}
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in listed.values()):
        return {}
    values = dict(listed)
    try:
        GenerationConfig().copy(**values, do_sample=values["temperature"] > 0)
    except (SwiftError, ValueError, TypeError):
        return {}
    return values
