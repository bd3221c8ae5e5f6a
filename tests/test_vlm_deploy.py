"""`swiftcli deploy` of the tiny vision-language model, through the official `openai` client: images by URL, data
URI and file give transformers' greedy answer; every hostile image is a 400 with the reason, and the server keeps
serving."""

from __future__ import annotations

import base64
import http.server
import io
import os
import threading

import numpy as np
import openai
import pytest
from PIL import Image

pytestmark = pytest.mark.slow
NEW_TOKENS = 6
QUESTION = "What is in the picture?"


def png(seed: int, size=(40, 30)) -> bytes:
    pixels = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A media folder for --allowed_local_media_path, a secret outside it, and an image server on 127.0.0.1."""
    root = tmp_path_factory.mktemp("deploy-media")
    allowed = root / "allowed"
    allowed.mkdir()
    (allowed / "a.png").write_bytes(png(7))
    (allowed / "b.png").write_bytes(png(8))
    (root / "secret.png").write_bytes(png(9))
    os.symlink(root / "secret.png", allowed / "escape.png")
    handler = type("Handler", (_Handler,), {"routes": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    handler.routes.update({
        "/a.png": (200, {"Content-Type": "image/png"}, png(7)),
        "/page.html": (200, {"Content-Type": "text/html"}, b"<html></html>"),
        "/to-loopback": (302, {"Location": f"http://127.0.0.1:{port}/a.png"}, b""),
    })
    yield {"dir": allowed, "root": root, "url": f"http://localhost:{port}", "loopback": f"http://127.0.0.1:{port}"}
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def vlm_server(tiny_vlm, media):
    from server_utils import start_server

    server = start_server(["--model", str(tiny_vlm), "--dtype", "fp32", "--max_model_len", "1024",
                           "--max_num_seqs", "4", "--max_new_tokens", str(NEW_TOKENS),
                           "--limit_mm_per_prompt", '{"image": 2}', "--allowed_media_domains", "localhost",
                           "--allowed_local_media_path", str(media["dir"])])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(vlm_server):
    return openai.OpenAI(base_url=vlm_server.base_url, api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def served(client):
    return client.models.list().data[0].id


@pytest.fixture(scope="module")
def reference(tiny_vlm):
    """transformers' greedy answer and prompt length for QUESTION about a.png."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_vlm))
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm), dtype=torch.float32)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=text, images=[Image.open(io.BytesIO(png(7))).convert("RGB")], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    return processor.tokenizer.decode(new, skip_special_tokens=True), inputs["input_ids"].shape[1]


def ask(client, parts, **kwargs):
    model = client.models.list().data[0].id
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": parts}], temperature=0, max_tokens=NEW_TOKENS, **kwargs)


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def test_url_data_uri_and_file_give_the_same_answer_and_transformers_prompt(client, media, reference):
    _, prompt_tokens = reference
    refs = {"url": f"{media['url']}/a.png", "data_uri": data_uri(png(7)), "file": str(media["dir"] / "a.png")}
    answers = {}
    for name, ref in refs.items():
        reply = ask(client, [image_part(ref), {"type": "text", "text": QUESTION}])
        answers[name] = reply.choices[0].message.content
        assert reply.usage.prompt_tokens == prompt_tokens, name  # the image's tokens are counted
    answer = answers["file"]
    assert answer and answers["url"] == answer and answers["data_uri"] == answer
    assert answer == reference[0]  # transformers' greedy answer
    responses_style = ask(client, [{"type": "input_image", "image_url": refs["data_uri"]},
                                   {"type": "text", "text": QUESTION}])
    assert responses_style.choices[0].message.content == answer
    ms_swift_style = client.chat.completions.create(
        model=client.models.list().data[0].id, messages=[{"role": "user", "content": "<image>" + QUESTION}],
        temperature=0, max_tokens=NEW_TOKENS, extra_body={"images": [refs["data_uri"]]})
    assert ms_swift_style.choices[0].message.content == answer


def test_several_images_in_one_message_and_streaming(client, media):
    parts = [image_part(data_uri(png(7))), {"type": "text", "text": "and"}, image_part(data_uri(png(8)))]
    reply = ask(client, parts)
    single = ask(client, parts[:1])
    assert reply.usage.prompt_tokens > single.usage.prompt_tokens + 10
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in ask(client, parts, stream=True)
                       if chunk.choices)
    assert streamed == reply.choices[0].message.content


