"""The sampling in force, said in one line: the chat banner and the chat page show it, so that a user knows
whether answers are greedy (the same every time) or sampled before reading one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swiftcli.config.spec import GenerationConfig


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
