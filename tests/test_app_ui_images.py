"""Images on the chat page: an upload beside the message box for a model that takes images, shown in the
conversation and counted in the prompt; none for a text-only model, whose backend refuses images by name.

The engine backend runs in headless Chromium (`swiftcli app-ui` on the tiny Idefics3); the `--api_url` backend
against `swiftcli deploy` of the same model is in tests/test_vlm_deploy.py.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_app_ui import BOT, SWIFTCLI, USER, answers, browser, context, free_port, running, send, wait_answer

from swiftcli.webui import ChatProgress, ChatSettings, build_app
from swiftcli.webui.app import ChatPage, chat_history, footer, history_images, message_parts, new_turn, render

__all__ = ["browser", "context"]  # the Chromium fixtures, shared with the page's main tests
QUESTION = "What is in the picture?"
NEW_TOKENS = 6


def write_png(path: Path, seed: int = 7, size: tuple[int, int] = (40, 30)) -> Path:
    pixels = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype("uint8")
    Image.fromarray(pixels).save(path)
    return path


def transformers_prompt_tokens(model_dir: Path, image: Path | None) -> int:
    """How many tokens the model's own processor makes of QUESTION, with and without the image."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(model_dir))
    content: list[dict[str, Any]] = [{"type": "text", "text": QUESTION}]
    if image is not None:
        content.insert(0, {"type": "image"})
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    images = [Image.open(image).convert("RGB")] if image is not None else None
    return int(processor(text=text, images=images, return_tensors="np")["input_ids"].shape[1])


def prompt_tokens(answer: str) -> int:
    found = re.search(r"· (\d+) prompt tokens", answer)
    assert found, answer
    return int(found.group(1))


@pytest.mark.slow
def test_an_uploaded_image_reaches_the_engine_and_shows_in_the_conversation(context: Any, tiny_vlm: Path,
                                                                           tmp_path: Path) -> None:
    picture = write_png(tmp_path / "seed7.png")
    port = free_port()
    command = [*SWIFTCLI, "app-ui", "--model", str(tiny_vlm), "--dtype", "fp32", "--max_model_len", "1024",
               "--max_num_seqs", "2", "--temperature", "0", "--max_new_tokens", str(NEW_TOKENS),
               "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/", tmp_path / "app-ui.log"):
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#message input[type=file]").set_input_files(str(picture))
        page.locator("#message img").first.wait_for()  # the upload's preview: the file is on the server
        send(page, QUESTION)
        with_image = wait_answer(page, 1)
        page.locator(f"{USER} img").first.wait_for()  # the image may show after the answer's text
        assert page.locator(f"{USER} img").count() == 1, "the image shows above its question"
        assert QUESTION in page.locator(USER).first.inner_text()
        assert with_image.split("\n")[0].strip(), "an answer"
        # The engine counted the image's tokens: the prompt is what transformers' processor makes of it.
        assert prompt_tokens(with_image) == transformers_prompt_tokens(tiny_vlm, picture)

        # A second question sees the first image again through the history: its prompt holds both turns.
        send(page, "And now?")
        follow_up = wait_answer(page, 2)
        assert prompt_tokens(follow_up) > prompt_tokens(with_image)

        page.locator("#clear").click()
        page.wait_for_function("s => document.querySelectorAll(s).length === 0", arg=BOT)
        send(page, QUESTION)
        text_only = wait_answer(page, 1)
        assert prompt_tokens(text_only) == transformers_prompt_tokens(tiny_vlm, None)
        assert page.locator(f"{USER} img").count() == 0 and len(answers(page)) == 1
        page.screenshot(path=str(tmp_path / "app-ui-image.png"))


@pytest.mark.slow
def test_an_uploaded_image_reaches_a_server_through_api_url(context: Any, tiny_vlm: Path, tmp_path: Path) -> None:
    """`app-ui --api_url` in front of `swiftcli deploy` of the tiny VLM: the upload goes as an image_url part, and
    the server's usage (shown under the answer) counts its tokens."""
    picture = write_png(tmp_path / "seed7.png")
    api_port, ui_port = free_port(), free_port()
    server = [*SWIFTCLI, "deploy", "--model", str(tiny_vlm), "--dtype", "fp32", "--max_model_len", "1024",
              "--max_num_seqs", "2", "--port", str(api_port), "--served_model_name", "tiny-vlm"]
    with running(server, f"http://127.0.0.1:{api_port}/health", tmp_path / "deploy.log"):
        ui = [*SWIFTCLI, "app-ui", "--port", str(ui_port), "--api_url", f"http://127.0.0.1:{api_port}/v1",
              "--temperature", "0", "--max_new_tokens", str(NEW_TOKENS)]
        with running(ui, f"http://127.0.0.1:{ui_port}/", tmp_path / "app-ui.log"):
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{ui_port}/")
            page.locator("#message input[type=file]").set_input_files(str(picture))
            page.locator("#message img").first.wait_for()
            send(page, QUESTION)
            answer = wait_answer(page, 1)
            assert "tiny-vlm · " in answer and page.locator(f"{USER} img").count() == 1
            assert prompt_tokens(answer) == transformers_prompt_tokens(tiny_vlm, picture)


