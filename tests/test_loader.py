"""swiftcli.load and the backend table: fast checks with no engine, plus a user-registered backend served by the
async path (a fake engine is fine here: what is tested is the registration, not generation)."""

from __future__ import annotations

import asyncio
import pathlib
import re

import pytest

import swiftcli
from swiftcli.config.spec import EngineConfig, GenerationConfig
from swiftcli.engines import (
    BACKENDS,
    backend_capabilities,
    capabilities_of,
    create_async_engine,
    register_backend,
    require_capability,
)
from swiftcli.engines.base import Completion, EngineCapabilities, EngineRequest, RequestResult
from swiftcli.errors import UsageError


class EchoEngine:
    """Answers every prompt with its own token ids, one token per step."""

    backend = "echo"

    def __init__(self, spec, config):
        self.spec, self.config = spec, config
        self.hf_tokenizer = None
        self.generation_config = GenerationConfig()
        self.max_model_len = 64
        self.closed = False

    def stream(self, requests):
        for request in requests:
            for n in range(1, len(request.prompt_ids) + 1):
                done = n == len(request.prompt_ids)
                yield RequestResult(request.request_id, len(request.prompt_ids),
                                    [Completion(0, "", request.prompt_ids[:n], "stop" if done else None)], done)

    def abort(self, request_ids):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def echo_backend():
    register_backend("echo", sync=f"{__name__}:EchoEngine")
    yield "echo"
    BACKENDS.pop("echo")


def test_user_backend_serves_the_async_path(echo_backend, embedded_spec):
    async def run():
        engine = create_async_engine(embedded_spec, EngineConfig(), echo_backend)
        request = EngineRequest([5, 6, 7], GenerationConfig(max_new_tokens=3))
        states = [s async for s in engine.generate(request)]
        await engine.aclose()
        return engine, states

    engine, states = asyncio.run(run())
    assert type(engine).__name__ == "ThreadedAsyncEngine" and engine.backend == "echo"
    assert states[-1].finished and states[-1].outputs[0].token_ids == [5, 6, 7]
    assert engine.engine.closed


def test_load_refuses_bad_sampling_before_resolving_the_model():
    with pytest.raises(UsageError, match="temperature must be >= 0"):
        swiftcli.load("no-such-model-type", generation={"temperature": -1})


def test_a_thinking_switch_the_template_lacks_is_refused_before_the_engine_starts(monkeypatch):
    from swiftcli.errors import TemplateError

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine must not start")

    monkeypatch.setattr("swiftcli.engines.loader.start_engine", no_engine)
    with pytest.raises(TemplateError, match="has no thinking switch"):
        swiftcli.load(None, generation={"enable_thinking": True})
    from typer.testing import CliRunner

    from swiftcli.cli.main import app

    result = CliRunner().invoke(app, ["infer", "--enable_thinking", "true", "--query", "Hi"], env={"COLUMNS": "120"})
    assert result.exit_code == 1 and "no thinking switch" in result.output and "Traceback" not in result.output


def test_get_vllm_engine_names_arguments_it_cannot_honour():
    with pytest.raises(TypeError, match="max_num_batched_tokenz"):
        swiftcli.get_vllm_engine("smollm2-135m-instruct", max_num_batched_tokenz=8)


def test_one_place_builds_engines():
    """Commands, the ms-swift API and fixtures all start engines through swiftcli.engines.loader.start_engine."""
    root = pathlib.Path(swiftcli.__file__).parent
    callers = []
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"\b(create_engine|create_async_engine)\(", text):
            line = text[:match.start()].count("\n") + 1
            if not text[text.rfind("\n", 0, match.start()) + 1:match.start()].lstrip().startswith("def "):
                callers.append(f"{path.relative_to(root)}:{line}")
    assert sorted({c.split(":")[0] for c in callers}) == ["engines/__init__.py", "engines/loader.py"], callers


