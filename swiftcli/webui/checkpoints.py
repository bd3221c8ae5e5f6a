"""The training-run panel of the chat page, shown in front of `swiftcli deploy --watch DIR` (`app-ui --api_url`).

The server's `GET /v1/checkpoints` is read through the page's own OpenAI client: once at start-up (a server
that answers 404 has no training run, and the page stays as it was), then on a timer and on Refresh. The panel
shows the table (step, status, metrics when the server scores them, when each was seen, why one is not
served), the learning curve as a plain SVG, and a chat with any served model id (`checkpoint-N`, `latest`,
`best`): one column, or the same question to two models side by side, both answers streaming at once.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from swiftcli.apiclient import openai_client, server_message
from swiftcli.webui.app import ChatPage, PageView, Turn
from swiftcli.webui.backends import OpenAIChatBackend

logger = logging.getLogger("swiftcli.webui")

ROUTE = "/checkpoints"  # under the server's /v1 root, which the client's base URL already ends in
REFRESH_S = 5.0
ALIASES = ("latest", "best")
SERIES_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea")
Listing = dict[str, Any]  # GET /v1/checkpoints: {"data": [row, ...], "latest": id | None, "best"?: id, ...}


def probe_checkpoints(backend: OpenAIChatBackend, timeout: float = 10.0) -> Listing | None:
    """The server's checkpoint table, or None when it has none (404: not a `deploy --watch` server)."""
    # lazy: keeps --help and start-up free of the OpenAI SDK
    import openai

    client = openai_client(backend.base_url, backend.client.api_key, timeout=timeout)
    try:
        listing = client.get(ROUTE, cast_to=object)
    except openai.NotFoundError:
        return None
    except openai.APIStatusError as exc:
        logger.warning("the server's checkpoint table is unavailable: %s", server_message(exc))
        return None
    finally:
        client.close()
    return listing if isinstance(listing, dict) and isinstance(listing.get("data"), list) else None


async def read_checkpoints(backend: OpenAIChatBackend) -> Listing:
    """The table now, through the page's async client; a refusal or lost server raises openai's error."""
    listing = await backend.client.get(ROUTE, cast_to=object)
    if not isinstance(listing, dict) or not isinstance(listing.get("data"), list):
        raise ValueError("the server's checkpoint table is not a list")
    return listing


def status_of(row: dict[str, Any]) -> str:
    """loaded / pending / full weights / refused, and the scoring state when the server scores."""
    if row.get("loaded"):
        status = "loaded"
    elif row.get("kind") == "pending":
        status = "pending"
    elif row.get("kind") == "full":
        status = "full weights (not loaded)"
    else:
        status = "refused"
    scored = row.get("scored", row.get("status"))
    if scored is True:
        status += " · scored"
    elif isinstance(scored, str) and scored and scored != status:
        status += f" · {scored}"
    return status


def main_metric(listing: Listing) -> str | None:
    """The metric the server ranks by, else the first one any row has."""
    named = listing.get("main_metric")
    if isinstance(named, str) and named:
        return named
    for row in listing["data"]:
        if isinstance(row.get("main_metric"), str):
            return str(row["main_metric"])
    names = sorted({k for row in listing["data"] for k in (row.get("metrics") or {})})
    return names[0] if names else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _metrics_text(row: dict[str, Any]) -> str:
    metrics = row.get("metrics") or {}
    parts = []
    for name in sorted(metrics):
        value = _number(metrics[name])
        parts.append(f"{name} {value:.4g}" if value is not None else f"{name} {metrics[name]}")
    return ", ".join(parts)