class TextBackend:
    """A text-only backend that records what it is asked (the page's handlers, without a model)."""

    model_name, max_new_tokens_limit, default_system, supports_system, takes_images = "m", 64, None, True, False

    def __init__(self) -> None:
        self.asked: list[Any] = []

    async def chat(self, query: str, history: Any, settings: ChatSettings, images: Any = ()) -> Any:
        self.asked.append((query, list(history), list(images)))
        yield ChatProgress("ok", 1, True, "stop", 9)


class ImageBackend(TextBackend):
    takes_images = True


def run_answer(page: ChatPage, query: str, images: list[str], turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        states = [state async for _, state in page.answer(query, images, turns, ChatSettings(None, 0.0, 1.0, 8))]
        return states[-1]  # type: ignore[no-any-return]

    # A thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def test_the_upload_is_offered_only_where_the_model_takes_images() -> None:
    def box(backend: Any) -> str:
        demo = build_app(backend)
        (message,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "message"]
        return type(message).__name__

    assert box(TextBackend()) == "Textbox"
    assert box(ImageBackend()) == "MultimodalTextbox"


def test_images_on_a_text_only_model_are_refused_by_name() -> None:
    import gradio as gr

    backend = TextBackend()
    turns = run_answer(ChatPage(backend, gr), "hi", ["/tmp/x.png"], [])
    assert turns[-1]["status"] == "error" and "takes text only, not images" in turns[-1]["error"]
    assert backend.asked == [], "nothing reached the model"


def test_images_ride_in_the_history_as_tags_in_order() -> None:
    import gradio as gr

    backend = ImageBackend()
    page = ChatPage(backend, gr)
    turns = run_answer(page, "first", ["a.png", "b.png"], [])
    turns = run_answer(page, "second", [], turns)
    turns = run_answer(page, "third", ["c.png"], turns)
    assert backend.asked[0] == ("<image><image>first", [], ["a.png", "b.png"])
    assert backend.asked[1] == ("second", [("<image><image>first", "ok")], ["a.png", "b.png"])
    assert backend.asked[2][0] == "<image>third" and backend.asked[2][2] == ["a.png", "b.png", "c.png"]
    assert chat_history(turns)[-1] == ("<image>third", "ok") and history_images(turns)[-1] == "c.png"
    shown = render(turns, "m")
    assert shown[0]["content"] == [{"path": "a.png"}, {"path": "b.png"}, "first"]
    assert shown[2]["content"] == "second"
    assert footer(turns[0], "m").endswith("· 9 prompt tokens")
    assert footer(new_turn("x"), "m") == "m · 0 tokens · 0.0 tokens/s"


@pytest.mark.parametrize("value, parts", [
    ("  hi ", ("hi", [])),
    ({"text": "hi", "files": ["/u/a.png", {"path": "/u/b.png"}]}, ("hi", ["/u/a.png", "/u/b.png"])),
    ({"text": "", "files": []}, ("", [])),
    (None, ("", [])),
])
def test_the_message_box_value_in_either_form(value: Any, parts: Any) -> None:
    assert message_parts(value) == parts


def test_an_image_that_is_no_image_fails_before_sending(tmp_path: Path) -> None:
    from swiftcli.errors import InputError
    from swiftcli.webui.backends import with_image_parts

    picture = write_png(tmp_path / "p.png")
    messages = with_image_parts([{"role": "user", "content": "<image>hi"}], [str(picture)])
    (image, text) = messages[0]["content"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,") and text == {"type": "text", "text": "hi"}
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image")
    with pytest.raises(InputError, match="not an image"):
        with_image_parts([{"role": "user", "content": "<image>hi"}], [str(fake)])
    with pytest.raises(InputError, match="more images than"):
        with_image_parts([{"role": "user", "content": "hi"}], [str(picture)])
