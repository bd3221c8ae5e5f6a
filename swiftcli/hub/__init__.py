"""Where weights come from: a hub snapshot download, or the embedded model that a Python package ships.

Downloads from ModelScope (default) or Hugging Face (USE_HF=1). Only this package talks to a hub."""

from __future__ import annotations

from swiftcli.hub.download import hub_name, snapshot_download, use_hf_hub
from swiftcli.hub.progress import DownloadProgress, set_progress_handler

__all__ = ["DownloadProgress", "hub_name", "set_progress_handler", "snapshot_download", "use_hf_hub"]