def _seen_text(seconds: Any) -> str:
    value = _number(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value is not None else ""


def table_html(listing: Listing) -> str:
    """The table as HTML (every value escaped): one row a checkpoint, in the server's (step) order."""
    best, latest = listing.get("best"), listing.get("latest")
    head = "".join(f"<th>{h}</th>" for h in ("Checkpoint", "Step", "Status", "Metrics", "Seen", "Reason"))
    lines = []
    for row in listing["data"]:
        name = str(row.get("id", ""))
        marks = [alias for alias, target in (("latest", latest), ("best", best)) if target == name]
        label = name + (f" ({', '.join(marks)})" if marks else "")
        step = "" if row.get("step") is None else str(row["step"])
        cells = (label, step, status_of(row), _metrics_text(row), _seen_text(row.get("seen_at")),
                 str(row.get("reason") or ""))
        lines.append(f'<tr data-id="{html.escape(name)}">'
                     + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    if not lines:
        lines.append('<tr><td colspan="6">No checkpoints yet: they appear here as the run saves them.</td></tr>')
    return (f'<table class="checkpoints"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>')


def curve_series(listing: Listing) -> dict[str, list[tuple[float, float]]]:
    """(step, value) points by series: the main metric, and the training loss where rows carry it."""
    metric = main_metric(listing)
    series: dict[str, list[tuple[float, float]]] = {}
    for row in listing["data"]:
        step = _number(row.get("step"))
        if step is None:
            continue
        values = {"training loss": _number(row.get("train_loss"))}
        if metric is not None:
            values[metric] = _number((row.get("metrics") or {}).get(metric))
        for name, value in values.items():
            if value is not None:
                series.setdefault(name, []).append((step, value))
    return {name: sorted(points) for name, points in series.items()}


def curve_svg(listing: Listing, width: int = 640, height: int = 240) -> str:
    """The learning curve: each series by step, scaled to its own range (its min and max are labelled)."""
    series = curve_series(listing)
    if not series:
        return ('<p class="curve-empty">No learning curve yet: it is drawn once checkpoints have a score '
                "(or a training loss).</p>")
    left, right, top, bottom = 48, 16, 16, 40
    steps = [step for points in series.values() for step, _ in points]
    low, high = min(steps), max(steps)

    def x(step: float) -> float:
        return left + (step - low) / ((high - low) or 1) * (width - left - right)

    parts = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#888"/>',
             f'<text x="{left}" y="{height - bottom + 16}" font-size="11">step {low:g}</text>',
             f'<text x="{width - right}" y="{height - bottom + 16}" font-size="11" text-anchor="end">'
             f"step {high:g}</text>"]
    for index, (name, points) in enumerate(series.items()):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        parts.append(_polyline(name, points, colour, x, top, height - bottom))
        parts.append(f'<text x="{left + 140 * index}" y="{height - 6}" font-size="12" fill="{colour}">'
                     f"{html.escape(name)}</text>")
    return (f'<svg class="learning-curve" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg>')


def _polyline(name: str, points: list[tuple[float, float]], colour: str, x: Callable[[float], float],
              top: float, base: float) -> str:
    values = [v for _, v in points]
    low, high = min(values), max(values)

    def y(value: float) -> float:
        return base - (value - low) / ((high - low) or 1) * (base - top) if high > low else (top + base) / 2

    label = html.escape(name)
    coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    dots = "".join(f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}" data-series="{label}" '
                   f'data-step="{s:g}" data-value="{v:.6g}"><title>{label} at step {s:g}: {v:.4g}</title></circle>'
                   for s, v in points)
    scale = (f'<text x="4" y="{top + 4}" font-size="10" fill="{colour}">{high:.3g}</text>'
             f'<text x="4" y="{base}" font-size="10" fill="{colour}">{low:.3g}</text>')
    return f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>{dots}{scale}'


def model_choices(listing: Listing, base_model: str) -> list[str]:
    """The ids a chat can use: latest and best when the server names them, each loaded checkpoint, the base."""
    choices = [alias for alias in ALIASES if listing.get(alias)]
    choices += [str(row["id"]) for row in listing["data"] if row.get("loaded")]
    return [*choices, base_model] if base_model not in choices else choices


@dataclass
class PanelView:
    """The panel's components that the handlers read and write."""

    table: Any
    curve: Any
    note: Any
    models: list[Any]
    chats: list[Any]
    turns: list[Any]
    side_by_side: Any
    second: Any
    question: Any
    pending: Any
    ask: Any
    refresh: Any
    clear: Any
    timer: Any


class CheckpointPanel:
    """Handlers over the page's server backend; each tab's two conversations live in Gradio states."""

    def __init__(self, backend: OpenAIChatBackend, page: ChatPage, gr: Any) -> None:
        self.backend = backend
        self.page = page
        self.gr = gr

    def choices_update(self, listing: Listing, current: str | None, fallback: str) -> Any:
        choices = model_choices(listing, self.backend.model_name)
        value = current if current in choices else fallback if fallback in choices else choices[0]
        return self.gr.update(choices=choices, value=value)

    async def refresh(self, first: str | None, second: str | None) -> tuple[Any, ...]:
        try:
            listing = await read_checkpoints(self.backend)
        except Exception as exc:  # the server may be restarting: keep the last table and say why it is old
            logger.warning("reading the checkpoint table failed: %s", exc)
            skip = self.gr.skip()
            return skip, skip, skip, skip, f"Could not read the checkpoint table at {time.strftime('%H:%M:%S')}."
        defaults = default_models(listing, self.backend.model_name)
        return (table_html(listing), curve_svg(listing), self.choices_update(listing, first, defaults[0]),
                self.choices_update(listing, second, defaults[1]), f"Updated {time.strftime('%H:%M:%S')}.")

    @staticmethod
    def take_question(question: str) -> tuple[str, str]:
        """Empties the box and keeps the question for the columns' answers."""
        return "", (question or "").strip()

    async def answer(self, query: str, model: str, turns: list[Turn], *controls: Any
                     ) -> AsyncIterator[tuple[Any, Any]]:
        if not query or not model or (turns and turns[-1]["status"] == "running"):
            yield self.gr.skip(), self.gr.skip()
            return
        column = ChatPage(self.backend.with_model(model), self.gr)
        async for chat, state in column.answer(query, (), turns, self.page.settings_of(*controls)):
            yield chat, state

    async def answer_second(self, query: str, side_by_side: bool, model: str, turns: list[Turn], *controls: Any
                            ) -> AsyncIterator[tuple[Any, Any]]:
        if not side_by_side:
            yield self.gr.skip(), self.gr.skip()
            return
        async for update in self.answer(query, model, turns, *controls):
            yield update


