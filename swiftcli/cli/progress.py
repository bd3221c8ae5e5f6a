"""Download progress on stderr for every command: a Rich bar (bytes, rate, ETA) on a terminal, also inside the
loading spinner (Rich nests live displays), and a plain line every few seconds elsewhere (logs, CI, pipes).

`install()` makes it the library's process-wide download handler, so infer, chat, deploy, eval and `download`
show the same progress without passing a callback through model resolution. --quiet hides it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.progress import DownloadColumn, TimeRemainingColumn, TransferSpeedColumn

from swiftcli.cli import output, state
from swiftcli.hub.download import format_bytes
from swiftcli.hub.progress import DownloadProgress, set_progress_handler

PLAIN_EVERY_S = 2.0


class DownloadDisplay:
    """Draws DownloadProgress events (they come from the hub client's worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bars: dict[str, tuple[Any, Any]] = {}  # model id -> (Progress, task id)
        self._started: dict[str, float] = {}
        self._printed: dict[str, float] = {}

    def __call__(self, event: DownloadProgress) -> None:
        if state.quiet():
            return
        with self._lock:
            self._started.setdefault(event.model_id, time.monotonic())
            if output.stderr.is_terminal:
                self._draw(event)
            else:
                self._line(event)
            if event.finished:
                self._done(event)

    def _draw(self, event: DownloadProgress) -> None:
        if event.model_id not in self._bars:
            progress = output.progress("Downloading {task.description}", DownloadColumn(), TransferSpeedColumn(),
                                       TimeRemainingColumn())
            progress.start()
            self._bars[event.model_id] = (progress, progress.add_task(event.model_id, total=event.total))
        progress, task = self._bars[event.model_id]
        progress.update(task, completed=event.done, total=event.total)

    def _line(self, event: DownloadProgress) -> None:
        now = time.monotonic()
        first = event.model_id not in self._printed
        if event.finished or (not first and now - self._printed[event.model_id] < PLAIN_EVERY_S):
            return
        self._printed[event.model_id] = now
        if first:  # no rate yet: one event is no measure
            size = f" ({format_bytes(event.total)})" if event.total else ""
            output.message(f"Downloading {event.model_id}{size}")
            return
        rate = event.done / max(now - self._started[event.model_id], 1e-3)
        total = f" / {format_bytes(event.total)}" if event.total else ""
        eta = f", ETA {_duration((event.total - event.done) / rate)}" if event.total and rate > 0 else ""
        output.message(f"Downloading {event.model_id}: {format_bytes(event.done)}{total}, "
                       f"{format_bytes(rate)}/s{eta}")

    def _done(self, event: DownloadProgress) -> None:
        bar = self._bars.pop(event.model_id, None)
        if bar is not None:
            bar[0].stop()
        elapsed = time.monotonic() - self._started.pop(event.model_id)
        self._printed.pop(event.model_id, None)
        if event.done and not event.failed:
            output.message(f"Downloaded {event.model_id}: {format_bytes(event.done)} in {_duration(elapsed)}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def install() -> None:
    """Show every download of this process on stderr."""
    set_progress_handler(DownloadDisplay())
