"""The garbage collector and a loaded engine.

Once vLLM, torch and transformers are imported and an engine is up, a process tracks ~700,000 long-lived objects,
and each full (oldest-generation) collection walks all of them: 1.3 s on a busy 2-core machine. CPython starts one
once the objects that survived younger collections exceed a quarter of the old ones; whatever is running then
stalls for its length, a server's streams all at once. vLLM's own server freezes its start-up heap for this reason;
swiftcli's engines do the same once loaded, so a full collection walks only what was made afterwards.
"""

from __future__ import annotations

import gc

_frozen = {"engines": 0}


def freeze_startup_heap() -> None:
    """Collect once, then move everything alive now out of the collector's sight."""
    gc.collect()
    gc.freeze()
    _frozen["engines"] += 1


def thaw_heap() -> None:
    """Give the frozen objects back to the collector once no loaded engine is left, so that a closed engine's
    memory can be reclaimed."""
    _frozen["engines"] = max(0, _frozen["engines"] - 1)
    if _frozen["engines"] == 0:
        gc.unfreeze()
