"""The chat page: a Gradio Blocks app over a `ChatBackend`.

Each browser tab has its own conversation in a `gr.State`; the Stop button cancels the running answer, which
aborts the request in the engine (or closes the server stream). Answers stream as Markdown with the model's
name, the token count and the speed underneath.

A model that takes images gets a message box with an upload; each turn's images show above its question and reach
the model as `<image>` tags in the history it sees. A text-only model's page has no upload.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from swiftcli.errors import InputError, MissingDependencyError, SwiftError
from swiftcli.generation.vision import IMAGE_TAG
from swiftcli.server.failures import to_api_error
from swiftcli.webui.backends import ChatBackend, ChatSettings

logger = logging.getLogger("swiftcli.webui")

# Re-rendering the whole conversation for every token costs more than it shows; ~20 updates a second is smooth.
UPDATE_INTERVAL_S = 0.05
PAGE_ERROR = "the answer failed; the details are in the server's log"

# query, images (local files), response, tokens, prompt_tokens, seconds, status (running|done|stopped|error), error
Turn = dict[str, Any]
# A part added below the chat: called inside the open Blocks with (gradio, the page, its view, the concurrency).
PagePanel = Callable[[Any, "ChatPage", "PageView", "int | None"], None]


@dataclass(frozen=True)
class PageDefaults:
    """The controls' starting values."""

    temperature: float = 0.3
    top_p: float = 0.7
    max_new_tokens: int = 1024
    system: str | None = None
    top_k: int = 20
    repetition_penalty: float = 1.0


def new_turn(query: str, images: Sequence[str] = ()) -> Turn:
    return {"query": query, "images": list(images), "response": "", "tokens": 0, "prompt_tokens": 0,
            "seconds": 0.0, "status": "running", "error": None}


def tagged(turn: Turn) -> str:
    """The turn's question as the model sees it: an `<image>` tag for each of its images, before the text."""
    return IMAGE_TAG * len(turn.get("images") or []) + turn["query"]


def kept(turns: list[Turn]) -> list[Turn]:
    """The earlier turns the model sees: answered ones (stopped ones too), never errors."""
    return [t for t in turns if t["status"] in ("done", "stopped") and t["response"]]


def chat_history(turns: list[Turn]) -> list[tuple[str, str]]:
    """What the model sees of earlier turns, images as `<image>` tags (their files: `history_images`)."""
    return [(tagged(t), t["response"]) for t in kept(turns)]


def history_images(turns: list[Turn]) -> list[str]:
    return [image for t in kept(turns) for image in t.get("images") or []]


def footer(turn: Turn, model_name: str) -> str:
    rate = turn["tokens"] / turn["seconds"] if turn["seconds"] > 0 else 0.0
    parts = [model_name, f"{turn['tokens']} tokens", f"{rate:.1f} tokens/s"]
    if turn.get("prompt_tokens"):
        parts.append(f"{turn['prompt_tokens']} prompt tokens")
    if turn["status"] == "stopped":
        parts.insert(0, "stopped")
    return " · ".join(parts)


