"""Scheduler budgets: which of vLLM's defaults an engine gets, and what it ended up with.

vLLM picks `max_num_seqs` and `max_num_batched_tokens` from the hardware and a "usage context": its OpenAI
server and its offline `vllm.LLM` get larger budgets than an engine built with the generic context (on an H200:
server 1024 / 8192, `vllm.LLM` 1024 / 16384, generic 128 / 2048). swiftcli's servers (`deploy`, `app-ui`) take the
server's context and its offline paths `vllm.LLM`'s, so each runs with the budgets of its vLLM counterpart. A value
the user passes (`--max_num_seqs`, `--engine_kwargs`) wins over both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("swiftcli.engines")

SERVER = "OPENAI_API_SERVER"  # `vllm serve` / python -m vllm.entrypoints.openai.api_server
OFFLINE = "LLM_CLASS"  # vllm.LLM


@dataclass(frozen=True)
class SchedulerLimits:
    max_num_seqs: int
    max_num_batched_tokens: int


def usage_context(name: str) -> Any:
    """vLLM's UsageContext member of this name."""
    # lazy: keeps --help and start-up free of torch, vLLM
    from vllm.usage.usage_lib import UsageContext

    return UsageContext[name]


def limits_of(vllm_config: Any) -> SchedulerLimits:
    scheduler = vllm_config.scheduler_config
    return SchedulerLimits(int(scheduler.max_num_seqs), int(scheduler.max_num_batched_tokens))


def planned_limits(args: dict[str, Any], context: str) -> SchedulerLimits:
    """The budgets an engine built from these vLLM engine arguments would get in this context, without
    starting it (vLLM resolves the whole config, reading config.json but no weights)."""
    # lazy: keeps --help and start-up free of torch, vLLM, transformers, the hub clients
    from vllm.engine.arg_utils import EngineArgs

    return limits_of(EngineArgs(**args).create_engine_config(usage_context(context)))


def log_limits(vllm_config: Any, context: str) -> SchedulerLimits:
    """Log the budgets an engine runs with (INFO: shown under --verbose)."""
    limits = limits_of(vllm_config)
    logger.info("vLLM scheduler (%s defaults): max_num_seqs=%d max_num_batched_tokens=%d",
                "server" if context == SERVER else "offline", limits.max_num_seqs, limits.max_num_batched_tokens)
    return limits
