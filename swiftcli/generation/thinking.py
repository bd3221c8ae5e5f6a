"""Answers of thinking models: the `<think>…</think>` block apart from the answer, for offline callers (dataset
runs write it in its own field, eval scores the answer alone).

The template family names its parser (Qwen3: `qwen3`); other templates use the `qwen3` rule too, which splits
only an answer that starts with `<think>`, so the answers of models that do not think are untouched.
"""

from __future__ import annotations

from typing import Any

from swiftcli.parsers import get_reasoning_parser
from swiftcli.registry.tool_prompts import default_reasoning_parser


def split_thinking(template: Any, text: str) -> tuple[str | None, str]:
    """(reasoning or None, answer)."""

    parser = get_reasoning_parser(default_reasoning_parser(template.template_type) or "qwen3")
    reasoning, answer = parser.split(text)
    if not reasoning and not text.lstrip().startswith(parser.start):
        return None, text
    return reasoning, answer