def test_a_typed_temperature_turns_sampling_on_over_a_greedy_default():
    from swiftcli.engines.loader import merge_generation

    greedy = {"temperature": 0.0, "do_sample": False}
    config = merge_generation(GenerationConfig(), {"temperature": 0.7}, **greedy)
    assert config.do_sample and config.temperature == 0.7
    assert merge_generation(GenerationConfig(), {}, **greedy).greedy
    assert merge_generation(GenerationConfig(), {"temperature": 0.7, "do_sample": False}, **greedy).greedy
    # `--do_sample true` alone asks for sampling: at the model's temperature, not the command's greedy 0.
    asked = merge_generation(GenerationConfig(), {"do_sample": True}, **greedy)
    assert not asked.greedy and asked.temperature == 0.3
    assert not merge_generation(GenerationConfig(), {"do_sample": True}, temperature=0.0,
                                repetition_penalty=1.1).greedy


def test_stop_strings_given_on_the_command_line_are_kept():
    config = GenerationConfig(stop=["a"]).copy(stop=["Paris"])
    assert config.stop == ["Paris"] and GenerationConfig(stop=["a"]).copy().stop == ["a"]


# --- capabilities: what a backend can do is declared, not guessed from its name


class GuidedEchoEngine(EchoEngine):
    """EchoEngine that declares structured output and final-only results, and records what it was asked."""

    capabilities = EngineCapabilities(structured_output=True, final_results=True)

    def __init__(self, spec, config):
        super().__init__(spec, config)
        self.guided: list[dict | None] = []
        self.final_calls = 0

    def stream(self, requests):
        self.guided.extend(r.guided for r in requests)
        return super().stream(requests)

    def final_results(self, requests):
        self.final_calls += 1
        return (r for r in self.stream(requests) if r.finished)


@pytest.fixture
def guided_backend():
    register_backend("echo-guided", sync=f"{__name__}:GuidedEchoEngine")
    yield "echo-guided"
    BACKENDS.pop("echo-guided")


def _guided_run(backend, spec):
    async def run():
        engine = create_async_engine(spec, EngineConfig(), backend)
        try:
            request = EngineRequest([5, 6], GenerationConfig(max_new_tokens=2))
            states = [s async for s in engine.generate(request, guided={"choice": ["yes", "no"]})]
        finally:
            await engine.aclose()
        return engine, states

    return asyncio.run(run())


def test_a_backend_that_declares_structured_output_gets_constraints(guided_backend, embedded_spec):
    engine, states = _guided_run(guided_backend, embedded_spec)
    assert engine.capabilities.structured_output and not engine.capabilities.runtime_lora
    assert engine.engine.guided == [{"choice": ["yes", "no"]}] and states[-1].finished
    require_capability(guided_backend, "structured_output", "response_format")  # no error


def test_a_backend_that_declares_nothing_is_refused_by_name(echo_backend, embedded_spec):
    from swiftcli.errors import InputError

    assert backend_capabilities(echo_backend) == EngineCapabilities()  # the conservative default
    with pytest.raises(InputError, match="structured outputs.*echo has none"):
        _guided_run(echo_backend, embedded_spec)
    with pytest.raises(UsageError, match="--lora_modules needs a backend with adapters added at runtime, which "
                                         "the echo backend does not have") as caught:
        require_capability(echo_backend, "runtime_lora", "--lora_modules", asynchronous=True)
    assert caught.value.hint == "use --infer_backend vllm"


def test_final_only_results_are_used_when_declared(guided_backend, echo_backend, embedded_spec):
    from swiftcli.engines.base import generate_all

    request = EngineRequest([1, 2, 3], GenerationConfig(max_new_tokens=3))
    guided = GuidedEchoEngine(embedded_spec, EngineConfig())
    assert generate_all(guided, [request])[0].outputs[0].token_ids == [1, 2, 3] and guided.final_calls == 1
    plain = EchoEngine(embedded_spec, EngineConfig())
    assert capabilities_of(plain) == EngineCapabilities()
    assert generate_all(plain, [request])[0].finished


def test_builtin_backends_declare_what_they_can_do():
    vllm, pt = backend_capabilities("vllm"), backend_capabilities("pt")
    assert vllm.lora and vllm.runtime_lora and vllm.structured_output and vllm.final_results
    assert pt.lora and pt.prompt_logprobs and not pt.structured_output and not pt.runtime_lora
    assert not backend_capabilities("pt", asynchronous=True).runtime_lora
    assert backend_capabilities("vllm", asynchronous=True).runtime_lora
