"""The benchmark scripts compare like with like: vLLM's reference server gets swiftcli's own engine arguments."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_reference_server_flags_are_swiftclis_engine_args(embedded_spec):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from serve import server_command
    finally:
        sys.path.remove(str(BENCHMARKS))
    from swiftcli.config import EngineConfig
    from swiftcli.engines.vllm import engine_args

    command = server_command("vllm", str(embedded_spec.model_dir), "m", 18000, 32)
    expected = engine_args(embedded_spec, EngineConfig(max_num_seqs=32))
    flags = " ".join(command)
    assert f"--dtype {expected['dtype']}" in flags and "--max-num-seqs 32" in flags
    assert ("--enforce-eager" in command) == bool(expected["enforce_eager"])
    for key in ("gpu_memory_utilization", "kv_cache_memory_bytes"):
        if key in expected:
            assert f"--{key.replace('_', '-')} {expected[key]}" in flags
        else:
            assert f"--{key.replace('_', '-')}" not in flags
