"""Request fields outside the schema: accepted when they change nothing, refused by name when they would.

A client that sends a field we cannot honour gets a 400 naming it rather than an answer that silently differs.
"""

from __future__ import annotations

from typing import Any

# Fields that legitimately change nothing in the answer: bookkeeping, caching and routing hints.
ACCEPTED_WITHOUT_EFFECT = frozenset({
    "user", "metadata", "store", "service_tier", "request_id", "priority", "cache_salt", "prompt_cache_key",
    "safety_identifier", "prompt_cache_retention",
})


class UnsupportedField(ValueError):
    """Raised inside pydantic validation, so the server answers 400 with the field's name."""


def check_extra_fields(extra: dict[str, Any]) -> None:
    refused = sorted(name for name in extra if name not in ACCEPTED_WITHOUT_EFFECT)
    if refused:
        names = ", ".join(refused)
        raise UnsupportedField(f"unsupported field(s): {names}: this server does not implement them, and they "
                               "would change the answer; remove them")