def default_models(listing: Listing, base_model: str) -> tuple[str, str]:
    """Column one starts on the newest checkpoint (best when scored), column two on the base model."""
    first = listing.get("best") or listing.get("latest") or base_model
    return str(first), base_model


def training_run_panel(backend: Any) -> Callable[[Any, ChatPage, PageView, int | None], None] | None:
    """A builder for `build_app(panels=...)` when `backend` is a server with a checkpoint table, else None."""
    # The table is read through the OpenAI client: not shown when the page speaks Anthropic Messages.
    if not isinstance(backend, OpenAIChatBackend) or backend.api.name == "messages":
        return None
    listing = probe_checkpoints(backend)
    if listing is None:
        return None

    def build(gr: Any, page: ChatPage, view: PageView, concurrency: int | None) -> None:
        panel = CheckpointPanel(backend, page, gr)
        _wire(panel, _layout(gr, listing, backend.model_name), view, concurrency)

    return build


def _layout(gr: Any, listing: Listing, base_model: str) -> PanelView:
    choices = model_choices(listing, base_model)
    first, second = default_models(listing, base_model)
    with gr.Accordion("Training run", open=True, elem_id="training-run"):
        with gr.Row():
            refresh = gr.Button("Refresh", elem_id="checkpoints-refresh", size="sm", scale=0, min_width=90)
            note = gr.Markdown(f"Updated {time.strftime('%H:%M:%S')}.", elem_id="checkpoints-note")
        table = gr.HTML(table_html(listing), elem_id="checkpoint-table")
        curve = gr.HTML(curve_svg(listing), elem_id="learning-curve")
        with gr.Row(equal_height=True):
            model_a = gr.Dropdown(choices, value=first if first in choices else choices[0], label="Chat with",
                                  elem_id="checkpoint-model-a")
            side_by_side = gr.Checkbox(False, label="Side by side", elem_id="side-by-side")
        with gr.Row():
            with gr.Column():
                chat_a = gr.Chatbot(elem_id="checkpoint-chat-a", label="first", height=360, feedback_options=None)
            with gr.Column(visible=False) as column_b:
                model_b = gr.Dropdown(choices, value=second if second in choices else choices[0], label="and",
                                      elem_id="checkpoint-model-b")
                chat_b = gr.Chatbot(elem_id="checkpoint-chat-b", label="second", height=360, feedback_options=None)
        with gr.Row(equal_height=True):
            question = gr.Textbox(elem_id="checkpoint-question", show_label=False, scale=8, lines=1,
                                  placeholder="Ask the chosen checkpoint(s) (Enter to send)")
            ask = gr.Button("Ask", elem_id="checkpoint-ask", variant="primary", scale=1, min_width=80)
            clear = gr.Button("Clear", elem_id="checkpoint-clear", scale=1, min_width=80)
    return PanelView(table, curve, note, [model_a, model_b], [chat_a, chat_b], [gr.State([]), gr.State([])],
                     side_by_side, column_b, question, gr.State(""), ask, refresh, clear,
                     gr.Timer(REFRESH_S))


def _wire(panel: CheckpointPanel, view: PanelView, page_view: PageView, concurrency: int | None) -> None:
    gr = panel.gr
    private: dict[str, Any] = {"api_visibility": "private"}
    # The columns answer on the chat's shared limit, so that the engine sees no more requests than the page allows.
    limit_chat: dict[str, Any] = {"concurrency_limit": concurrency, "concurrency_id": "chat", **private}
    reading = ([*view.models], [view.table, view.curve, *view.models, view.note])
    view.refresh.click(panel.refresh, *reading, **private)
    view.timer.tick(panel.refresh, *reading, **private)
    view.side_by_side.change(lambda on: gr.update(visible=bool(on)), [view.side_by_side], [view.second],
                             queue=False, **private)
    controls = page_view.controls
    for trigger in (view.question.submit, view.ask.click):
        taken = trigger(panel.take_question, [view.question], [view.question, view.pending], queue=False,
                        **private)
        # Two events after one: both columns stream at once.
        taken.then(panel.answer, [view.pending, view.models[0], view.turns[0], *controls],
                   [view.chats[0], view.turns[0]], **limit_chat)
        taken.then(panel.answer_second, [view.pending, view.side_by_side, view.models[1], view.turns[1], *controls],
                   [view.chats[1], view.turns[1]], **limit_chat)
    # A conversation belongs to one model: picking another one starts that column afresh.
    for model, chat, turns in zip(view.models, view.chats, view.turns, strict=True):
        model.input(lambda: ([], []), None, [chat, turns], queue=False, **private)
    view.clear.click(lambda: ([], [], [], []), None, [*view.chats, *view.turns], queue=False, **private)
