"""Fast tests of image input: the registry's vision models, placing images in prompts, and the media policy that
keeps a server from fetching what it must not (real HTTP servers on 127.0.0.1, real PIL decoding)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from swiftcli.config.spec import ModelSpec
from swiftcli.engines.modalities import check_accepts
from swiftcli.errors import InputError
from swiftcli.generation.media import MediaPolicy, check_address, load_image
from swiftcli.generation.vision import vision_messages
from swiftcli.registry import models as model_registry
from swiftcli.registry import templates as template_registry

SERVER_POLICY = MediaPolicy()
LOCAL_OK = MediaPolicy(allowed_domains=("127.0.0.1/32",), timeout_s=1.0, max_bytes=50_000)


def png_bytes(size=(16, 12), color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


# --- registry -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_type,template,video", [
    ("qwen2_5-vl-7b-instruct", "qwen2_5_vl", True), ("qwen2-vl-72b-instruct", "qwen2_vl", True),
    ("qwen3-vl-8b-instruct", "qwen3_vl", True), ("internvl3-8b", "internvl2_5", True),
    ("llava1_5-7b-hf", "llava1_5_hf", False), ("llava1_6-mistral-7b-hf", "llava_next_hf", False),
    ("smolvlm-256m-instruct", "smolvlm", False), ("gemma3-4b-it", "gemma3_vision", False),
    ("minicpm-v-2_6", "minicpmv2_6", True),
])
def test_vision_model_types_are_registered(model_type, template, video):
    info = model_registry.get(model_type)
    assert info.template == template and info.takes_images and ("video" in info.modalities) is video
    assert template_registry.get(template).name == "hf"  # prompted through the model's own chat template


def test_text_models_take_text_only():
    assert model_registry.get("qwen2_5-7b-instruct").modalities == ()


def test_a_local_directory_is_recognized_as_a_vision_model_from_its_config(tmp_path):
    from swiftcli.hub.resolve import resolve_model

    (tmp_path / "vlm").mkdir()
    (tmp_path / "vlm" / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "mystery", "vision_config": {}}))
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert resolve_model(model_id_or_path=str(tmp_path / "vlm")).modalities == ("image", "video")
    assert resolve_model(model_id_or_path=str(tmp_path / "other")).modalities == ("image",)
    assert resolve_model(model_id_or_path=str(tmp_path / "text")).modalities == ()


def test_models_command_shows_which_take_images(monkeypatch):
    from typer.testing import CliRunner

    from swiftcli.cli import output
    from swiftcli.cli.main import app

    # A terminal 220 columns wide. A console made while COLUMNS was set (pytest-xdist's workers start with
    # COLUMNS=80) keeps that width over a COLUMNS set later; `_width` is what Rich's width setter sets, and undoing
    # this gives the console back the width it had, fixed or not.
    monkeypatch.setattr(output.stdout, "_width", 220)

    result = CliRunner().invoke(app, ["models", "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["model_type"]: r for r in json.loads(result.stdout)}
    assert rows["qwen2_5-vl-7b-instruct"]["modalities"] == ["image", "video"]
    assert rows["smollm2-135m-instruct"]["modalities"] == []
    table = CliRunner().invoke(app, ["models"])
    line = next(row for row in table.stdout.splitlines() if "gemma3-4b-it" in row)
    assert "text+image" in line and "video" not in line


def test_a_text_only_model_refuses_images_by_name():
    spec = ModelSpec(Path("/m"), "qwen2_5-7b-instruct", "qwen2_5")
    with pytest.raises(InputError, match="takes text only, not images"):
        check_accepts(spec, {"image": [object()]})
    check_accepts(spec, {"image": []})
    vl = ModelSpec(Path("/m"), "x", "hf", modalities=("image",))
    check_accepts(vl, {"image": [object()]})
    with pytest.raises(InputError, match="not videos"):
        check_accepts(vl, {"video": [object()]})


# --- prompts --------------------------------------------------------------------------------------------------

def test_images_fill_the_tags_in_order_and_extra_images_go_first():
    messages = vision_messages("<image>A and <image>B", [["<image>first", "ok"]], None, 3)
    assert [p["type"] for p in messages[0]["content"]] == ["image", "text"]
    assert [p["type"] for p in messages[2]["content"]] == ["image", "text", "image", "text"]
    untagged = vision_messages("Describe.", None, "sys", 2)
    assert untagged[0]["role"] == "system"
    assert [p["type"] for p in untagged[1]["content"]] == ["image", "image", "text"]
    with pytest.raises(InputError, match="2 <image> tags but 1 images"):
        vision_messages("<image><image>", None, None, 1)


# --- decoding -------------------------------------------------------------------------------------------------

def test_the_same_image_by_bytes_data_uri_and_file_hashes_the_same(tmp_path):
    data = png_bytes()
    (tmp_path / "a.png").write_bytes(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    hashes = {load_image(ref).sha256 for ref in (data, uri, str(tmp_path / "a.png"), {"url": uri})}
    assert len(hashes) == 1


@pytest.mark.parametrize("make,reason", [
    (lambda: b"not an image at all", "not an image in a known format"),
    (lambda: png_bytes((64, 64))[:-60], "truncated or corrupt"),
    (lambda: "data:text/html;base64," + base64.b64encode(b"<html>").decode(), "content type text/html"),
    (lambda: "data:image/png;base64,@@@", "base64 payload is not valid"),
    (lambda: "ftp://example.com/a.png", "http, https or data"),
])
def test_bad_images_are_refused_with_the_reason(make, reason):
    with pytest.raises(InputError, match=reason):
        load_image(make())


def test_huge_dimensions_and_decompression_bombs_are_refused():
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")  # 144 M pixels in a few hundred KiB
    bomb = buf.getvalue()
    assert len(bomb) < 1_000_000
    with pytest.raises(InputError, match="decompression bomb"):
        load_image(bomb, MediaPolicy(allow_any_local=True, max_pixels=10**9))
    buf = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buf, format="PNG")
    with pytest.raises(InputError, match="5000x5000 pixels, more than the limit of"):
        load_image(buf.getvalue())


# --- local paths ----------------------------------------------------------------------------------------------

def test_local_paths_are_refused_unless_under_the_allowed_directory(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "ok.png").write_bytes(png_bytes())
    (tmp_path / "secret.png").write_bytes(png_bytes())
    os.symlink(tmp_path / "secret.png", media / "escape.png")
    with pytest.raises(InputError, match="local image paths are not allowed"):
        load_image(str(media / "ok.png"), SERVER_POLICY)
    allowed = MediaPolicy(local_dir=media)
    assert load_image(str(media / "ok.png"), allowed).image.size == (16, 12)
    assert load_image("ok.png", allowed).image.size == (16, 12)
    assert load_image(f"file://{media / 'ok.png'}", allowed).image.size == (16, 12)
    with pytest.raises(InputError, match="'..'"):
        load_image(str(media / ".." / "secret.png"), allowed)
    with pytest.raises(InputError, match="outside the allowed media directory"):
        load_image(str(media / "escape.png"), allowed)
    with pytest.raises(InputError, match="outside the allowed media directory"):
        load_image(str(tmp_path / "secret.png"), allowed)


def test_dataset_paths_are_relative_to_the_dataset(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes())
    policy = MediaPolicy(allow_any_local=True, base_dir=tmp_path)
    assert load_image("img/a.png", policy).image.size == (16, 12)


# --- fetching -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1",
                                  "0.0.0.0", "::ffff:127.0.0.1"])
def test_private_loopback_and_link_local_hosts_are_refused(host):
    with pytest.raises(InputError, match="private, loopback or link-local"):
        check_address(host, 80, SERVER_POLICY)


def test_allowed_domains_take_names_and_cidrs():
    check_address("127.0.0.1", 80, MediaPolicy(allowed_domains=("127.0.0.0/8",)))
    check_address("localhost", 80, MediaPolicy(allowed_domains=("localhost",)))
    check_address("10.1.2.3", 80, MediaPolicy(allowed_domains=("10.0.0.0/8",)))
    with pytest.raises(InputError):
        check_address("10.1.2.3", 80, MediaPolicy(allowed_domains=("10.9.0.0/16",)))


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        status, headers, body, delay = self.routes[self.path]
        time.sleep(delay)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def media_server():
    handler = type("Handler", (_Handler,), {"routes": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    handler.routes.update({
        "/ok.png": (200, {"Content-Type": "image/png"}, png_bytes(), 0),
        "/page": (200, {"Content-Type": "text/html"}, b"<html></html>", 0),
        "/big.png": (200, {"Content-Type": "image/png"}, b"\0" * 60_000, 0),
        "/slow.png": (200, {"Content-Type": "image/png"}, png_bytes(), 3),
        "/to-ok": (302, {"Location": "/ok.png"}, b"", 0),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data"}, b"", 0),
        "/loop": (302, {"Location": "/loop"}, b"", 0),
        "/missing": (404, {"Content-Type": "text/plain"}, b"no", 0),
    })
    yield base
    server.shutdown()
    server.server_close()


def test_the_server_policy_refuses_to_fetch_from_loopback(media_server):
    with pytest.raises(InputError, match="private, loopback or link-local"):
        load_image(media_server + "/ok.png", SERVER_POLICY)


def test_fetches_are_checked_at_every_redirect_and_limited(media_server):
    assert load_image(media_server + "/ok.png", LOCAL_OK).image.size == (16, 12)
    assert load_image(media_server + "/to-ok", LOCAL_OK).image.size == (16, 12)
    cases = {"/to-metadata": "private, loopback or link-local", "/page": "content type text/html",
             "/big.png": "more than the limit", "/slow.png": "timed out", "/loop": "redirected more than",
             "/missing": "HTTP 404"}
    for path, reason in cases.items():
        with pytest.raises(InputError, match=reason):
            load_image(media_server + path, LOCAL_OK)


# --- server requests --------------------------------------------------------------------------------------------

def _chat(body):
    from swiftcli.server.protocol import ChatCompletionRequest

    return ChatCompletionRequest.model_validate({"model": "x", **body})


def test_chat_requests_with_image_parts_become_part_messages_in_order():
    from swiftcli.server.media import part_messages

    req = _chat({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:a"}},
                                     {"type": "text", "text": "and"},
                                     {"type": "input_image", "image_url": "data:b"}]}]})
    assert req.has_media
    messages, refs = part_messages(req)
    assert refs == {"image": ["data:a", "data:b"], "video": []}
    assert [p["type"] for p in messages[1]["content"]] == ["image", "text", "image"]
    swift = _chat({"messages": [{"role": "user", "content": "<image>Hi"}], "images": ["u1", "u2"]})
    messages, refs = part_messages(swift)
    assert refs["image"] == ["u1", "u2"] and [p["type"] for p in messages[0]["content"]] == ["image", "image", "text"]
    assert not _chat({"messages": [{"role": "user", "content": "<image> as text"}]}).has_media


@pytest.mark.parametrize("body,reason", [
    ({"messages": [{"role": "user", "content": "<image><image>"}], "images": ["a"]}, "2 <image> tags"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a"}}]}],
      "images": ["b"]}, "not both"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a"}}]}],
      "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools are not supported"),
    ({"messages": [{"role": "assistant", "content": [{"type": "video_url", "video_url": {"url": "a"}}]}]},
     "videos go in user messages"),
    ({"messages": [{"role": "user", "content": "<video>"}]}, "1 <video> tags but the request lists no `videos`"),
])
def test_chat_image_requests_we_cannot_honour_are_refused_by_name(body, reason):
    from swiftcli.server.errors import APIError
    from swiftcli.server.media import part_messages

    with pytest.raises(APIError, match=reason) as info:
        part_messages(_chat(body))
    assert info.value.status == 400


def test_too_many_images_are_refused_before_any_fetch():
    from swiftcli.server.errors import APIError
    from swiftcli.server.media import MediaSettings, chat_media

    parts = [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/x"}}] * 3
    spec = ModelSpec(Path("/m"), "x", "hf", modalities=("image",))
    with pytest.raises(APIError, match="3 images, more than the 2"):
        chat_media(_chat({"messages": [{"role": "user", "content": parts}]}), spec, MediaSettings(limit_images=2))


@pytest.mark.parametrize("args,reason", [
    (["--allowed_media_domains", "bad host!"], "neither a host name nor a CIDR"),
    (["--allowed_local_media_path", "/no/such/dir"], "is not a directory"),
    (["--limit_mm_per_prompt", '{"image": -1}'], "at least 0"),
])
def test_deploy_media_options_are_checked_before_the_engine_starts(args, reason):
    from typer.testing import CliRunner

    from swiftcli.cli.main import app

    result = CliRunner().invoke(app, ["deploy", *args])
    assert result.exit_code == 2, result.output
    assert reason in result.stderr


# --- eval rows ------------------------------------------------------------------------------------------------

def test_eval_rows_carry_their_images(tmp_path):
    from swiftcli.eval.datasets import load_dataset
    from swiftcli.eval.loglikelihood import contexts

    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes())
    rows = [{"question": "<image>Which colour?", "choices": ["red", "green"], "answer": "B",
             "images": ["img/a.png"]},
            {"question": "Which shape?", "choices": ["round", "square"], "answer": "A"}]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_dataset(path, "mc")
    first, second = dataset.items
    assert first.images == [str((tmp_path / "img" / "a.png").resolve())] and second.images == []
    assert first.request()["images"] == first.images and "images" not in second.request()
    parts = first.messages()[-1]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[1]["type"] == "text"
    with pytest.raises(InputError, match="--eval_mc_method generate"):
        contexts(first)
    contexts(second)
    from swiftcli.errors import UsageError

    with pytest.raises(UsageError, match="few_shot with images"):
        load_dataset(path, "mc", few_shot=1)
    gen = tmp_path / "gen.jsonl"
    gen.write_text(json.dumps({"query": "<image>What?", "response": "x", "images": ["img/a.png"]}) + "\n")
    assert load_dataset(gen, "gen").items[0].images == first.images


def test_the_pt_backend_refuses_images_and_videos_by_name_rather_than_dropping_them():
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.engines.base import EngineRequest
    from swiftcli.engines.pt import _refuse_vllm_only

    request = EngineRequest([1, 2], GenerationConfig(), multi_modal_data={"image": [object()], "video": [object()]})
    with pytest.raises(InputError, match="images, videos need the vllm backend"):
        _refuse_vllm_only(request)
    _refuse_vllm_only(EngineRequest([1, 2], GenerationConfig(), multi_modal_data={"image": []}))
