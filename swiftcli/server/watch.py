"""`deploy --watch DIR`: every checkpoint of a training run served as it appears, on the one engine.

A background task polls DIR for `checkpoint-*` folders. A LoRA checkpoint is loaded (runtime LoRA) once it is
complete: its adapter config and weights exist and have not changed between two polls, since a trainer writes
them over several seconds. A deleted checkpoint is unloaded. `latest` names the loaded checkpoint with the
highest step. Full-weight checkpoints are listed but not loaded: each needs an engine of its own.
`GET /v1/checkpoints` returns the table (behind the API key like every /v1 route), with each checkpoint's last
training loss from its trainer_state.json when it logged one. With --eval_dataset each loaded checkpoint is
also scored in the background and `best` names the top scorer (server.watch_eval).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from swiftcli.errors import SwiftError
from swiftcli.eval.checkpoints import checkpoint_step, training_loss
from swiftcli.export.adapters import check_adapter
from swiftcli.export.train_parity import train_serve_report
from swiftcli.hub.resolve import has_weights, is_adapter
from swiftcli.server.watch_eval import BEST, CheckpointScorer

logger = logging.getLogger("swiftcli.server")
POLL_S = 2.0
LATEST = "latest"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
FULL_WEIGHT_REASON = ("full-weight checkpoint: it needs an engine of its own (deploy --ckpt_dir with its folder); "
                      "only LoRA checkpoints are loaded while serving")
PENDING_REASON = "waiting for the checkpoint's files to be complete"


@dataclass
class WatchedCheckpoint:
    """One row of the table. `signature` is what the completeness check compares between polls."""

    name: str
    path: Path
    step: int | None
    seen: float
    signature: tuple[tuple[str, int, int], ...] | None = None
    stable: bool = False
    loaded: bool = False
    loaded_at: float | None = None
    reason: str | None = PENDING_REASON
    kind: str = "pending"
    metrics: dict[str, float] = field(default_factory=dict)
    # How serving differs from the checkpoint's training run (export.train_parity), one line each.
    parity: list[str] = field(default_factory=list)
    train_loss: float | None = None  # trainer_state.json's last logged loss, for the page's learning curve

    def row(self) -> dict[str, Any]:
        return {"id": self.name, "object": "checkpoint", "step": self.step, "kind": self.kind,
                "loaded": self.loaded, "seen_at": int(self.seen),
                "loaded_at": int(self.loaded_at) if self.loaded_at is not None else None,
                "metrics": dict(self.metrics), "train_loss": self.train_loss, "reason": self.reason,
                "parity": list(self.parity)}


def adapter_signature(path: Path) -> tuple[tuple[str, int, int], ...] | None:
    """(file, size, mtime) of the adapter config and weights; None while either is missing."""
    found = []
    for name in ADAPTER_FILES:
        try:
            stat = (path / name).stat()
        except OSError:
            continue
        found.append((name, stat.st_size, stat.st_mtime_ns))
    names = {f[0] for f in found}
    if "adapter_config.json" not in names or len(names) < 2:
        return None
    return tuple(found)


class CheckpointWatcher:
    """Keeps the engine's adapters in step with the checkpoints under `run_dir` (one poll: `poll(state)`)."""

    def __init__(self, run_dir: Path, poll_s: float = POLL_S) -> None:
        self.run_dir = run_dir
        self.poll_s = poll_s
        self.checkpoints: dict[str, WatchedCheckpoint] = {}

    def table(self) -> list[dict[str, Any]]:
        order = sorted(self.checkpoints.values(), key=lambda c: (c.step is None, c.step or 0, c.name))
        return [c.row() for c in order]

    def latest(self) -> str | None:
        loaded = [c for c in self.checkpoints.values() if c.loaded and c.step is not None]
        return max(loaded, key=lambda c: c.step or 0).name if loaded else None

    async def run(self, state: Any) -> None:
        while not state.ready:  # the engine loads in a thread; adapters can only be added to a running one
            if state.load_error is not None:
                return
            await asyncio.sleep(0.2)
        while True:
            try:
                await self.poll(state)
            except Exception:  # noqa: BLE001 - one bad poll (a folder vanishing mid-scan) must not end watching
                logger.exception("watching %s failed once; retrying", self.run_dir)
            await asyncio.sleep(self.poll_s)

    def _scan(self) -> dict[str, Path]:
        try:
            return {p.name: p for p in self.run_dir.glob("checkpoint-*") if p.is_dir()}
        except OSError:
            return {}

    async def poll(self, state: Any) -> None:
        found = self._scan()
        for name in [n for n in self.checkpoints if n not in found]:
            await self._forget(state, self.checkpoints.pop(name))
        for name, path in found.items():
            ckpt = self.checkpoints.get(name)
            if ckpt is None:
                ckpt = self.checkpoints[name] = WatchedCheckpoint(name, path, checkpoint_step(path), time.time())
                logger.info("checkpoint %s appeared", name)
            if ckpt.loaded and adapter_signature(path) != ckpt.signature:
                # Rewritten in place (a trainer saving again under the same name): serve the new files once
                # they are complete, not a mix of old and new.
                await self._forget(state, ckpt)
                ckpt.loaded, ckpt.loaded_at = False, None
            if not ckpt.loaded and ckpt.kind != "full":
                await self._advance(state, ckpt)
        self._set_latest(state)

    async def _advance(self, state: Any, ckpt: WatchedCheckpoint) -> None:
        """Pending -> (files unchanged since the last poll) -> loaded, or refused with its reason."""
        path = ckpt.path
        if not is_adapter(path) and has_weights(path):
            ckpt.kind, ckpt.reason = "full", FULL_WEIGHT_REASON
            return
        signature = adapter_signature(path)
        ready = signature is not None and signature == ckpt.signature
        changed = signature != ckpt.signature
        ckpt.signature = signature
        if changed:
            ckpt.stable, ckpt.kind, ckpt.reason = False, "pending", PENDING_REASON
        if not ready or ckpt.stable:
            return  # still being written, or already tried with these very files
        ckpt.stable, ckpt.kind = True, "lora"
        ckpt.step = checkpoint_step(path)  # trainer_state.json may have been written after the folder
        ckpt.train_loss = training_loss(path)
        engine = state.engine
        if ckpt.name in engine.lora_names or ckpt.name in (state.model_id, LATEST, BEST):
            ckpt.reason = f"the name {ckpt.name} is already served by another model"
            return
        try:
            check_adapter(path, engine.spec, engine.capabilities.max_lora_rank)
            if not _same_as_training(state, ckpt):
                return
            await engine.load_lora(ckpt.name, str(path))
        except SwiftError as exc:
            ckpt.reason = _public(exc.message, path, ckpt.name)
        except Exception as exc:  # the engine's refusal: its first line, the server stays up
            logger.warning("loading checkpoint %s failed: %s", ckpt.name, exc)
            lines = str(exc).strip().splitlines()
            ckpt.reason = _public(lines[0][:300] if lines else type(exc).__name__, path, ckpt.name)
        else:
            ckpt.loaded, ckpt.loaded_at, ckpt.reason = True, time.time(), None
            logger.info("loaded checkpoint %s", ckpt.name)

    async def _forget(self, state: Any, ckpt: WatchedCheckpoint) -> None:
        if ckpt.loaded:
            await state.engine.unload_lora(ckpt.name)
            logger.info("unloaded checkpoint %s", ckpt.name)

    def _set_latest(self, state: Any) -> None:
        latest = self.latest()
        if latest is None:
            state.aliases.pop(LATEST, None)
        else:
            state.aliases[LATEST] = latest


