"""Model repositories from ModelScope (default) or Hugging Face (USE_HF=1), through their own clients.

A repository already in the hub's cache is returned without asking the network. Otherwise the repository's file
list gives its size, which is checked against free disk space before anything downloads; the bytes are reported
through `on_progress` (see hub.progress). Each client's errors become one SwiftError that names the cause: not on
the hub, gated or private (and how to log in), offline with nothing cached, disk full, hub not reachable.

Both clients honour their own variables: HF_TOKEN, HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE;
MODELSCOPE_API_TOKEN, MODELSCOPE_ENDPOINT / MODELSCOPE_DOMAIN, MODELSCOPE_CACHE. HF_HUB_OFFLINE=1 keeps
ModelScope to its cache too.

Resuming: huggingface_hub 2.x writes each file into a temporary file unique to the process and deletes it on an
error, but a killed process (kill -9) leaves it behind and a rerun starts that file over; `hub.partials` removes
such orphans once no download holds their lock. ModelScope resumes a partial file with HTTP ranges.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from swiftcli.errors import DiskSpaceError, MissingDependencyError, ModelNotFoundError, SwiftError
from swiftcli.hub.partials import remove_local_dir_orphans, remove_orphans
from swiftcli.hub.progress import ByteCounter, ProgressCallback, hf_tqdm_class, modelscope_callback_class
from swiftcli.hub.progress import progress_handler as default_progress_handler
from swiftcli.hub.usage import record_use

T = TypeVar("T")
HF = "huggingface"
MODELSCOPE = "modelscope"
HUB_NAMES = {HF: "Hugging Face", MODELSCOPE: "ModelScope"}
# Room kept free beyond the files themselves (file system slack, the hub client's metadata).
DISK_MARGIN = 64 * 1024 * 1024
_TRUE = ("1", "true", "yes", "on")


class RepoNotFoundError(ModelNotFoundError):
    """The hub has no repository of that id (a caller may add that no local folder has that name either)."""


def use_hf_hub() -> bool:
    return os.environ.get("USE_HF", "0").strip().lower() in _TRUE


def hub_name() -> str:
    return HF if use_hf_hub() else MODELSCOPE


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in _TRUE


def snapshot_download(
    model_id: str,
    revision: str | None = None,
    *,
    local_dir: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """A model repository's local directory: from the hub's cache, else downloaded (into `local_dir` if given).

    `on_progress` (default: the process-wide handler) gets DownloadProgress events while bytes arrive.
    Raises ModelNotFoundError, DiskSpaceError or MissingDependencyError with the cause in the message."""
    callback = on_progress or default_progress_handler()
    if use_hf_hub():
        path = _hf_download(model_id, revision, local_dir, callback)
    else:
        path = _modelscope_download(model_id, revision, local_dir, callback)
    record_use(path)
    return path


# -- Hugging Face ---------------------------------------------------------------------------------------------------

def _hf_download(model_id: str, revision: str | None, local_dir: str | Path | None,
                 callback: ProgressCallback | None) -> Path:
    # The hub clients load in functions: `swiftcli --help` and shell completion stay free of them.
    import huggingface_hub as hf
    from huggingface_hub import errors as hf_errors

    if local_dir is None:
        try:  # in the cache: no network at all
            return Path(hf.snapshot_download(model_id, revision=revision, local_files_only=True))
        except (hf_errors.LocalEntryNotFoundError, hf_errors.IncompleteSnapshotError, FileNotFoundError):
            pass
        except hf_errors.HFValidationError as exc:
            raise _not_a_model(model_id, HF, str(exc)) from None
    if offline():
        raise _offline_miss(model_id, HF)
    try:
        total = _hf_missing_bytes(model_id, revision, local_dir)
        target = Path(local_dir) if local_dir is not None else Path(hf.constants.HF_HUB_CACHE)
        check_free_space(target, total, model_id)
        counter = ByteCounter(model_id, HF, callback, total)
        try:
            path = run_interruptibly(lambda: hf.snapshot_download(
                model_id, revision=revision, local_dir=local_dir, tqdm_class=hf_tqdm_class(counter)))
        except BaseException:
            counter.finish(failed=True)
            raise
        counter.finish()
    except SwiftError:
        raise
    except Exception as exc:  # every client error is named by hf_error below
        raise hf_error(exc, model_id, revision) from exc
    remove_orphans()
    if local_dir is not None:
        remove_local_dir_orphans(Path(local_dir))
    return Path(path)


def _hf_missing_bytes(model_id: str, revision: str | None, local_dir: str | Path | None) -> int:
    """Bytes of the repository's files that are not on disk yet (what the download will write)."""
    import huggingface_hub as hf  # deferred: huggingface_hub loads only when needed (a light start-up)
    from huggingface_hub.hf_api import RepoFile

    api = hf.HfApi()
    sha = api.repo_info(model_id, revision=revision).sha
    have = Path(local_dir) if local_dir is not None else _hf_snapshot_dir(model_id, sha)
    missing = 0
    for entry in api.list_repo_tree(model_id, revision=sha, recursive=True):
        if isinstance(entry, RepoFile) and not (have is not None and (have / entry.path).is_file()):
            missing += entry.size
    return missing