def render(turns: list[Turn], model_name: str) -> list[dict[str, Any]]:
    """The conversation as Chatbot messages (a question's images above its text); the stats line sits under each
    finished answer."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        images = [{"path": image} for image in turn.get("images") or []]
        messages.append({"role": "user", "content": [*images, turn["query"]] if images else turn["query"]})
        if turn["status"] == "error":
            content = f"**Error:** {turn['error']}"
        elif turn["status"] == "running":
            content = turn["response"] or "…"
        else:
            content = f"{turn['response']}\n\n<sub>{footer(turn, model_name)}</sub>"
        messages.append({"role": "assistant", "content": content})
    return messages


def build_app(backend: ChatBackend, defaults: PageDefaults | None = None, title: str | None = None,
              concurrency: int | None = None, panels: Sequence[PagePanel] = ()) -> Any:
    """The Blocks app; call `.queue().launch(...)` on it (see `serve`). At most `concurrency` answers are
    generated at once over all tabs (None: no limit); the others wait in Gradio's queue. Each of `panels` adds
    its part below the chat (e.g. webui.checkpoints' training-run panel)."""
    gr = _gradio()
    page = ChatPage(backend, gr)
    with gr.Blocks(title=title or f"{backend.model_name} · swiftcli", fill_height=True) as demo:
        view = _layout(gr, backend, defaults or PageDefaults(), title)
        _wire(page, view, concurrency)
        for panel in panels:
            panel(gr, page, view, concurrency)
    return demo


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr  # here: the web page is the only part of swiftcli that needs gradio
    except ImportError as exc:
        raise MissingDependencyError(f"the chat page needs gradio ({exc})", "pip install 'swiftcli[ui]'") from None
    return gr


class ChatPage:
    """The page's event handlers over one backend. Each tab's conversation is the `turns` state Gradio passes
    in and out; nothing is kept here between events."""

    def __init__(self, backend: ChatBackend, gr: Any) -> None:
        self.backend = backend
        self.gr = gr
        self.model_name = backend.model_name

    async def answer(self, query: str, images: Sequence[str], turns: list[Turn], settings: ChatSettings
                     ) -> AsyncIterator[tuple[Any, Any]]:
        history, images_so_far = chat_history(turns), history_images(turns)
        turn = new_turn(query, images)
        turns = [*turns, turn]
        yield render(turns, self.model_name), turns
        start = time.perf_counter()
        last_update = 0.0
        try:
            if images and not self.backend.takes_images:  # the page hides the upload; an API call may not
                raise InputError(f"model {self.model_name} takes text only, not images")
            chat = self.backend.chat(tagged(turn), history, settings, [*images_so_far, *images]) \
                if images_so_far or images else self.backend.chat(query, history, settings)
            async for progress in chat:
                turn.update(response=progress.text, tokens=progress.tokens, seconds=time.perf_counter() - start,
                            prompt_tokens=progress.prompt_tokens)
                if time.perf_counter() - last_update >= UPDATE_INTERVAL_S:
                    last_update = time.perf_counter()
                    yield render(turns, self.model_name), turns
            turn["status"] = "done"
        except Exception as exc:  # a page that dies on one bad answer helps nobody; the log keeps the trace
            turn.update(status="error", error=page_error(exc))
        yield render(turns, self.model_name), turns

    def settings_of(self, system: str, temperature: float, top_p: float, max_new_tokens: float, top_k: float,
                    repetition_penalty: float) -> ChatSettings:
        return ChatSettings(system=system.strip() if self.backend.supports_system else None,
                            temperature=float(temperature), top_p=max(float(top_p), 0.01),
                            max_new_tokens=int(max_new_tokens), top_k=int(top_k),
                            repetition_penalty=max(float(repetition_penalty), 0.01))

    async def send(self, message: str | dict[str, Any] | None, turns: list[Turn], *controls: Any
                   ) -> AsyncIterator[tuple[Any, Any, Any]]:
        skip = self.gr.skip
        query, images = message_parts(message)
        # An empty message is ignored, and so is one sent while this tab's answer is still streaming.
        if not (query or images) or (turns and turns[-1]["status"] == "running"):
            yield skip(), skip(), skip()
            return
        # The box is emptied once, with the first update. Later updates leave it alone: a next message typed while
        # this answer streams must survive them, and the update Gradio repeats when the event completes.
        box: Any = self.empty_message()
        async for chat, state in self.answer(query, images, turns, self.settings_of(*controls)):
            yield box, chat, state
            box = skip()

    async def regenerate(self, turns: list[Turn], *controls: Any) -> AsyncIterator[tuple[Any, Any]]:
        if not turns or turns[-1]["status"] == "running":
            yield self.gr.skip(), self.gr.skip()
            return
        last = turns[-1]
        async for chat, state in self.answer(last["query"], last.get("images") or [], turns[:-1],
                                             self.settings_of(*controls)):
            yield chat, state

    def mark_stopped(self, turns: list[Turn]) -> tuple[Any, Any]:
        turns = [dict(t) for t in turns]
        if turns and turns[-1]["status"] == "running":
            turns[-1]["status"] = "stopped"
        return render(turns, self.model_name), turns

    def empty_message(self) -> Any:
        return {"text": "", "files": []} if self.backend.takes_images else ""

    def clear(self) -> tuple[Any, Any, Any]:
        return [], [], self.empty_message()


def message_parts(message: str | dict[str, Any] | None) -> tuple[str, list[str]]:
    """(text, image files) of the message box's value: a Textbox's string, a MultimodalTextbox's dict."""
    if isinstance(message, dict):
        files = [f if isinstance(f, str) else f.get("path") for f in message.get("files") or []]
        return str(message.get("text") or "").strip(), [f for f in files if f]
    return (message or "").strip(), []


@dataclass
class PageView:
    """The components the handlers read and write."""

    turns: Any
    chatbot: Any
    message: Any
    send: Any
    stop: Any
    regenerate: Any
    clear: Any
    controls: list[Any]


def _layout(gr: Any, backend: ChatBackend, defaults: PageDefaults, title: str | None) -> PageView:
    """The page inside an open `gr.Blocks`: conversation, message box and buttons, the settings accordion."""
    model_name = backend.model_name
    limit = max(1, backend.max_new_tokens_limit)
    system_default = defaults.system if defaults.system is not None else backend.default_system
    turns = gr.State([])
    gr.Markdown(f"### {title or model_name}")
    chatbot = gr.Chatbot(elem_id="chatbot", label=model_name, height=520, buttons=["copy"], feedback_options=None)
    with gr.Row(equal_height=True):
        message = _message_box(gr, backend.takes_images)
        send = gr.Button("Send", elem_id="send", variant="primary", scale=1, min_width=80)
        stop = gr.Button("Stop", elem_id="stop", variant="stop", scale=1, min_width=80)
    with gr.Row():
        regenerate = gr.Button("Regenerate", elem_id="regenerate", size="sm")
        clear = gr.Button("Clear", elem_id="clear", size="sm")
    with gr.Accordion("Settings", open=False, elem_id="settings"):
        system = gr.Textbox(label="System prompt", value=system_default or "", lines=2, elem_id="system",
                            visible=backend.supports_system)
        with gr.Row():
            temperature = gr.Slider(0.0, 2.0, value=defaults.temperature, step=0.05, label="temperature",
                                    info="0 is greedy", elem_id="temperature")
            top_p = gr.Slider(0.01, 1.0, value=defaults.top_p, step=0.01, label="top_p", elem_id="top_p")
            max_new_tokens = gr.Slider(1, limit, value=min(defaults.max_new_tokens, limit), step=1,
                                       label="max_new_tokens", elem_id="max_new_tokens")
        with gr.Row():
            top_k = gr.Slider(0, 100, value=defaults.top_k, step=1, label="top_k", info="0 disables",
                              elem_id="top_k")
            repetition_penalty = gr.Slider(1.0, 2.0, value=defaults.repetition_penalty, step=0.01,
                                           label="repetition_penalty", info="1 is none",
                                           elem_id="repetition_penalty")
    return PageView(turns, chatbot, message, send, stop, regenerate, clear,
                    [system, temperature, top_p, max_new_tokens, top_k, repetition_penalty])


def _message_box(gr: Any, takes_images: bool) -> Any:
    """A text box; with an image upload (the paperclip, or drop a file) when the model takes images."""
    if takes_images:
        return gr.MultimodalTextbox(elem_id="message", show_label=False, scale=8, lines=1, max_lines=8,
                                    autofocus=True, sources=["upload"], file_types=["image"],
                                    file_count="multiple", submit_btn=False,
                                    placeholder="Message (Enter to send); attach images with the clip")
    return gr.Textbox(elem_id="message", show_label=False, placeholder="Message (Enter to send)", scale=8, lines=1,
                      max_lines=8, autofocus=True)


def _wire(page: ChatPage, view: PageView, concurrency: int | None) -> None:
    """Events: sending and regenerating run concurrently up to one shared limit; Stop and Clear cancel them."""
    # The engine batches what many tabs send, so chat events run concurrently, up to one shared limit.
    limit_chat: dict[str, Any] = {"concurrency_limit": concurrency, "concurrency_id": "chat",
                                  "api_visibility": "private"}
    sending = ([view.message, view.turns, *view.controls], [view.message, view.chatbot, view.turns])
    running: list[Any] = [
        # always_last: a message sent while the tab's previous event is still settling runs after it, instead of
        # being dropped (Gradio's default, "once").
        view.message.submit(page.send, *sending, trigger_mode="always_last", **limit_chat),
        view.send.click(page.send, *sending, trigger_mode="always_last", **limit_chat),
        view.regenerate.click(page.regenerate, [view.turns, *view.controls], [view.chatbot, view.turns],
                              **limit_chat),
    ]
    # Cancelling the running event cancels its task, which closes the backend's stream: the engine aborts the
    # request. The stats line is then redrawn as "stopped".
    view.stop.click(None, None, None, cancels=running, queue=False).then(
        page.mark_stopped, [view.turns], [view.chatbot, view.turns], api_visibility="private")
    # The Chatbot's own trash icon empties the conversation too, so it must reset the history as well.
    for clearing in (view.clear.click, view.chatbot.clear):
        clearing(None, None, None, cancels=running, queue=False).then(
            page.clear, None, [view.chatbot, view.turns, view.message], api_visibility="private")


def page_error(exc: Exception) -> str:
    """What the page says about a failed answer: our own message for bad input (e.g. a prompt too long for the
    context), a generic one for anything else. Details, paths and tracebacks go to the log only."""
    error = to_api_error(exc, "chat request")
    if error.status < 500 or isinstance(exc, SwiftError) and error.status in (429, 503):
        return error.message
    return PAGE_ERROR


def serve(demo: Any, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          on_ready: Callable[[str, str | None], None] | None = None,
          auth: list[tuple[str, str]] | None = None) -> None:
    """Serve until interrupted (Ctrl-C); returns once the server has stopped.

    `on_ready(local_url, share_url)` is called once the page answers; `auth` is Gradio's list of
    (user, password) pairs for its login page.
    """
    demo.queue(default_concurrency_limit=None)
    demo.launch(server_name=host, server_port=port, share=share, show_error=False, prevent_thread_lock=True,
                footer_links=["gradio"], quiet=True, auth=auth or None)
    if on_ready is not None:
        on_ready(demo.local_url, demo.share_url)
    try:
        demo.block_thread()
    finally:
        demo.close()
