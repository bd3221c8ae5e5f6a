"""Partial files that killed downloads leave in the Hugging Face cache, found and removed safely.

huggingface_hub 2.x downloads `blobs/<etag>` into `blobs/<etag>.<random>.incomplete`, unique to the process, while
holding `.locks/<repo>/<etag>.lock`. An error or Ctrl-C deletes that file; kill -9 cannot, and no later download
reuses it (the name is random), so it stays as dead weight. A partial whose lock can be taken has no download
writing it: that one is an orphan and is removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

SUFFIX = ".incomplete"


@dataclass(frozen=True)
class PartialFile:
    path: Path
    size: int
    repo_folder: str  # e.g. models--org--name

    @property
    def lock_path(self) -> Path:
        etag = self.path.name.split(".", 1)[0]
        return self.path.parents[2] / ".locks" / self.repo_folder / f"{etag}.lock"


def hf_cache_dir() -> Path:
    from huggingface_hub import constants  # deferred: huggingface_hub loads only when needed (a light start-up)

    return Path(constants.HF_HUB_CACHE)


def partial_files(cache_dir: Path | None = None) -> list[PartialFile]:
    """Every `*.incomplete` file in the Hugging Face cache, whether or not a download is writing it."""
    root = cache_dir or hf_cache_dir()
    found = []
    for path in sorted(root.glob(f"*/blobs/*{SUFFIX}")):
        try:
            size = path.stat().st_size
        except OSError:  # finished or removed meanwhile
            continue
        found.append(PartialFile(path, size, path.parents[1].name))
    return found


def is_orphan(partial: PartialFile) -> bool:
    """True when no download holds the partial's lock (so none is writing it)."""
    if not partial.lock_path.parent.is_dir():
        return True
    lock = FileLock(str(partial.lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    lock.release()
    return True


def remove_orphans(cache_dir: Path | None = None, repo_folder: str | None = None) -> int:
    """Delete orphaned partial files (of one repo folder, or all); returns the bytes freed."""
    freed = 0
    for partial in partial_files(cache_dir):
        if repo_folder is not None and partial.repo_folder != repo_folder:
            continue
        if is_orphan(partial):
            try:
                partial.path.unlink()
            except OSError:
                continue
            freed += partial.size
    return freed


def remove_local_dir_orphans(local_dir: Path) -> int:
    """Delete partial files in a `--local_dir` download's own metadata folder when no download into that folder is
    running (every file lock there can be taken); returns the bytes freed. Its partial file names do not say which
    file they belong to, so the folder is treated as a whole."""
    folder = local_dir / ".cache" / "huggingface" / "download"
    partials = [p for p in folder.rglob(f"*{SUFFIX}") if p.is_file()] if folder.is_dir() else []
    if not partials:
        return 0
    for lock_path in folder.rglob("*.lock"):
        lock = FileLock(str(lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return 0
        lock.release()
    freed = 0
    for path in partials:
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        freed += size
    return freed
