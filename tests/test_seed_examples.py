"""ms-swift's documented vLLM examples (examples/*.py: batch, streaming, the chatglm3 multi-turn one), word for
word but for the import line and the model type, run as `__main__`. `get_vllm_engine` hands back the session
engine so the examples don't each start one, and each example's cap of 256 new tokens runs as 48 (the 135M model
rambles to any cap, at about 10 tokens a second on 2 cores). Everything else is the real thing."""

from __future__ import annotations

from pathlib import Path

import pytest

import swiftcli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CAP = "llm_engine.generation_config.max_new_tokens = 256"


def run_as_main(name: str) -> dict:
    """Run the example's own source as `__main__`, its one line that sets the cap changed to 48."""
    path = EXAMPLES / name
    source = path.read_text(encoding="utf-8")
    assert source.count(CAP) == 1, f"{name} no longer sets its cap in one line: update CAP"
    scope = {"__name__": "__main__", "__file__": str(path)}
    exec(compile(source.replace(CAP, CAP.replace("256", "48")), str(path), "exec"), scope)
    return scope


@pytest.fixture
def run_example(vllm_engine, monkeypatch):
    def get_vllm_engine(model_type, *args, **kwargs):
        assert model_type == swiftcli.ModelType.smollm2_135m_instruct and not args and not kwargs
        return vllm_engine

    saved = vllm_engine.generation_config.copy()
    monkeypatch.setattr(swiftcli, "get_vllm_engine", get_vllm_engine)
    yield run_as_main
    vllm_engine.generation_config = saved


def test_batch_example(run_example, capsys):
    scope = run_example("vllm_batch.py")
    out = capsys.readouterr().out
    assert out.count("response: ") == 3
    history = scope["resp_list"][0]["history"]
    assert len(history) == 2 and history[0][0] == "浙江的省会在哪？" and all(turn[1] for turn in history)
    assert scope["template"].render("这有什么好吃的", history[:1]).count("<|im_start|>user") == 2


def test_streaming_example(run_example, capsys):
    scope = run_example("vllm_stream.py")
    out = capsys.readouterr().out
    assert out.count("response_list: ") > 2  # the answers grew token by token, not in one piece
    history, response = scope["history"], scope["response"]
    assert len(history) == 2 and history[1] == ["这有什么好吃的", response] and response
    assert "\ufffd" not in out  # no broken multi-byte characters mid-stream


def test_multi_turn_example(run_example, capsys):
    scope = run_example("vllm_multi_turn.py")
    assert "Paris" in scope["history"][0][1]
    final = scope["resp_list"][0]
    assert final["history"][0] == scope["history"][0] and final["response"]
