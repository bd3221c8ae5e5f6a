"""Stored responses for `previous_response_id` and GET/DELETE /v1/responses/{id}: in memory, bounded by count
and by bytes (the oldest go first), and keyed by the caller's API key so that one caller never sees another's.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MAX_RESPONSES = 1000
MAX_BYTES = 64 * 1024 * 1024


@dataclass
class Stored:
    """A response as answered, and the conversation (chat messages) that continues from it."""

    response: dict[str, Any]
    messages: list[dict[str, Any]]
    size: int


class ResponseStore:
    def __init__(self, max_responses: int = MAX_RESPONSES, max_bytes: int = MAX_BYTES) -> None:
        self.max_responses = max_responses
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple[str, str], Stored] = OrderedDict()

    @staticmethod
    def _owner(api_key: str | None) -> str:
        # A digest, so the store never holds a key itself.
        return hashlib.sha256((api_key or "").encode()).hexdigest()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, api_key: str | None, response: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        size = len(json.dumps(response, ensure_ascii=False)) + len(json.dumps(messages, ensure_ascii=False))
        if size > self.max_bytes:
            return  # larger than the whole store: keeping it would evict everything else
        key = (self._owner(api_key), response["id"])
        self.delete(api_key, response["id"])
        self._items[key] = Stored(response, messages, size)
        self.bytes += size
        while len(self._items) > self.max_responses or self.bytes > self.max_bytes:
            _, oldest = self._items.popitem(last=False)
            self.bytes -= oldest.size

    def get(self, api_key: str | None, response_id: str) -> Stored | None:
        return self._items.get((self._owner(api_key), response_id))

    def delete(self, api_key: str | None, response_id: str) -> bool:
        item = self._items.pop((self._owner(api_key), response_id), None)
        if item is None:
            return False
        self.bytes -= item.size
        return True
