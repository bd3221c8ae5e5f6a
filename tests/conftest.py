"""Shared fixtures: one real vLLM engine on the embedded model per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


@pytest.fixture(scope="session")
def embedded_spec():
    from swiftcli.config import resolve_model

    return resolve_model()


@pytest.fixture(scope="session")
def vllm_engine(embedded_spec):
    from swiftcli import get_vllm_engine

    engine = get_vllm_engine("smollm2-135m-instruct")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def lora_ckpt(embedded_spec, tmp_path_factory):
    """A LoRA checkpoint on the embedded model (peft adapter + sft_args.json), as ms-swift 2.x writes one."""
    from checkpoints import make_lora_adapter

    root = tmp_path_factory.mktemp("lora")
    return make_lora_adapter(embedded_spec.model_dir, root / "checkpoint-10")
