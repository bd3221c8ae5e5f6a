"""The benchmark scripts compare like with like: vLLM's reference server gets swiftcli's own engine arguments."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_reference_server_flags_are_swiftclis_engine_args(embedded_spec):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from serve import Setup, server_command
    finally:
        sys.path.remove(str(BENCHMARKS))
    from swiftcli.config import EngineConfig
    from swiftcli.engines.vllm import engine_args

    setup = Setup(str(embedded_spec.model_dir), "m", 1, {"max_model_len": 1024}, 32)
    command = server_command("vllm", setup, 18000)
    expected = engine_args(embedded_spec, EngineConfig(max_num_seqs=32, engine_kwargs={"max_model_len": 1024}))
    flags = " ".join(command)
    assert f"--dtype {expected['dtype']}" in flags and "--max-num-seqs 32" in flags
    assert "--max-model-len 1024" in flags
    ours = server_command("swiftcli", setup, 18001)
    assert ours[ours.index("--engine_kwargs") + 1] == '{"max_model_len": 1024}'
    assert ours[ours.index("--max_num_seqs") + 1] == "32"
    assert ("--enforce-eager" in command) == bool(expected["enforce_eager"])
    for key in ("gpu_memory_utilization", "kv_cache_memory_bytes"):
        if key in expected:
            assert f"--{key.replace('_', '-')} {expected[key]}" in flags
        else:
            assert f"--{key.replace('_', '-')}" not in flags


def test_load_generator_keeps_its_collector_out_of_a_load():
    import gc

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from serve import client_gc
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert gc.isenabled()
    with client_gc(False) as pauses:
        assert not gc.isenabled(), "a full collection would stall every stream in flight"
        gc.collect()  # one made anyway is reported
    assert gc.isenabled() and len(pauses) == 1, "only the collection inside the load is reported"
    with client_gc(True):
        assert gc.isenabled()
