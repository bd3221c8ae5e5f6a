"""Shared fixtures: one real vLLM engine on the embedded model per test session."""

from __future__ import annotations

import os
import signal

import pytest
from engine_lending import lend

# A suite started as a background job (`make test &`) ignores SIGINT, and every command a test starts would inherit
# that and ignore the Ctrl-C a test sends it. Tests get Ctrl-C as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
# Engines that tests start (in process and in subprocesses) share 2 cores and a few GiB: keep KV caches small.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def pytest_configure(config):
    """Under pytest-xdist (`-n N`), each test process and what it starts compute on one thread (OMP_NUM_THREADS,
    set before torch loads): on 2 cores, two processes whose torch work (the pt backend, transformers references,
    quantizing) ran on as many threads as there are cores would wait on each other's threads. vLLM's engines
    already step on one torch thread, and bind a core per worker where there are several."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")


# On CPU swiftcli runs one worker inside the process that drives it (engines.parallel.worker_in_process): the
# session engines and the commands tests start run that way, as a user's do. vLLM's own layout (engine core and
# worker processes) is what data, tensor and pipeline parallel run in, and what
# server_utils.command_env(one_process=False) asks for.


@pytest.fixture
def lend_session_engine(vllm_engine, monkeypatch):
    """Every `swiftcli.load` in this test gets the session vLLM engine instead of starting one."""
    lend(monkeypatch, vllm_engine)
    return vllm_engine


@pytest.fixture(scope="session")
def embedded_spec():
    from swiftcli.hub.resolve import resolve_model

    return resolve_model()


@pytest.fixture(scope="session")
def vllm_engine(embedded_spec):
    from swiftcli import get_vllm_engine

    # LoRA support on from the start, so LoRA tests share this engine instead of starting another.
    engine = get_vllm_engine("smollm2-135m-instruct", enable_lora=True, max_lora_rank=8)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def pt_engine(embedded_spec):
    """The transformers backend on the embedded model, float32 like the vLLM CPU default."""
    from swiftcli.config import EngineConfig
    from swiftcli.engines import create_engine

    # Not through swiftcli.load: a test that lends engines by patching the loader must not turn this into one.
    engine = create_engine(embedded_spec, EngineConfig(dtype="float32"), backend="pt")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def lora_ckpt(embedded_spec, tmp_path_factory):
    """A LoRA checkpoint on the embedded model (peft adapter + sft_args.json), as ms-swift 2.x writes one."""
    from checkpoints import make_lora_adapter

    root = tmp_path_factory.mktemp("lora")
    return make_lora_adapter(embedded_spec.model_dir, root / "checkpoint-10")


@pytest.fixture(scope="session")
def deploy_server():
    """One real `swiftcli deploy` server (vLLM, embedded model) for the whole session, on a free port of
    127.0.0.1: `.base_url` is `http://127.0.0.1:PORT/v1`, `.root_url` without /v1, `.pid`, `.stop()`."""
    from server_utils import start_server

    # Requests without max_tokens stop at 128 new tokens: a 135M model can ramble for its whole context. `-v`:
    # its log holds what a verbose deploy logs (test_scheduler reads the budgets there).
    server = start_server(["--max_new_tokens", "128", "-v"])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lora_run(embedded_spec, tmp_path_factory):
    """A training run folder with checkpoint-10/-20/-30 of one LoRA adapter (growing), each with trainer_state.json;
    the run folder's name is its path's last part, as ms-swift's output/v0-... folders."""
    from checkpoints import make_training_run

    root = tmp_path_factory.mktemp("train") / "v0-20260101-000000"
    make_training_run(embedded_spec.model_dir, root)
    return root


# Tests that use these start (or share) a real engine, server or model: they are `slow` whether or not they say
# so, so that `pytest -m "not slow"` is the quick loop the README promises.
HEAVY_FIXTURES = {"vllm_engine", "pt_engine", "deploy_server", "lend_session_engine", "lora_ckpt", "lora_run",
                  "tiny_vlm", "vlm_engine"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


QUICK_TEST_SECONDS = 10.0
_unmarked_slow: list[tuple[str, float]] = []


def pytest_runtest_logreport(report):
    """Note tests that took long without the `slow` marker: they belong out of the quick loop."""
    if report.when == "call" and report.duration > QUICK_TEST_SECONDS and "slow" not in report.keywords:
        _unmarked_slow.append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter):
    if _unmarked_slow:
        terminalreporter.section("tests over 10 s without the slow marker")
        for nodeid, seconds in _unmarked_slow:
            terminalreporter.write_line(f"{seconds:6.1f}s {nodeid}")


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory):
    """A tiny Idefics3 vision-language model with random weights (benchmarks/make_tiny_vlm.py), built once."""
    import sys
    from pathlib import Path

    benchmarks = str(Path(__file__).resolve().parent.parent / "benchmarks")
    sys.path.insert(0, benchmarks)
    try:
        from make_tiny_vlm import make_tiny_vlm
    finally:
        sys.path.remove(benchmarks)
    return make_tiny_vlm(tmp_path_factory.mktemp("vlm") / "tiny-idefics3")


@pytest.fixture(scope="session")
def vlm_engine(tiny_vlm):
    """One vLLM engine on the tiny vision-language model (float32, up to 4 images a prompt) for the session."""
    from swiftcli.config import EngineConfig
    from swiftcli.engines import create_engine
    from swiftcli.hub.resolve import resolve_model

    spec = resolve_model(model_id_or_path=str(tiny_vlm))
    engine = create_engine(spec, EngineConfig(dtype="float32", max_model_len=1024, max_num_seqs=4,
                                              limit_mm_per_prompt={"image": 4}), backend="vllm")
    yield engine
    engine.close()