def _hf_snapshot_dir(model_id: str, sha: str | None) -> Path | None:
    from huggingface_hub import constants  # deferred: huggingface_hub loads only when needed (a light start-up)
    from huggingface_hub.file_download import repo_folder_name

    if sha is None:
        return None
    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=model_id, repo_type="model") / "snapshots" / sha


def hf_error(exc: BaseException, model_id: str, revision: str | None) -> SwiftError:
    """A huggingface_hub error as the cause a person can act on."""
    from huggingface_hub import constants  # deferred: huggingface_hub loads only when needed (a light start-up)
    from huggingface_hub import errors as hf_errors

    endpoint = constants.ENDPOINT
    login = "log in with `hf auth login` or export HF_TOKEN=<token>, then run the command again"
    if isinstance(exc, hf_errors.GatedRepoError):
        return ModelNotFoundError(
            f"{model_id} is gated on Hugging Face ({endpoint}): its files need an account that accepted its terms",
            f"accept the terms on the model's page, then {login}")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ModelNotFoundError(f"{model_id} on Hugging Face has no revision {revision!r}",
                                  "check --revision (a branch, tag or commit)")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        status = exc.response.status_code if exc.response is not None else None
        private = " (or it is private or gated and this request was not logged in)" if status == 401 else ""
        return RepoNotFoundError(
            f"no model {model_id} on Hugging Face ({endpoint}){private}",
            f"check the id; for a private or gated model, {login}")
    if isinstance(exc, hf_errors.HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return ModelNotFoundError(f"Hugging Face ({endpoint}) refused access to {model_id} (HTTP {status})",
                                      f"{login}; a token needs read access to this repository")
        return ModelNotFoundError(f"Hugging Face ({endpoint}) answered HTTP {status} for {model_id}",
                                  "try again later, or check HF_ENDPOINT")
    if isinstance(exc, (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled)):
        return _offline_miss(model_id, HF)
    if _is_disk_full(exc):
        return DiskSpaceError(f"the disk filled up while downloading {model_id}: {exc}",
                              "free some space (swiftcli models --local; swiftcli rm MODEL) and run it again")
    name = type(exc).__name__
    if "Connect" in name or "Timeout" in name or "Network" in name:
        return ModelNotFoundError(f"cannot reach Hugging Face at {endpoint} to download {model_id}: {exc}",
                                  "check the network or HF_ENDPOINT; HF_HUB_OFFLINE=1 uses the cache only")
    return ModelNotFoundError(f"downloading {model_id} from Hugging Face failed: {name}: {exc}",
                              "run it again with --debug for the traceback")


# -- ModelScope -----------------------------------------------------------------------------------------------------

def _modelscope_download(model_id: str, revision: str | None, local_dir: str | Path | None,
                         callback: ProgressCallback | None) -> Path:
    try:
        # deferred: modelscope loads only when needed (a light start-up)
        from modelscope import snapshot_download as ms_download
    except ImportError:
        raise MissingDependencyError(
            "downloading from ModelScope needs the modelscope package",
            "pip install modelscope, or set USE_HF=1 (--use_hf) to use Hugging Face") from None
    local = str(local_dir) if local_dir is not None else None
    try:
        return Path(ms_download(model_id, revision=revision, local_dir=local, local_files_only=True))
    except Exception:  # "not cached" has no class of its own in every version
        pass
    if offline():
        raise _offline_miss(model_id, MODELSCOPE)
    counter = ByteCounter(model_id, MODELSCOPE, callback)
    try:
        path = run_interruptibly(lambda: ms_download(model_id, revision=revision, local_dir=local,
                                                     progress_callbacks=[modelscope_callback_class(counter)]))
    except BaseException as exc:
        counter.finish(failed=True)
        _remove_empty_tree(cache_dirs()[MODELSCOPE] / "models" / model_id.replace("/", "--"))
        if isinstance(exc, Exception):  # ModelScope raises many types; modelscope_error names them
            raise modelscope_error(exc, model_id, revision) from exc
        raise
    counter.finish()
    return Path(path)


def modelscope_error(exc: BaseException, model_id: str, revision: str | None) -> SwiftError:
    name = type(exc).__name__
    text = str(exc).strip() or name
    login = "log in with `modelscope login --token <token>` or export MODELSCOPE_API_TOKEN=<token>"
    if _is_disk_full(exc):
        return DiskSpaceError(f"the disk filled up while downloading {model_id}: {text}",
                              "free some space (swiftcli models --local; swiftcli rm MODEL) and run it again")
    lowered = text.lower()
    if "401" in lowered or "403" in lowered or "login" in lowered or "permission" in lowered or "Auth" in name:
        return ModelNotFoundError(f"ModelScope refused access to {model_id}: {text}", login)
    if "404" in lowered or "not exist" in lowered or "not found" in lowered or "NotExist" in name:
        return RepoNotFoundError(
            f"no model {model_id} on ModelScope: {text}",
            "check the id; models on Hugging Face need USE_HF=1 (or --use_hf)")
    if "Network" in name or "Connection" in name or "connection" in lowered:
        reason = "its host name does not resolve" if "resolve" in lowered else "the connection failed"
        return ModelNotFoundError(
            f"cannot reach ModelScope ({_modelscope_endpoint()}) to download {model_id}: {reason}",
            "check the network or MODELSCOPE_ENDPOINT; USE_HF=1 (--use_hf) downloads from Hugging Face; "
            "--debug shows the client's own error")
    return ModelNotFoundError(f"downloading {model_id} from ModelScope failed: {name}: {text}",
                              "check the network or MODELSCOPE_ENDPOINT; USE_HF=1 downloads from Hugging Face")


def _remove_empty_tree(folder: Path) -> None:
    """A failed first download leaves the repository's empty folders behind; a folder with any file stays."""
    if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


def _modelscope_endpoint() -> str:
    return (os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN") or "modelscope.cn").strip()


# -- shared ---------------------------------------------------------------------------------------------------------

_running: set[threading.Event] = set()  # one per download in flight, set when it ends


def run_interruptibly(download: Callable[[], T]) -> T:
    """Run a hub client's download in a thread of its own and wait for it, so that Ctrl-C reaches the caller at
    once. Called directly, the clients' worker pools swallow the first Ctrl-C and finish the files in flight first
    (minutes for a large file). The thread keeps running after an interrupt; `downloads_running()` tells a
    program that is about to exit (the CLI then exits without waiting, leaving a partial file that the next
    download removes)."""
    outcome: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: an interrupted join marks a running thread as stopped

    def work() -> None:
        try:
            outcome["value"] = download()
        except BaseException as exc:  # handed to the waiting caller
            outcome["error"] = exc
        finally:
            done.set()
            _running.discard(done)

    _running.add(done)
    threading.Thread(target=work, name="swiftcli-download", daemon=True).start()
    while not done.wait(0.2):
        pass
    if "error" in outcome:
        raise outcome["error"]
    return cast(T, outcome["value"])


def downloads_running() -> int:
    """Downloads still in flight (after an interrupt of the caller that waited for them)."""
    return sum(1 for done in list(_running) if not done.is_set())


def check_free_space(target: Path, needed: int, model_id: str) -> None:
    """Refuse before downloading when the disk holding `target` has less free space than `needed` plus a margin."""
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + DISK_MARGIN > free:
        raise DiskSpaceError(
            f"{model_id} needs {format_bytes(needed)} but {probe} has {format_bytes(free)} free",
            "free some space (swiftcli models --local lists models; swiftcli rm MODEL removes one), or set "
            "HF_HOME / MODELSCOPE_CACHE or --local_dir to a larger disk")


def format_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _is_disk_full(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    return False


def _offline_miss(model_id: str, hub: str) -> ModelNotFoundError:
    where = _cache_dir(hub)
    return ModelNotFoundError(
        f"{model_id} is not in the {HUB_NAMES[hub]} cache ({where}) and HF_HUB_OFFLINE=1 forbids downloading it",
        f"download it once with network (swiftcli download {model_id}), or unset HF_HUB_OFFLINE")


def _not_a_model(model_id: str, hub: str, reason: str) -> ModelNotFoundError:
    return ModelNotFoundError(f"{model_id!r} is neither a local folder nor a {HUB_NAMES[hub]} model id ({reason})",
                              "a local model is a folder with config.json; a hub id looks like org/name")


def _cache_dir(hub: str) -> str:
    return str(cache_dirs()[hub])


def cache_dirs() -> dict[str, Path]:
    """Where each hub client keeps its downloads."""
    from huggingface_hub import constants  # deferred: huggingface_hub loads only when needed (a light start-up)

    ms = os.environ.get("MODELSCOPE_CACHE")
    return {HF: Path(constants.HF_HUB_CACHE),
            MODELSCOPE: Path(ms).expanduser() if ms else Path.home() / ".cache" / "modelscope"}
