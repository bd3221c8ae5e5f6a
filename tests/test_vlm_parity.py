"""Images through swiftcli's prompt path into vLLM, checked against transformers on the same tiny Idefics3.

Parity is the test of the plumbing: the prompt token ids the engine runs (image placeholders expanded) equal
transformers' `processor.apply_chat_template` + processor output, and greedy float32 tokens equal transformers'
generate, for one image, two images and an image in the second turn.
"""

from __future__ import annotations

import base64
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import generate_all
from swiftcli.generation.core import encode_request
from swiftcli.generation.media import MediaPolicy
from swiftcli.registry.templates import get_template

pytestmark = pytest.mark.slow
NEW_TOKENS = 8


def picture(seed: int, size: tuple[int, int] = (40, 48)) -> Image.Image:
    pixels = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8")
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    paths = {}
    for name, seed, size in (("a", 0, (40, 48)), ("b", 1, (70, 30)), ("c", 2, (20, 20))):
        paths[name] = root / f"{name}.png"
        picture(seed, size).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def hf_vlm(tiny_vlm):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm), dtype=torch.float32)
    return AutoProcessor.from_pretrained(str(tiny_vlm)), model


def _greedy() -> GenerationConfig:
    return GenerationConfig(max_new_tokens=NEW_TOKENS, temperature=0.0, do_sample=False, top_k=-1, top_p=1.0)


# (swiftcli request, the same conversation as transformers' content-part messages, image names in order)
CASES = {
    "one_image": (
        {"query": "<image>What is in the picture?", "images": ["a"]},
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the picture?"}]}],
    ),
    "two_images": (
        {"query": "Compare <image> with <image>, please.", "images": ["a", "b"]},
        [{"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image"},
                                      {"type": "text", "text": " with "}, {"type": "image"},
                                      {"type": "text", "text": ", please."}]}],
    ),
    "image_in_second_turn": (
        {"query": "<image>And this one?", "history": [["Hello there.", "Hi! Send me a picture."]],
         "images": ["c"]},
        [{"role": "user", "content": [{"type": "text", "text": "Hello there."}]},
         {"role": "assistant", "content": [{"type": "text", "text": "Hi! Send me a picture."}]},
         {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "And this one?"}]}],
    ),
}


def _request(case: str, images: dict[str, Path]) -> tuple[dict, list, list[Image.Image]]:
    request, messages = CASES[case]
    request = {**request, "images": [str(images[n]) for n in request["images"]]}
    pil = [Image.open(p).convert("RGB") for p in request["images"]]
    return request, messages, pil


def _hf_greedy(model, inputs) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("case", list(CASES))
def test_prompt_ids_and_greedy_tokens_match_transformers(case, images, vlm_engine, hf_vlm):
    processor, model = hf_vlm
    template = get_template("hf", vlm_engine.hf_tokenizer)
    request, messages, pil = _request(case, images)
    encoded = encode_request(template, request, _greedy())
    inputs = processor(text=processor.apply_chat_template(messages, add_generation_prompt=True), images=pil,
                       return_tensors="pt")
    expected_ids = inputs["input_ids"][0].tolist()
    # Looking at the expanded prompt first must not change what the engine then runs with the same images.
    assert vlm_engine.prompt_token_ids(encoded) == expected_ids
    assert sum(t == model.config.image_token_id for t in expected_ids) >= len(pil) * 4
    (result,) = generate_all(vlm_engine, [encoded])
    assert result.prompt_tokens == len(expected_ids)  # usage counts the image tokens
    expected_tokens = _hf_greedy(model, inputs)
    assert len(expected_tokens) == NEW_TOKENS
    assert result.outputs[0].token_ids == expected_tokens


def test_text_turns_give_transformers_greedy_tokens(vlm_engine, hf_vlm):
    processor, model = hf_vlm
    template = get_template("hf", vlm_engine.hf_tokenizer)
    request = {"query": "Describe a sunny day.", "history": [["Hello there.", "Hi!"]]}
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hello there."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]},
                {"role": "user", "content": [{"type": "text", "text": "Describe a sunny day."}]}]
    inputs = processor(text=processor.apply_chat_template(messages, add_generation_prompt=True),
                       return_tensors="pt")
    (result,) = generate_all(vlm_engine, [encode_request(template, request, _greedy())])
    assert result.outputs[0].token_ids == _hf_greedy(model, inputs)


def _first_logprobs(engine, template, ref) -> dict[int, float]:
    config = GenerationConfig(max_new_tokens=1, temperature=0.0, do_sample=False, logprobs=5)
    encoded = encode_request(template, {"query": "<image>Describe.", "images": [ref]}, config)
    (result,) = generate_all(engine, [encoded])
    steps = result.outputs[0].logprobs
    assert steps
    return steps[0]


def test_changing_one_pixel_region_changes_the_logits(vlm_engine, tmp_path):
    template = get_template("hf", vlm_engine.hf_tokenizer)
    original = picture(5, (32, 32))
    edited = original.copy()
    edited.paste((255, 0, 0), (0, 0, 8, 8))  # one 8x8 patch of the 32x32 tile
    same = _first_logprobs(vlm_engine, template, original.copy())
    assert _first_logprobs(vlm_engine, template, original) == same  # the check itself is deterministic
    changed = _first_logprobs(vlm_engine, template, edited)
    assert changed != same


class _Images(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_same_image_by_file_data_uri_and_url_gives_the_same_tokens(vlm_engine, images):
    data = images["a"].read_bytes()
    handler = type("Handler", (_Images,), {"body": data})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        refs = {
            "file": str(images["a"]),
            "data_uri": "data:image/png;base64," + base64.b64encode(data).decode(),
            "url": f"http://127.0.0.1:{server.server_address[1]}/a.png",
        }
        policy = MediaPolicy(allow_any_local=True, allowed_domains=("127.0.0.1/32",))
        template = get_template("hf", vlm_engine.hf_tokenizer)
        encoded = [encode_request(template, {"query": "<image>What is it?", "images": [ref]}, _greedy(),
                                  media_policy=policy) for ref in refs.values()]
        results = generate_all(vlm_engine, encoded)
    finally:
        server.shutdown()
        server.server_close()
    tokens = {name: r.outputs[0].token_ids for name, r in zip(refs, results, strict=True)}
    assert len(tokens["file"]) > 0
    assert tokens["file"] == tokens["data_uri"] == tokens["url"]
    ids = {vlm_engine.prompt_token_ids(e).__len__() for e in encoded}
    assert len(ids) == 1


def test_image_decoded_from_bytes_matches_the_file(images):
    from swiftcli.generation.media import load_image

    by_file = load_image(str(images["b"]))
    buf = io.BytesIO(images["b"].read_bytes())
    assert load_image(buf.getvalue()).sha256 == by_file.sha256