def _same_as_training(state: Any, ckpt: WatchedCheckpoint) -> bool:
    """Log how serving differs from the checkpoint's training (export.train_parity); False when that refuses it
    (deploy --strict_parity true). The differences stay on the checkpoint's row."""
    generation = state.settings.generation or state.engine.generation_config
    report = train_serve_report(ckpt.path, state.template, generation, name=ckpt.name)
    ckpt.parity = [_public(line, ckpt.path, ckpt.name) for line in report.lines(differences_only=True)]
    for line in report.summary():
        (logger.info if report.ok else logger.warning)("%s", line)
    if state.settings.strict_parity and ckpt.parity:
        ckpt.reason = f"serving differs from training (strict parity): {ckpt.parity[0]}"
        return False
    return True


def _public(message: str, path: Path, name: str) -> str:
    """A reason clients may read: the checkpoint's name where the message had its server path."""
    return message.replace(str(path.resolve()), name).replace(str(path), name)


def install_watch(app: FastAPI, state: Any) -> None:
    """With `settings.watch_dir`: the background watcher and GET /v1/checkpoints."""
    run_dir = state.settings.watch_dir
    if not run_dir:
        return
    watcher = CheckpointWatcher(Path(run_dir))
    state.background.append(lambda: watcher.run(state))
    scoring = state.settings.watch_scoring
    scorer = CheckpointScorer(scoring, watcher) if scoring is not None else None
    if scorer is not None:
        state.background.append(lambda: scorer.run(state))

    @app.get("/v1/checkpoints")
    async def checkpoints() -> dict[str, Any]:
        rows = watcher.table()
        body = {"object": "list", "data": scorer.annotate(rows) if scorer else rows, LATEST: state.aliases.get(LATEST)}
        if scorer is not None:
            body[BEST] = state.aliases.get(BEST)
        return body
