"""When each model folder was last used: one small JSON file under $SWIFTCLI_HOME, written under a lock.

File access times are often not kept (noatime, relatime), so `models --local` reads this record instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from filelock import FileLock

from swiftcli.config.paths import swiftcli_home

USAGE_FILE = "models-used.json"


def usage_path() -> Path:
    return swiftcli_home() / USAGE_FILE


def last_used() -> dict[str, float]:
    """{resolved folder path: unix time of its last use}."""
    try:
        data = json.loads(usage_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def record_use(path: Path) -> None:
    """Note that the model folder `path` was used now; a read-only home only loses the record."""
    with contextlib.suppress(OSError):
        _update({str(path.resolve()): time.time()})


def forget(path: Path) -> None:
    with contextlib.suppress(OSError):
        _update({str(path.resolve()): None})


def _update(changes: dict[str, float | None]) -> None:
    target = usage_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        data = last_used()
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        tmp = target.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(target)
