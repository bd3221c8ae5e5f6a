"""The garbage collector and a loaded engine.

Once vLLM, torch and transformers are imported and an engine is up, a process tracks ~700,000 long-lived objects,
and each full (oldest-generation) collection walks all of them: 1.3 s on a 2-core machine, a few hundred ms on a
fast host. CPython runs one whenever enough objects have survived since the last, which a server streaming to
many clients or a long offline run reaches every few seconds: every request in flight then stalls at once, and
the slowest time-to-first-token (p99) carries the pause. vLLM's own server freezes its start-up heap for this
reason; swiftcli's engines do it once loaded. Objects created later are collected as before.
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
