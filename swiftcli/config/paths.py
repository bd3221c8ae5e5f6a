"""Where swiftcli keeps its own files."""

from __future__ import annotations

import os
from pathlib import Path


def swiftcli_home() -> Path:
    """The cache root: $SWIFTCLI_HOME, else ~/.cache/swiftcli."""
    env = os.environ.get("SWIFTCLI_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "swiftcli"


def models_dir() -> Path:
    return swiftcli_home() / "models"
