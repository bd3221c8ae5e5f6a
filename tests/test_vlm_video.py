"""Videos: decoding into frames (OpenCV, as vLLM decodes on CPU) under the same rules as images, `video_url` parts
and ms-swift's `videos` in requests and dataset rows, and refusals by name for models that take no video.

No video-capable model runs on this CPU build (vLLM's Qwen2-VL family needs torchvision): what reaches an engine is
checked here as vLLM's `(frames, metadata)` input, and the refusals run on real servers and the real CLI in
tests/test_vlm_deploy.py and below.
"""

from __future__ import annotations

import base64
import http.server
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.config.spec import ModelSpec
from swiftcli.data.records import to_sample
from swiftcli.errors import InputError
from swiftcli.generation.media import MediaPolicy, decode_video, load_video
from swiftcli.generation.vision import vision_messages
from swiftcli.server.errors import APIError
from swiftcli.server.media import MediaSettings, chat_media, part_messages
from swiftcli.server.protocol import ChatCompletionRequest

FRAMES, WIDTH, HEIGHT, FPS = 20, 48, 32, 10.0


def write_video(path: Path, frames: int = FRAMES, size: tuple[int, int] = (WIDTH, HEIGHT)) -> Path:
    """An mp4 whose frame i is red i*12 (RGB), blue 0: the order of channels and of frames can be checked."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    for i in range(frames):
        rgb = np.zeros((size[1], size[0], 3), np.uint8)
        rgb[..., 0] = i * 12
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_a_video_decodes_into_evenly_sampled_rgb_frames_with_vllms_metadata(video: Path) -> None:
    loaded = load_video(str(video), max_frames=8)
    assert loaded.frames.shape == (8, HEIGHT, WIDTH, 3) and loaded.frames.dtype == np.uint8
    kept = loaded.metadata["frames_indices"]
    assert kept == [int(i) for i in np.linspace(0, FRAMES - 1, 8)] and kept[0] == 0 and kept[-1] == FRAMES - 1
    red = loaded.frames[:, HEIGHT // 2, WIDTH // 2, 0].astype(int)
    assert np.all(np.abs(red - np.array(kept) * 12) <= 8), red  # lossy codec: close, in order, red not blue
    assert loaded.frames[..., 2].max() <= 8
    assert loaded.metadata == {"total_num_frames": FRAMES, "fps": FPS, "duration": FRAMES / FPS,
                               "video_backend": "opencv", "frames_indices": kept, "do_sample_frames": False}
    frames, metadata = loaded.engine_item()  # vLLM's VideoItem: (frames, metadata)
    assert frames is loaded.frames and metadata == loaded.metadata
    whole = decode_video(video.read_bytes())
    assert whole.frames.shape[0] == FRAMES and whole.sha256 == loaded.sha256


def test_the_same_video_by_data_uri_and_file_decodes_the_same(video: Path) -> None:
    uri = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    assert np.array_equal(load_video(uri).frames, load_video(str(video)).frames)


@pytest.mark.parametrize("ref, policy, reason", [
    ("data:image/png;base64,AAAA", MediaPolicy(allow_any_local=True), "content type image/png, not a video"),
    ("data:video/mp4;base64," + base64.b64encode(b"no video here" * 20).decode(), MediaPolicy(),
     "not a video in a known format"),
    ("data:video/mp4,abc", MediaPolicy(), "video data URIs must be base64"),
    ("ftp://example.com/a.mp4", MediaPolicy(), "video URLs must be http, https or data"),
    ("/etc/passwd", MediaPolicy(), "local video paths are not allowed here"),
    ("http://127.0.0.1:9/a.mp4", MediaPolicy(), "video host 127.0.0.1 is a private, loopback or link-local"),
    ("http://169.254.169.254/a.mp4", MediaPolicy(), "video host 169.254.169.254 is a private"),
])
def test_bad_video_references_are_refused_with_the_reason(ref: str, policy: MediaPolicy, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        load_video(ref, policy)


def test_size_and_frame_limits_hold_for_videos(video: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="more than the limit of 100"):
        load_video(str(video), MediaPolicy(allow_any_local=True, max_bytes=100))
    with pytest.raises(InputError, match="48x32 pixels, more than the limit of 1000"):
        load_video(str(video), MediaPolicy(allow_any_local=True, max_pixels=1000))
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(video.read_bytes()[:400])
    with pytest.raises(InputError, match="video"):
        load_video(str(truncated))


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        content_type, body = self.routes.get(self.path, ("text/plain", b""))
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_fetched_videos_must_say_video_and_stay_under_the_limit(video: Path) -> None:
    handler = type("Handler", (_Handler,), {"routes": {"/v.mp4": ("video/mp4", video.read_bytes()),
                                                       "/v.png": ("image/png", video.read_bytes())}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        allowed = MediaPolicy(allowed_domains=("127.0.0.1/32",))
        assert load_video(f"{base}/v.mp4", allowed).frames.shape[0] == FRAMES
        with pytest.raises(InputError, match="content type image/png, not a video"):
            load_video(f"{base}/v.png", allowed)
        with pytest.raises(InputError, match="more than the limit"):
            load_video(f"{base}/v.mp4", MediaPolicy(allowed_domains=("127.0.0.1/32",), max_bytes=500))
        with pytest.raises(InputError, match="private"):
            load_video(f"{base}/v.mp4", MediaPolicy())
    finally:
        server.shutdown()
        server.server_close()


def _chat(body: dict) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", **body})


def test_video_parts_and_tags_become_part_messages_in_order() -> None:
    req = _chat({"messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "data:v1"}}, {"type": "text", "text": "and"},
        {"type": "image_url", "image_url": {"url": "data:i1"}}]}]})
    messages, refs = part_messages(req)
    assert refs == {"image": ["data:i1"], "video": ["data:v1"]}
    assert [p["type"] for p in messages[0]["content"]] == ["video", "text", "image"]
    swift = _chat({"messages": [{"role": "user", "content": "<video>Hi"}], "videos": ["v1", "v2"]})
    assert swift.has_media
    messages, refs = part_messages(swift)
    assert refs["video"] == ["v1", "v2"] and [p["type"] for p in messages[0]["content"]] == ["video", "video", "text"]
    parts = vision_messages("<video>What happens?", None, None, n_images=0, n_videos=1)[-1]["content"]
    assert [p["type"] for p in parts] == ["video", "text"]


def test_models_that_take_no_video_refuse_it_before_any_fetch() -> None:
    body = {"messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "http://169.254.169.254/a.mp4"}}]}]}
    for modalities, takes in (((), "text only"), (("image",), "text and images")):
        spec = ModelSpec(Path("/m"), "x", "hf", modalities=modalities)
        with pytest.raises(APIError, match=f"model x takes {takes}, not videos") as info:
            chat_media(_chat(body), spec, MediaSettings())
        assert info.value.status == 400
    video_model = ModelSpec(Path("/m"), "v", "hf", modalities=("image", "video"))
    twice = {"messages": [{"role": "user", "content": body["messages"][0]["content"] * 2}]}
    with pytest.raises(APIError, match=r"2 videos, more than the 1 a prompt may take \(--limit_mm_per_prompt\)"):
        chat_media(_chat(twice), video_model, MediaSettings(limit_videos=1))
    with pytest.raises(APIError, match="video 1: video host 169.254.169.254 is a private"):
        chat_media(_chat(body), video_model, MediaSettings())


def test_a_video_model_gets_frames_and_metadata(video: Path, tmp_path: Path) -> None:
    video_model = ModelSpec(Path("/m"), "v", "hf", modalities=("image", "video"))
    settings = MediaSettings(allowed_local_media_path=str(video.parent))
    media = chat_media(_chat({"messages": [{"role": "user", "content": "<video>What happens?"}],
                              "videos": [str(video)]}), video_model, settings)
    ((frames, metadata),) = media.engine_data()["video"]
    assert "image" not in media.engine_data()
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and metadata["total_num_frames"] == FRAMES


def test_dataset_rows_carry_their_videos(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4")
    sample = to_sample({"query": "<video>What happens?", "videos": ["clip.mp4"]}, tmp_path)
    assert sample.videos == [str(tmp_path / "clip.mp4")] and sample.request()["videos"] == sample.videos
    assert len(sample.video_sha256) == 1
    with pytest.raises(InputError, match="'videos' must be a list of paths or URLs"):
        to_sample({"query": "q", "videos": [3]})


def refused_infer(model_args: list[str], video: Path) -> str:
    result = CliRunner().invoke(app, ["infer", *model_args, "--query", "<video>What happens?", "--videos",
                                      str(video)], env={"COLUMNS": "120"})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2, result.output
    return str(result.output)


def test_infer_refuses_videos_for_a_text_model_before_loading(video: Path) -> None:
    assert "model smollm2-135m-instruct takes text only, not videos" in refused_infer([], video)


def test_infer_refuses_videos_for_an_image_model_before_loading(video: Path, tiny_vlm: Path) -> None:
    """The tiny Idefics3 takes images only; the refusal comes from its config, before any engine starts."""
    assert "takes text and images, not videos" in refused_infer(["--model", str(tiny_vlm)], video)
