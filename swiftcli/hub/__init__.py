"""Where weights come from: a hub snapshot download, or the embedded model that a Python package ships.

Downloads from ModelScope (default) or Hugging Face (USE_HF=1). Thin: only this module talks to a hub."""

from __future__ import annotations

import os
from pathlib import Path

from swiftcli.errors import MissingDependencyError, ModelNotFoundError


def use_hf_hub() -> bool:
    return os.environ.get("USE_HF", "0").lower() in ("1", "true", "yes")


def snapshot_download(model_id: str, revision: str | None = None) -> Path:
    """Where weights come from: a hub snapshot download, or the embedded model that a Python package ships.

Fetch a model repository (or find it in the hub's cache) and return its local directory."""
    try:
        if use_hf_hub():
            # lazy: the ModelScope client is optional and heavy
            from huggingface_hub import snapshot_download as hf_download

            return Path(hf_download(model_id, revision=revision))
        try:
            from modelscope import snapshot_download as ms_download
        except ImportError:
            raise MissingDependencyError(
                "downloading from ModelScope needs the modelscope package",
                "pip install modelscope, or set USE_HF=1 to use Hugging Face",
            ) from None
        return Path(ms_download(model_id, revision=revision or "master"))
    except MissingDependencyError:
        raise
    except Exception as exc:  # hub clients raise many unrelated types for "not reachable" / "not found"
        hub = "Hugging Face" if use_hf_hub() else "ModelScope"
        raise ModelNotFoundError(
            f"could not download {model_id!r} from {hub}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            "check the id and your network, or pass a local directory with --model",
        ) from exc
