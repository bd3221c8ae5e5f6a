"""Export outputs are reused only when their recorded settings match, and a crash between the two renames of a
replacement never loses the previous output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def adapter(lora_ckpt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reuse") / "checkpoint-10"
    shutil.copytree(lora_ckpt, folder)
    return folder


def _weights_dtype(folder: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(next(folder.glob("*.safetensors"))), "pt") as f:
        name = next(k for k in f.keys() if k.endswith("q_proj.weight"))
        return str(f.get_tensor(name).dtype)


def test_merge_is_redone_when_the_dtype_differs(adapter, tmp_path):
    from swiftcli.export.atomic import read_marker
    from swiftcli.export.merge import merge_lora

    out = tmp_path / "merged"
    messages: list[str] = []
    first = merge_lora(adapter, out, dtype="bf16", verify=False, on_message=messages.append)
    assert not first.reused and _weights_dtype(out) == "torch.bfloat16"
    second = merge_lora(adapter, out, dtype="fp32", verify=False, on_message=messages.append)
    assert not second.reused, "a bf16 merge must not be returned for fp32"
    assert any("merged as bfloat16, not float32" in m for m in messages)
    assert read_marker(out)["dtype"] == "float32" and _weights_dtype(out) == "torch.float32"
    assert merge_lora(adapter, out, dtype="fp32", verify=False).reused


def test_quantized_output_is_redone_when_group_size_or_bits_differ(embedded_spec, tmp_path, monkeypatch):
    import swiftcli.export.quantize as quantize
    from swiftcli.export.atomic import read_marker

    builds: list[tuple[int, int]] = []

    def record_build(spec, temp, target, opts, group_size, trust_remote_code, say):
        # The real GPTQ pass takes minutes on CPU; the reuse decision is what is under test here.
        builds.append((opts.bits, group_size))
        (temp / "model.safetensors").write_bytes(b"")

    monkeypatch.setattr(quantize, "_quantize_into", record_build)
    out = tmp_path / "q"
    messages: list[str] = []

    def run(**kwargs):
        opts = quantize.QuantOptions(**kwargs)
        return quantize.quantize_model(opts, model_id_or_path=str(embedded_spec.model_dir), output_dir=out,
                                       on_message=messages.append)

    assert not run(bits=4, group_size=64).reused
    assert run(bits=4, group_size=64).reused
    assert not run(bits=4, group_size=32).reused
    assert any("other group_size" in m for m in messages)
    assert not run(bits=8, group_size=32).reused
    assert not run(bits=8, group_size=32, n_samples=16).reused
    assert builds == [(4, 64), (4, 32), (8, 32), (8, 32)]
    assert read_marker(out)["group_size"] == 32 and read_marker(out)["n_samples"] == 16


CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from swiftcli.export import atomic

    renames = []
    real_rename = os.rename

    def rename(src, dst):
        renames.append((src, dst))
        if len(renames) == 2:  # the new output is about to take the old one's place: die here
            os.kill(os.getpid(), signal.SIGKILL)
        real_rename(src, dst)

    atomic.os.rename = rename
    atomic.write_atomically(Path(sys.argv[1]), lambda d: (d / "weights").write_text("new"), force=True)
""")


def test_crash_between_the_renames_restores_the_previous_output(tmp_path):
    from swiftcli.export.atomic import is_complete, leftovers, write_atomically

    target = tmp_path / "out"
    write_atomically(target, lambda d: (d / "weights").write_text("old"))
    proc = subprocess.run([sys.executable, "-c", CRASH, str(target)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert not target.exists() and any(".old-" in p.name for p in leftovers(target))
    messages: list[str] = []
    written = write_atomically(target, lambda d: (d / "weights").write_text("rebuilt"), on_message=messages.append)
    assert not written, "the restored output is complete: reused, not rebuilt"
    assert (target / "weights").read_text() == "old" and is_complete(target)
    assert not leftovers(target)
    assert any("Restored" in m for m in messages)
    assert json.loads((target / ".swiftcli-complete").read_text())
