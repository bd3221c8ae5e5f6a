"""A torchvision built for the CUDA torch, installed beside the CPU torch (what `pip install "swiftcli[cpu]"`
brings), must not stop transformers from loading models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BROKEN = 'raise RuntimeError("operator torchvision::nms does not exist")\n'


def install_fake(site: Path, version: str) -> None:
    """A torchvision whose import fails the way PyPI's does beside torch 2.13.0+cpu, with real package metadata."""
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text(BROKEN)
    info = site / f"torchvision-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torchvision\nVersion: {version}\n")


def run(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow  # two interpreters that import transformers' model classes: 12-13 s on 2 cores
def test_a_torchvision_built_for_another_torch_is_hidden(tmp_path):
    import importlib.metadata

    if not importlib.metadata.version("torch").endswith("+cpu"):
        pytest.skip("needs the CPU build of torch")
    install_fake(tmp_path, "0.28.0")
    # Without swiftcli, transformers trips over it when a model class loads.
    plain = run(tmp_path, "from transformers import LlamaForCausalLM")
    assert plain.returncode != 0 and "torchvision::nms" in plain.stderr
    done = run(tmp_path, "import swiftcli, importlib.util\n"
                         "assert importlib.util.find_spec('torchvision') is None\n"
                         "from transformers import LlamaForCausalLM\nprint('loaded')")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "loaded"


def test_a_torchvision_built_for_the_cpu_torch_is_left_alone(tmp_path):
    import importlib.metadata

    if not importlib.metadata.version("torch").endswith("+cpu"):
        pytest.skip("needs the CPU build of torch")
    install_fake(tmp_path, "0.28.0+cpu")
    done = run(tmp_path, "import swiftcli, importlib.util\nprint(importlib.util.find_spec('torchvision') is not None)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