def hostile_requests(media) -> dict:
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, format="PNG")
    huge = io.BytesIO()
    Image.new("1", (5000, 5000)).save(huge, format="PNG")
    whole = png(3, (64, 64))
    flipped = bytearray(whole)
    flipped[200:260] = b"\xff" * 60  # inside the compressed pixel data
    return {
        "loopback URL": ([image_part(f"{media['loopback']}/a.png")], "private, loopback or link-local"),
        "link-local URL": ([image_part("http://169.254.169.254/latest/meta-data")], "private, loopback"),
        "redirect to loopback": ([image_part(f"{media['url']}/to-loopback")], "private, loopback"),
        "wrong content type": ([image_part(f"{media['url']}/page.html")], "content type text/html"),
        "path outside": ([image_part(str(media["root"] / "secret.png"))], "outside the allowed media"),
        "dot-dot": ([image_part(str(media["dir"] / ".." / "secret.png"))], "'..'"),
        "symlink escape": ([image_part(str(media["dir"] / "escape.png"))], "outside the allowed media"),
        "missing file": ([image_part(str(media["dir"] / "nope.png"))], "does not exist"),
        "decompression bomb": ([image_part(data_uri(bomb.getvalue()))], "decompression bomb"),
        "huge dimensions": ([image_part(data_uri(huge.getvalue()))], "5000x5000 pixels"),
        "truncated": ([image_part(data_uri(whole[: len(whole) // 2]))], "truncated or corrupt"),
        "corrupt": ([image_part(data_uri(bytes(flipped)))], "truncated or corrupt"),
        "unknown format": ([image_part(data_uri(b"GIF89a" + b"\0" * 64, "image/gif"))], "not an image in a known"),
        "not an image": ([image_part(data_uri(b"hello", "text/plain"))], "not an image"),
        "too many images": ([image_part(data_uri(png(1)))] * 3, "3 images, more than the 2"),
        "video": ([{"type": "video_url", "video_url": {"url": "http://example.com/a.mp4"}}],
                  "takes text and images, not videos"),
        "ftp": ([image_part("ftp://example.com/a.png")], "http, https or data"),
    }


def test_hostile_images_are_400s_with_the_reason_and_the_server_keeps_serving(client, media, vlm_server):
    for name, (parts, reason) in hostile_requests(media).items():
        with pytest.raises(openai.BadRequestError) as info:
            ask(client, [*parts, {"type": "text", "text": "?"}])
        message = info.value.body["message"] if isinstance(info.value.body, dict) else str(info.value)
        assert reason in message, (name, message)
        assert str(media["root"]) not in message, name  # no server paths leak
    assert vlm_server.process.poll() is None
    ok = ask(client, [image_part(data_uri(png(7))), {"type": "text", "text": QUESTION}])
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_a_text_only_server_refuses_images_with_a_400(deploy_server):
    text_only = openai.OpenAI(base_url=deploy_server.base_url, api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        parts = [image_part(data_uri(png(1))), {"type": "text", "text": "?"}]
        text_only.chat.completions.create(model=text_only.models.list().data[0].id,
                                          messages=[{"role": "user", "content": parts}], max_tokens=4)
    assert "takes text only, not images" in str(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        parts = [{"type": "video_url", "video_url": {"url": "http://169.254.169.254/a.mp4"}},
                 {"type": "text", "text": "?"}]
        text_only.chat.completions.create(model=text_only.models.list().data[0].id,
                                          messages=[{"role": "user", "content": parts}], max_tokens=4)
    assert "takes text only, not videos" in str(info.value)


def test_an_image_model_refuses_videos_in_ms_swift_form(client, served, vlm_server):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=served, messages=[{"role": "user", "content": "<video>What happens?"}],
                                       max_tokens=4, extra_body={"videos": ["http://169.254.169.254/a.mp4"]})
    assert "takes text and images, not videos" in str(info.value) and info.value.status_code == 400
    assert vlm_server.process.poll() is None


def test_the_pages_api_backend_sends_uploads_as_image_url_parts(vlm_server, served, media, reference):
    """app-ui --api_url: the page's uploads reach the server as image_url data URIs, in the history too."""
    import asyncio

    from swiftcli.config.spec import GenerationConfig
    from swiftcli.webui import ChatSettings, OpenAIChatBackend

    backend = OpenAIChatBackend(vlm_server.base_url, "none", served, GenerationConfig())
    settings = ChatSettings(None, 0.0, 1.0, NEW_TOKENS)
    picture = str(media["dir"] / "a.png")

    async def last(query, history, images):
        return [p async for p in backend.chat(query, history, settings, images)][-1]

    async def conversation():
        try:
            first = await last("<image>" + QUESTION, [], [picture])
            text = await last(QUESTION, [], [])
            again = await last("And?", [("<image>" + QUESTION, first.text)], [picture])
            return first, text, again
        finally:
            await backend.aclose()

    first, text, again = asyncio.run(conversation())
    answer, prompt_tokens = reference
    assert first.finished and first.text == answer
    assert first.prompt_tokens == prompt_tokens, "the server counted the image's tokens"
    assert text.prompt_tokens < prompt_tokens - 10, "without the image the prompt is shorter by its tokens"
    assert again.prompt_tokens > prompt_tokens, "the history's image is sent again"


def test_the_client_api_takes_images_like_ms_swift(vlm_server, media, reference):
    from swiftcli import XRequestConfig, inference_client

    config = XRequestConfig(max_tokens=NEW_TOKENS, temperature=0)
    # A local file goes inline; the tag-less query gets the image before its text.
    served = openai.OpenAI(base_url=vlm_server.base_url, api_key="none").models.list().data[0].id
    reply = inference_client(served, QUESTION, images=[str(media["dir"] / "a.png")], url=vlm_server.base_url,
                             request_config=config)
    direct = ask(openai.OpenAI(base_url=vlm_server.base_url, api_key="none", max_retries=0),
                 [image_part(data_uri(png(7))), {"type": "text", "text": QUESTION}])
    assert reply.choices[0].message.content == direct.choices[0].message.content
    assert reply.usage.prompt_tokens == reference[1]
