"""What makes a dataset run's answers what they are, recorded beside its result file so that a resume never
mixes the answers of two different runs.

`RUN.jsonl.run.json` holds the fingerprint: model, adapters, template, system prompt, generation settings and
a hash of the rows asked. Resuming compares it field by field, and a difference names what changed.
A lock file (`RUN.jsonl.lock`) keeps a second process from writing the same results; the OS drops it when its
holder dies, even by kill -9.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from swiftcli.errors import InputError

FIELDS = ("model", "adapters", "template", "system", "backend", "dtype", "generation", "dataset")
_LABELS = {"model": "the model", "adapters": "the adapters", "template": "the template",
           "system": "the system prompt", "backend": "the backend", "dtype": "the dtype",
           "generation": "the generation settings", "dataset": "the dataset rows"}


def run_fingerprint(spec: Any, system: str | None, generation: dict[str, Any], samples: Sequence[Any],
                    backend: str | None = None, dtype: str | None = None) -> dict[str, Any]:
    """The fingerprint of a run: JSON-ready, compared field by field on resume."""
    return {
        "model": {"type": spec.model_type, "dir": str(spec.model_dir)},
        "adapters": [str(p) for p in spec.adapters],
        "template": spec.template_type,
        "system": system if system is not None else spec.default_system,
        "backend": backend,
        "dtype": dtype,
        "generation": generation,
        "dataset": dataset_hash(samples),
    }


def dataset_hash(samples: Sequence[Any]) -> str:
    """sha256 over the rows asked, in order (what each asks and its label, not where it came from)."""
    digest = hashlib.sha256()
    for sample in samples:
        row = [sample.system, sample.query, sample.response, sample.history]
        if getattr(sample, "image_sha256", None):
            row.append(sample.image_sha256)
        if getattr(sample, "video_sha256", None):
            row.append({"videos": sample.video_sha256})
        digest.update(json.dumps(row, ensure_ascii=True).encode() + b"\n")
    return digest.hexdigest()


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [_LABELS[name] for name in FIELDS if _canonical(old.get(name)) != _canonical(new.get(name))]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True, default=str)


def sidecar(result: Path) -> Path:
    return result.with_name(result.name + ".run.json")


def read_fingerprint(result: Path) -> dict[str, Any] | None:
    path = sidecar(result)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_fingerprint(result: Path, fingerprint: dict[str, Any]) -> None:
    """Written to a temporary file, fsynced and renamed, so that it is whole or absent."""
    path = sidecar(result)
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "w", encoding="utf-8") as fh:
        json.dump(fingerprint, fh, indent=2, ensure_ascii=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)


def check_not_input(result: Path, inputs: Sequence[str | Path]) -> None:
    """Refuse a result file that is one of the dataset files: resuming would read answers as rows."""
    for name in inputs:
        source = Path(name)
        same = result.exists() and source.exists() and os.path.samefile(result, source)
        if same or result.resolve() == source.resolve():
            raise InputError(f"--result_file {result} is one of the dataset files",
                             "write the results to another file")


class ResultLock:
    """An exclusive, non-blocking lock on a result file for the whole run."""

    def __init__(self, result: Path) -> None:
        self.path = result.with_name(result.name + ".lock")
        self._lock = FileLock(str(self.path))

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise InputError(f"another process is writing {self.path.with_suffix('')}",
                             "wait for it to finish, or pass another --result_file") from None

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()
