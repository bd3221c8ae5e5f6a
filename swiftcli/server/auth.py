"""The API key a request presents: OpenAI's clients send `Authorization: Bearer KEY`, Anthropic's `x-api-key`."""

from __future__ import annotations

from typing import Any


def presented_key(scope: Any) -> str | None:
    """The API key a request carries (`Authorization: Bearer KEY` or `x-api-key: KEY`), None without one."""
    headers = dict(scope.get("headers") or [])
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return api_key or None
