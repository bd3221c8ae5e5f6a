"""The one rule for sampling, and the sampling in force said in one line.

Every path (local and remote infer, chat, the chat page, eval, the sweep, deploy's `chat_sampling`, the Python
API) decides its sampling with `layer_sampling`: the base (a checkpoint's generation_config.json, else the
registry's defaults for the model type, else GenerationConfig's own), then the command's defaults (greedy for
infer and eval), then what the user typed. A local run lays the result over its base (`merge_generation`); a
remote run sends it as it is (`sampling_to_send`), and what it leaves out stays the server's default, which for
`swiftcli deploy` is the same base.

The chat banner and the chat page show the result in one line, so that a user knows whether answers are greedy
(the same every time) or sampled before reading one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swiftcli.config.spec import GenerationConfig, ModelSpec
from swiftcli.errors import SwiftError


def layer_sampling(given: Mapping[str, Any], **command_defaults: Any) -> dict[str, Any]:
    """The settings a run lays over its base: the command's defaults, then what the user gave (None: not given).

    `do_sample false` means temperature 0, and temperature 0 means greedy. A temperature the user typed turns
    sampling on over a greedy default; `do_sample true` typed alone lifts a greedy default's temperature 0 so that
    the base's temperature applies. Pure: no config is built and nothing is checked (`check_sampling` does).
    """
    typed = {k: v for k, v in given.items() if v is not None}
    defaults = dict(command_defaults)
    if typed.get("do_sample") is True and "temperature" not in typed and defaults.get("temperature") == 0:
        defaults = {k: v for k, v in defaults.items() if k not in ("temperature", "do_sample")}
    values = {**defaults, **typed}
    if typed.get("temperature", 0) > 0 and "do_sample" not in typed:
        values["do_sample"] = True
    if values.get("do_sample") is False:
        values["temperature"] = 0.0
    if values.get("temperature") == 0:
        values["do_sample"] = False
    return values


def check_sampling(values: Mapping[str, Any]) -> None:
    """Raise the UsageError a local run would for these settings (once per command, before anything loads or
    connects)."""
    GenerationConfig().copy(**values)


def merge_generation(base: GenerationConfig, given: Mapping[str, Any], **command_defaults: Any) -> GenerationConfig:
    """A local run's sampling: `layer_sampling` laid over the base (the engine's or the checkpoint's defaults)."""
    return base.copy(**layer_sampling(given, **command_defaults))


def interactive_generation(spec: ModelSpec, given: Mapping[str, Any]) -> GenerationConfig:
    """Sampling for a person chatting (chat, app-ui, and the `chat_sampling` deploy lists): the checkpoint's
    generation_config.json, else the registry's defaults for the model type (the embedded model: greedy with a
    repetition guard), then what the user gave. Engines, the API and batch paths keep the checkpoint's own
    settings, so that their greedy output is the model's plain greedy output."""
    return merge_generation(GenerationConfig.for_model(spec), given)


def serving_generation(spec: ModelSpec, given: Mapping[str, Any]) -> GenerationConfig:
    """What `swiftcli deploy` starts a request from when it sets no sampling: the served model folder's
    generation_config.json (a LoRA checkpoint's own is not read: see export.train_parity), then the user's
    options."""
    return merge_generation(GenerationConfig.from_model_dir(spec.model_dir), given)


def sampling_to_send(given: Mapping[str, Any], **command_defaults: Any) -> dict[str, Any]:
    """A remote run's sampling: the same `layer_sampling`, checked as a local run checks it, as GenerationConfig
    names. What it leaves out stays the server's default (`swiftcli deploy`: its model's)."""
    values = layer_sampling(given, **command_defaults)
    check_sampling(values)
    return values


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
