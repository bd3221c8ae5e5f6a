"""Download progress as plain events, fed by the hub clients' own progress hooks.

The library reports, the CLI draws: a download calls `on_progress(DownloadProgress)` from whichever thread the hub
client uses. Commands that download deep inside model resolution (infer, chat, deploy, eval...) cannot pass a
callback down every call, so a process-wide handler (`set_progress_handler`) serves when none is passed.

huggingface_hub takes a `tqdm_class`, ModelScope a list of `ProgressCallback` classes; both are built here around
one `ByteCounter`, so either hub reports the same events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REPORT_EVERY_S = 0.1


@dataclass(frozen=True)
class DownloadProgress:
    """Where one model download stands. `done` and `total` count the bytes this download writes (files already
    on disk are not in them); `total` is None while unknown."""

    model_id: str
    hub: str
    done: int
    total: int | None
    finished: bool = False
    failed: bool = False


ProgressCallback = Callable[[DownloadProgress], None]
_handler: list[ProgressCallback | None] = [None]


def set_progress_handler(callback: ProgressCallback | None) -> None:
    """The callback that downloads report to when their caller passes none (the CLI sets one per process)."""
    _handler[0] = callback


def progress_handler() -> ProgressCallback | None:
    return _handler[0]


class ByteCounter:
    """Thread-safe byte count of one download, reported at most every REPORT_EVERY_S and once when finished."""

    def __init__(self, model_id: str, hub: str, callback: ProgressCallback | None, total: int | None = None) -> None:
        self.model_id = model_id
        self.hub = hub
        self.callback = callback
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._reported = 0.0

    def add_total(self, size: int) -> None:
        with self._lock:
            self.total = (self.total or 0) + size

    def set_done(self, done: int) -> None:
        with self._lock:
            self.done = max(self.done, done)
        self._report()

    def add_done(self, size: int) -> None:
        with self._lock:
            self.done += size
        self._report()

    def _report(self, finished: bool = False, failed: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not finished and now - self._reported < REPORT_EVERY_S:
            return
        self._reported = now
        self.callback(DownloadProgress(self.model_id, self.hub, self.done, self.total, finished, failed))

    def finish(self, failed: bool = False) -> None:
        """The last event: the display closes its bar (and, unless `failed`, says what was downloaded)."""
        self._report(finished=True, failed=failed)


def hf_tqdm_class(counter: ByteCounter) -> type:
    """A class that huggingface_hub's snapshot_download takes as `tqdm_class`: it draws nothing and feeds
    `counter`. snapshot_download makes byte bars (network transfer and bytes written, both fed per chunk) and a
    file-count bar; the count reported is the furthest byte bar, which stays right whichever of them a version
    feeds."""

    class _Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.n = kwargs.get("initial", 0) or 0
            self.total = kwargs.get("total")
            self.counts_bytes = kwargs.get("unit") == "B"
            self.format_dict: dict[str, Any] = {}

        def update(self, n: float | None = 1) -> None:
            self.n += int(n or 0)
            if self.counts_bytes:
                counter.set_done(self.n)

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def __getattr__(self, name: str) -> Callable[..., None]:
            # refresh, close, set_description, set_postfix_str ...: display calls, nothing to draw.
            return lambda *args, **kwargs: None

    return _Bar


def modelscope_callback_class(counter: ByteCounter) -> type:
    """A ModelScope `ProgressCallback` subclass (made per file with its name and size) that feeds `counter`."""
    # deferred: modelscope loads only when needed (a light start-up)
    from modelscope.hub.callback import ProgressCallback as MsCallback

    class _Callback(MsCallback):  # type: ignore[misc]
        def __init__(self, filename: str, file_size: int) -> None:
            super().__init__(filename, file_size)
            if file_size > 0:
                counter.add_total(file_size)

        def update(self, size: int) -> None:
            counter.add_done(size)

        def end(self) -> None:
            return None

    return _Callback
