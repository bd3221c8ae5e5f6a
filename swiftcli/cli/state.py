"""Process-wide CLI flags set by the root callback (-v, -q, --debug)."""

from __future__ import annotations

_flags = {"verbose": False, "quiet": False}


def set_flags(verbose: bool, quiet: bool) -> None:
    _flags.update(verbose=verbose, quiet=quiet)


def verbose() -> bool:
    return _flags["verbose"]


def quiet() -> bool:
    return _flags["quiet"]
