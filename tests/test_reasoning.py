"""Reasoning and structured outputs on the session vLLM engine: `--structured_output` in `infer` and the Python
API, thinking kept apart in dataset results, and the server's reasoning parser end to end.

The 135M model does not think by itself: a regex constraint makes it write `<think>…</think>answer`. The engine
has no reasoning parser of its own, so the constraint covers the whole answer, think block included.
"""

from __future__ import annotations

import json
import re
import threading
import time

import openai
import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app

THINK = r"<think>\n[a-z ]{3,30}\n</think>\n\n(Paris|Rome)"
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def template(embedded_spec, vllm_engine):
    from swiftcli.registry.templates import get_template

    return get_template(embedded_spec.template_type, vllm_engine.hf_tokenizer, embedded_spec.default_system)


def test_infer_structured_output_choice(lend_session_engine):
    result = CliRunner().invoke(app, ["infer", "--query", QUESTION, "--structured_output",
                                      '{"choice": ["Paris", "Rome"]}'])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() in ("Paris", "Rome")


@pytest.mark.parametrize(("value", "message"), [
    ("{not json", "not valid JSON"), ('{"choices": ["a"]}', "unknown constraint"), ('{"choice": []}', "non-empty"),
    ('{"regex": "a", "choice": ["a"]}', "one of"),
])
def test_infer_bad_structured_output_fails_before_loading(monkeypatch, value, message):
    def no_engine(*_):
        raise AssertionError("the engine must not start")

    monkeypatch.setattr("swiftcli.engines.loader.start_engine", no_engine)
    result = CliRunner().invoke(app, ["infer", "--query", "x", "--structured_output", value])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_python_api_structured_outputs(vllm_engine, template):
    from swiftcli import inference_vllm
    from swiftcli.config.spec import GenerationConfig

    config = GenerationConfig(temperature=0, do_sample=False, max_new_tokens=20)
    requests = [{"query": QUESTION, "structured_outputs": {"regex": r"[A-Z][a-z]{2,12} is the capital\."}},
                {"query": QUESTION, "structured_outputs": {"choice": ["Paris", "Rome"]}}]
    regex, choice = inference_vllm(vllm_engine, template, requests, generation_config=config)
    assert re.fullmatch(r"[A-Z][a-z]{2,12} is the capital\.", regex["response"])
    assert choice["response"] in ("Paris", "Rome")


def test_dataset_rows_keep_reasoning_apart(lend_session_engine, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"query": QUESTION, "response": "Paris"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["infer", "--val_dataset", str(data), "--result_file", str(out),
                                      "--max_new_tokens", "40", "--structured_output", json.dumps({"regex": THINK})])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())
    assert row["response"] in ("Paris", "Rome")
    assert re.fullmatch(r"[a-z ]{3,30}\n", row["reasoning"])


def test_eval_scores_the_answer_without_thinking():
    from swiftcli.generation.thinking import split_thinking
    from swiftcli.registry.templates import get_template

    assert split_thinking(get_template("qwen3"), "<think>\nhmm\n</think>\n\nB") == ("hmm\n", "B")
    assert split_thinking(get_template("smollm2"), "B, because <think> is text") == (None, "B, because <think> is text")


@pytest.fixture(scope="module")
def reasoning_server(vllm_engine, template):
    """The session engine behind the real app with `--reasoning_parser qwen3`, on 127.0.0.1 (uvicorn thread)."""
    import uvicorn
    from server_utils import free_port

    from swiftcli.engines.threaded import ThreadedAsyncEngine
    from swiftcli.server.app import ServerSettings, create_app

    settings = ServerSettings(reasoning_parser="qwen3", default_max_tokens=60)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, engine=ThreadedAsyncEngine(vllm_engine),
                                                      template=template), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "the app did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(30)


def test_reasoning_parser_end_to_end(reasoning_server):
    with openai.OpenAI(base_url=reasoning_server, api_key="EMPTY", max_retries=0, timeout=120) as client:
        kwargs = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": QUESTION}],
                  "temperature": 0, "max_tokens": 40, "extra_body": {"structured_outputs": {"regex": THINK}}}
        message = client.chat.completions.create(**kwargs).choices[0].message
        extra = message.model_extra
        assert message.content in ("Paris", "Rome")
        assert re.fullmatch(r"[a-z ]{3,30}\n", extra["reasoning_content"]) and extra["reasoning"] == \
            extra["reasoning_content"]
        reasoning = content = ""
        for chunk in client.chat.completions.create(stream=True, **kwargs):
            for choice in chunk.choices:
                reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
                content += choice.delta.content or ""
        assert (reasoning, content) == (extra["reasoning_content"], message.content)
        plain = client.chat.completions.create(**{**kwargs, "extra_body": {}}).choices[0].message
        assert plain.content and plain.model_extra["reasoning_content"] is None  # no think block: all content


@pytest.mark.parametrize("show", [True, False])
def test_chat_view_shows_thinking_dimmed_or_hides_it(show):
    import io

    from rich.console import Console

    from swiftcli.cli.chat_thinking import ThinkingAnswerView
    from swiftcli.registry.templates import get_template

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=80)
    text = "<think>\nthe user wants a city\n</think>\n\nParis."
    with ThinkingAnswerView(console, False, get_template("qwen3"), show) as view:
        for end in range(1, len(text) + 1, 3):
            view.update(text[:end])
        view.update(text, final=True)
    raw = out.getvalue()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    assert "Paris." in shown and "<think>" not in shown
    assert ("the user wants a city\n\nParis." in shown) is show
    assert ("\x1b[2m" in raw) is show  # dimmed


def test_chat_think_command(lend_session_engine):
    script = "/think on\n/think hide\n/think maybe\n" + QUESTION + "\n/exit\n"
    result = CliRunner().invoke(app, ["chat", "--no-markdown", "--temperature", "0", "--max_new_tokens", "20"],
                                input=script)
    assert result.exit_code == 0, result.output
    assert "no thinking switch" in result.output and "hidden" in result.output
    assert "usage: /think on|off|show|hide" in result.output and "Paris" in result.output


def test_pt_backend_honours_min_tokens_and_refuses_vllm_only_fields(pt_engine, embedded_spec):
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.engines.base import generate_all
    from swiftcli.errors import InputError
    from swiftcli.generation.core import encode_request
    from swiftcli.registry.templates import get_template

    template = get_template(embedded_spec.template_type, pt_engine.hf_tokenizer, embedded_spec.default_system)
    base = GenerationConfig(temperature=0, do_sample=False, max_new_tokens=6)
    short = generate_all(pt_engine, [encode_request(template, {"query": "Say hi."}, base.copy(max_new_tokens=30))])
    assert short[0].output_tokens < 30  # it stops by itself...
    forced = base.copy(max_new_tokens=short[0].output_tokens + 3, min_tokens=short[0].output_tokens + 3)
    (result,) = generate_all(pt_engine, [encode_request(template, {"query": "Say hi."}, forced)])
    assert result.output_tokens == short[0].output_tokens + 3  # ...and min_tokens keeps it going
    for config, request in ((base.copy(logit_bias={5: 3.0}), {"query": "x"}),
                            (base, {"query": "x", "structured_outputs": {"choice": ["a"]}})):
        with pytest.raises(InputError, match="vllm backend"):
            generate_all(pt_engine, [encode_request(template, request, config)])
