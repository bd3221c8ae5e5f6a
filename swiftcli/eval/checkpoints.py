"""The checkpoints of a training run: found from a glob, a list of folders or the run folder itself, each with
the training step it was saved at (trainer_state.json's global_step, else the number in its folder name)."""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swiftcli.config.spec import ModelSpec
from swiftcli.errors import CheckpointError, UsageError
from swiftcli.hub.resolve import has_weights, is_adapter, resolve_model

GLOB_CHARS = "*?["
_STEP_IN_NAME = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint to evaluate: its folder, a unique short name, its training step and resolved model."""

    path: Path
    name: str
    step: int | None
    spec: ModelSpec

    @property
    def is_lora(self) -> bool:
        return bool(self.spec.adapters)


def is_sweep(ckpt_dir: str | None) -> bool:
    """Whether --ckpt-dir asks for several checkpoints: a glob, a comma-separated list, or a run folder."""
    if not ckpt_dir:
        return False
    if any(c in ckpt_dir for c in GLOB_CHARS) or "," in ckpt_dir:
        return True
    path = Path(ckpt_dir).expanduser()
    return path.is_dir() and not _is_checkpoint(path) and bool(_run_children(path))


def _is_checkpoint(path: Path) -> bool:
    return is_adapter(path) or has_weights(path)


def _run_children(path: Path) -> list[Path]:
    return [p for p in path.glob("checkpoint-*") if p.is_dir() and _is_checkpoint(p)]


def expand_checkpoints(ckpt_dir: str) -> list[Path]:
    """Every checkpoint folder that --ckpt-dir names, each once, in the order given; a clear error for none."""
    found: list[Path] = []
    for part in (p.strip() for p in ckpt_dir.split(",")):
        if not part:
            continue
        expanded = str(Path(part).expanduser())
        if any(c in part for c in GLOB_CHARS):
            matches = [Path(m) for m in sorted(glob.glob(expanded)) if Path(m).is_dir()]
            if not matches:
                raise UsageError(f"--ckpt-dir {part!r} matches no folder", "check the pattern (quote it in the shell)")
        else:
            path = Path(expanded)
            if not path.is_dir():
                raise CheckpointError(f"checkpoint directory {path} does not exist", "check --ckpt-dir")
            matches = [path] if _is_checkpoint(path) else sorted(_run_children(path))
        for match in matches:
            if not _is_checkpoint(match):
                if any(c in part for c in GLOB_CHARS):
                    continue  # a glob may also match logs/ or runs/: only checkpoints count
                raise CheckpointError(f"{match} holds neither model weights nor a LoRA adapter")
            resolved = match.resolve()
            if resolved not in found:
                found.append(resolved)
    if not found:
        raise UsageError(f"--ckpt-dir {ckpt_dir!r} names no checkpoint", "point it at checkpoint-* folders")
    return found


def checkpoint_step(path: Path) -> int | None:
    """trainer_state.json's global_step, else the trailing number of the folder name (checkpoint-200 -> 200)."""
    state = path / "trainer_state.json"
    if state.is_file():
        try:
            step = json.loads(state.read_text(encoding="utf-8")).get("global_step")
        except (OSError, ValueError, AttributeError):
            step = None
        if isinstance(step, int) and not isinstance(step, bool):
            return step
    match = _STEP_IN_NAME.search(path.name)
    return int(match.group(1)) if match else None


def training_loss(path: Path) -> float | None:
    """The last training loss trainer_state.json logged (its log_history's last `loss`), if it logged one."""
    try:
        history = json.loads((path / "trainer_state.json").read_text(encoding="utf-8")).get("log_history")
    except (OSError, ValueError, AttributeError):
        return None
    losses = [entry["loss"] for entry in history or () if isinstance(entry, dict)
              and isinstance(entry.get("loss"), int | float) and not isinstance(entry["loss"], bool)]
    return float(losses[-1]) if losses else None


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Folder names, with the parent's name in front where two runs both have e.g. checkpoint-100."""
    names = [p.name for p in paths]
    return [n if names.count(n) == 1 else f"{p.parent.name}-{n}" for n, p in zip(names, paths, strict=True)]


def resolve_checkpoints(
    ckpt_dir: str,
    model_type: str | None = None,
    model_id_or_path: str | None = None,
    template_type: str | None = None,
    system: str | None = None,
) -> list[Checkpoint]:
    """The checkpoints of --ckpt-dir, resolved (base model found for adapters), sorted by training step."""
    paths = expand_checkpoints(ckpt_dir)
    checkpoints = [
        Checkpoint(path, name, checkpoint_step(path),
                   resolve_model(model_type, model_id_or_path, path, template_type=template_type, system=system))
        for path, name in zip(paths, unique_names(paths), strict=True)
    ]
    # Steps first (a learning curve reads left to right); checkpoints without one keep their given order, last.
    order = {c.path: i for i, c in enumerate(checkpoints)}
    return sorted(checkpoints, key=lambda c: (c.step is None, c.step or 0, order[c.path]))


def engine_groups(checkpoints: Sequence[Checkpoint], share_lora: bool) -> list[list[Checkpoint]]:
    """Checkpoints that can share one engine: LoRA adapters of the same base (and prompt format) together when
    `share_lora`; every full-weight checkpoint alone."""
    groups: dict[tuple[object, ...], list[Checkpoint]] = {}
    alone: list[list[Checkpoint]] = []
    for ckpt in checkpoints:
        spec = ckpt.spec
        if ckpt.is_lora and share_lora:
            key = (spec.model_dir, spec.template_type, spec.default_system, spec.torch_dtype)
            groups.setdefault(key, []).append(ckpt)
        else:
            alone.append([ckpt])
    return [*groups.values(), *alone]
