"""The transformers backend on the embedded model: batching with left padding, streaming, abort, the pt API."""

from __future__ import annotations

import time

from swiftcli import get_template, inference, inference_stream
from swiftcli.config import GenerationConfig
from swiftcli.engines.base import EngineRequest, generate_all

QUESTIONS = ["What is the capital of France?", "Hi", "List three fruits, one per line, with no other text."]


def _requests(template, questions, **config):
    config = GenerationConfig(**{"max_new_tokens": 24, "temperature": 0.0, "do_sample": False, **config})
    return [EngineRequest(template.encode(q), config, stop_token_ids=template.stop_token_ids) for q in questions]


def test_left_padded_batch_equals_one_by_one(pt_engine, embedded_spec):
    template = get_template(embedded_spec.template_type, pt_engine.hf_tokenizer)
    batch = generate_all(pt_engine, _requests(template, QUESTIONS))
    alone = [generate_all(pt_engine, _requests(template, [q]))[0] for q in QUESTIONS]
    assert [r.outputs[0].token_ids for r in batch] == [r.outputs[0].token_ids for r in alone]
    assert "Paris" in batch[0].outputs[0].text
    assert batch[0].outputs[0].finish_reason == "stop"
    assert batch[2].prompt_tokens == len(template.encode(QUESTIONS[2]))


def test_pt_and_vllm_agree_greedily_in_float32(pt_engine, vllm_engine, embedded_spec):
    template = get_template(embedded_spec.template_type, pt_engine.hf_tokenizer)
    pt = generate_all(pt_engine, _requests(template, QUESTIONS[:2], max_new_tokens=12))
    vl = generate_all(vllm_engine, _requests(template, QUESTIONS[:2], max_new_tokens=12))
    assert [r.outputs[0].token_ids for r in pt] == [r.outputs[0].token_ids for r in vl]


def test_closing_the_stream_stops_generation(pt_engine, embedded_spec):
    template = get_template(embedded_spec.template_type, pt_engine.hf_tokenizer)
    [request] = _requests(template, ["Write a very long story about a dragon."], max_new_tokens=400)
    stream = pt_engine.stream([request])
    seen = 0
    for result in stream:
        seen = result.output_tokens
        if seen >= 5:
            break
    started = time.monotonic()
    stream.close()  # must not wait for the remaining ~395 tokens
    assert time.monotonic() - started < 5
    assert seen >= 5
    # the engine is free for the next request at once
    assert "Paris" in generate_all(pt_engine, _requests(template, [QUESTIONS[0]]))[0].outputs[0].text


def test_pt_api_single_and_streaming(pt_engine, embedded_spec):
    template = get_template(embedded_spec.template_type, pt_engine.hf_tokenizer)
    config = GenerationConfig(max_new_tokens=24, temperature=0.0, do_sample=False)
    response, history = inference(pt_engine, template, QUESTIONS[0], generation_config=config)
    assert "Paris" in response and history == [[QUESTIONS[0], response]]
    parts = [r for r, _ in inference_stream(pt_engine, template, "And of Italy?", history, generation_config=config)]
    assert len(parts) > 1 and parts[-1].startswith(parts[len(parts) // 2])
