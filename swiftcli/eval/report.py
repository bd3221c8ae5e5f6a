"""A run on disk: `samples.jsonl` (one row per scored sample) and `summary.json`, written whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from swiftcli.errors import InputError, UsageError

SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"


def default_output_dir() -> Path:
    return Path("eval_outputs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def check_output_dir(path: Path) -> None:
    """Refuse, before any work, a directory that already holds a run or is not a directory."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--eval-output-dir {path} is a file", "give a directory")
    if (path / SUMMARY).exists() or (path / SAMPLES).exists():
        raise UsageError(f"--eval-output-dir {path} already holds a run", "choose another directory or remove it")


def write_run(path: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> Path:
    """Write each file under a temporary name and move it in, summary.json last; on failure nothing is left."""
    check_output_dir(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        samples = _temp(path, SAMPLES, temps)
        with open(samples, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary_tmp = _temp(path, SUMMARY, temps)
        summary_tmp.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(samples, path / SAMPLES)
        os.replace(summary_tmp, path / SUMMARY)
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        (path / SAMPLES).unlink(missing_ok=True)
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return path


def _temp(path: Path, name: str, temps: list[Path]) -> Path:
    # A name of our own (not mkstemp's 0600 file), so the result gets the usual permissions.
    temp = path / f".{name}.{os.getpid()}.tmp"
    temps.append(temp)
    return temp


@dataclass
class Run:
    """A finished run read back from disk."""

    path: Path
    summary: dict[str, Any]
    samples: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return self.path.name or str(self.path)


def load_run(path: str | Path) -> Run:
    """Read a run directory (or its summary.json); InputError names what is missing or broken."""
    path = Path(path)
    if path.is_file() and path.name == SUMMARY:
        path = path.parent
    if not path.is_dir():
        raise InputError(f"{path} is not a run directory", "give a directory that `swiftcli eval` wrote")
    summary_path = path / SUMMARY
    if not summary_path.is_file():
        raise InputError(f"{path} has no {SUMMARY}", "give a directory that `swiftcli eval` wrote")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{summary_path} cannot be read: {exc}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("datasets"), list):
        raise InputError(f"{summary_path} is not an eval summary (no 'datasets' list)")
    samples: list[dict[str, Any]] = []
    samples_path = path / SAMPLES
    if samples_path.is_file():
        for number, line in enumerate(samples_path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    samples.append(json.loads(line))
                except json.JSONDecodeError:
                    raise InputError(f"{samples_path}:{number}: not valid JSON") from None
    return Run(path, summary, samples)
