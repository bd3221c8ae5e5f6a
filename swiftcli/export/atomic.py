"""Write an output directory so that it is either complete or absent, whatever happens to the process.

The work happens in a hidden temporary sibling (`.NAME.tmp-XXXX`). Only when everything is written does a marker
file go in, and the directory is renamed into place. A file lock serialises writers of the same target, and
under the lock any leftovers of a killed run are dealt with first: a displaced previous output whose
replacement never arrived is restored, temporary siblings are removed. A directory
without the marker never counts as finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from swiftcli.errors import SwiftError, UsageError

COMPLETE_MARKER = ".swiftcli-complete"


class DiskSpaceError(SwiftError):
    """Not enough free space where the output goes."""


@dataclass(frozen=True)
class OutputState:
    """What is at the target path before writing."""

    complete: bool
    marker: dict[str, Any]


def is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def read_marker(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _leftover_prefixes(target: Path) -> tuple[str, str]:
    return f".{target.name}.tmp-", f".{target.name}.old-"


def leftovers(target: Path) -> list[Path]:
    """Temporary or displaced siblings that a killed run of this target left behind."""
    if not target.parent.is_dir():
        return []
    prefixes = _leftover_prefixes(target)
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefixes))


def free_bytes(path: Path) -> int:
    """Free space on the file system that holds `path` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_free_space(target: Path, needed: int, what: str) -> None:
    """Refuse before writing anything when the target's file system lacks `needed` bytes (plus 10 %)."""
    want = int(needed * 1.1)
    free = free_bytes(target.parent)
    if free < want:
        raise DiskSpaceError(
            f"not enough disk space for {what} in {target.parent}: {_gib(want)} needed, {_gib(free)} free",
            "free some space or choose another --output_dir",
        )


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


@contextmanager
def _lock(target: Path) -> Iterator[None]:
    # The lock file sits beside the target; the OS drops the lock when its holder dies, even by kill -9.
    with FileLock(str(target.parent / f".{target.name}.lock")):
        yield


def write_atomically(
    target: Path,
    build: Callable[[Path], None],
    *,
    force: bool = False,
    marker: dict[str, Any] | None = None,
    reuse: Callable[[OutputState], bool] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> bool:
    """Fill `target` by calling build(temp_dir); returns False when a complete output was reused instead.

    `reuse(state)` decides whether an existing complete output is kept (default: always, unless `force`).
    A directory at `target` without our marker is refused unless `force`: it may be someone's own files.
    If `build` raises, nothing is left behind.
    """
    say = on_message or (lambda _msg: None)
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        _recover(target, say)
        if target.exists():
            if not target.is_dir():
                raise UsageError(f"{target} exists and is not a directory", "choose another --output_dir")
            if is_complete(target):
                state = OutputState(True, read_marker(target))
                if not force and (reuse is None or reuse(state)):
                    return False
            elif not force:
                raise UsageError(
                    f"{target} exists but was not written (completely) by swiftcli export",
                    "pass --force true to replace it, or choose another --output_dir",
                )
        prefix = _leftover_prefixes(target)[0]
        temp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        try:
            _chmod_like_mkdir(temp)
            build(temp)
            info = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(marker or {})}
            _write_marker(temp, info)
            _replace(temp, target)
        except BaseException:
            _remove(temp)
            raise
    return True


def _recover(target: Path, say: Callable[[str], None]) -> None:
    """Undo what a killed run left: a crash between `_replace`'s two renames leaves the previous output only as
    `.old-*`, which is put back; temporary directories and displaced copies beside a target are removed."""
    old_prefix = _leftover_prefixes(target)[1]
    displaced = [p for p in leftovers(target) if p.name.startswith(old_prefix) and p.is_dir()]
    if displaced and not target.exists():
        previous = max(displaced, key=lambda p: p.stat().st_mtime_ns)
        os.rename(previous, target)
        _fsync_dir(target.parent)
        say(f"Restored {target}, which an interrupted run had moved aside")
    for path in leftovers(target):
        say(f"Removing the leftovers of an interrupted run: {path}")
        _remove(path)


def _chmod_like_mkdir(folder: Path) -> None:
    # mkdtemp makes the directory private (0700); the output should get the permissions mkdir would give.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)


def _write_marker(folder: Path, info: dict[str, Any]) -> None:
    path = folder / COMPLETE_MARKER
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_tree(folder)


def _fsync_tree(folder: Path) -> None:
    # A rename is only as durable as the data it points at: flush the files, then the directory entries.
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(temp: Path, target: Path) -> None:
    old: Path | None = None
    if target.exists():
        # Move the old output aside first: a crash between the two renames leaves no target and an `.old-`
        # leftover, never a mix of the two.
        old = Path(tempfile.mkdtemp(prefix=_leftover_prefixes(target)[1], dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
    os.rename(temp, target)
    _fsync_dir(target.parent)
    if old is not None:
        _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
