"""The models on this disk: hub downloads (Hugging Face and ModelScope caches) and models swiftcli converted
(the embedded model under $SWIFTCLI_HOME/models), with their size, partial downloads, and removal."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from swiftcli.config.paths import models_dir
from swiftcli.hub.download import HF, MODELSCOPE, cache_dirs
from swiftcli.hub.partials import partial_files
from swiftcli.hub.usage import forget, last_used

CONVERTED = "swiftcli"
COMPLETE_MARKER = ".swiftcli-complete"  # hub.embedded writes it when a conversion finished


@dataclass(frozen=True)
class LocalModel:
    """One model folder. `path` is what --model takes; `root` is what `rm` deletes (a hub repo folder holds every
    revision); `partial` counts bytes of unfinished downloads beside it."""

    id: str
    hub: str
    revision: str | None
    size: int
    path: Path
    last_used: float | None
    partial: int
    root: Path

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "hub": self.hub, "revision": self.revision, "size": self.size,
                "path": str(self.path), "last_used": self.last_used, "partial": self.partial}


def local_models() -> list[LocalModel]:
    used = last_used()
    rows = [*_hf_models(used), *_modelscope_models(used), *_converted_models(used)]
    return sorted(rows, key=lambda m: (m.id.lower(), m.hub))


def find_local(name: str) -> list[LocalModel]:
    """The local models whose id (any case) or folder is `name`."""
    wanted = Path(name).expanduser()
    resolved = wanted.resolve() if wanted.exists() else None
    return [m for m in local_models()
            if m.id.lower() == name.lower() or (resolved is not None and resolved in (m.path.resolve(), m.root))]


def remove(model: LocalModel) -> None:
    """Delete the model's folder (for a hub repo: every revision, and its download locks)."""
    shutil.rmtree(model.root)
    if model.hub == HF:
        shutil.rmtree(model.root.parent / ".locks" / model.root.name, ignore_errors=True)
    if model.hub == CONVERTED:
        with contextlib.suppress(OSError):
            Path(str(model.root) + ".lock").unlink()
    forget(model.path)


def _hf_models(used: dict[str, float]) -> list[LocalModel]:
    # deferred: huggingface_hub loads only when needed (a light start-up)
    from huggingface_hub import CacheNotFound, scan_cache_dir

    root = cache_dirs()[HF]
    partial: dict[str, int] = {}
    for p in partial_files(root):
        partial[p.repo_folder] = partial.get(p.repo_folder, 0) + p.size
    try:
        info = scan_cache_dir(root)
    except CacheNotFound:
        return []
    rows = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        path = newest.snapshot_path if newest is not None else repo.repo_path
        revision = (",".join(sorted(newest.refs)) or newest.commit_hash[:12]) if newest is not None else None
        when = used.get(str(path.resolve())) or repo.last_accessed
        rows.append(LocalModel(repo.repo_id, HF, revision, repo.size_on_disk, path, when,
                               partial.pop(repo.repo_path.name, 0), repo.repo_path))
    for folder, size in partial.items():  # killed before any file finished: only partial files
        if folder.startswith("models--"):
            repo_id = folder.removeprefix("models--").replace("--", "/")
            rows.append(LocalModel(repo_id, HF, None, 0, root / folder, None, size, root / folder))
    return rows


def _modelscope_models(used: dict[str, float]) -> list[LocalModel]:
    root = cache_dirs()[MODELSCOPE]
    if not root.is_dir():
        return []
    try:
        # The client's own cache scanner knows its layouts (current and legacy); it has no public name yet.
        from modelscope_hub._cache_manager import scan_cache
    except ImportError:
        return []
    rows = []
    for repo in scan_cache(root).repos:
        if str(getattr(repo.repo_type, "value", repo.repo_type)) != "model" or not repo.local_path:
            continue
        path = Path(repo.local_path)
        partial = sum(f.stat().st_size for f in path.rglob("*.incomplete") if f.is_file())
        if not repo.size_on_disk and not partial:  # a failed first download leaves an empty folder
            continue
        when = used.get(str(path.resolve())) or _timestamp(repo.last_accessed)
        rows.append(LocalModel(repo.repo_id, MODELSCOPE, repo.revision, repo.size_on_disk, path, when, partial,
                               path))
    return rows


def _converted_models(used: dict[str, float]) -> list[LocalModel]:
    root = models_dir()
    if not root.is_dir():
        return []
    rows = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or not (path / COMPLETE_MARKER).is_file():
            continue
        partial = sum(_folder_size(t) for t in root.glob(f".{path.name}.tmp-*"))
        rows.append(LocalModel(path.name, CONVERTED, None, _folder_size(path), path,
                               used.get(str(path.resolve())), partial, path))
    return rows


def _timestamp(value: object) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    stamp = getattr(value, "timestamp", None)
    return float(stamp()) if callable(stamp) else None


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
