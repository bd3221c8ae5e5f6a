"""`swiftcli app-ui --api_url` in front of `swiftcli deploy --watch RUN`, driven in headless Chromium: the page
lists the run's checkpoints, chats with a chosen one (the same greedy answer the OpenAI client gets from the server
for that model id), and asks two checkpoints the same question side by side. Fast tests beside them: the panel's
rendering of a table and its absence in front of a server without checkpoints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from recording_server import RecordingServer
from test_app_ui import FRANCE, SWIFTCLI, browser, context, free_port, running  # noqa: F401 - fixtures

KEY = "run-key"
MAX_TOKENS = 16
TABLE_ROWS = "#checkpoint-table tr[data-id]"
ANSWER_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def watch_server(lora_run: Path) -> Iterator[Any]:
    """`deploy --watch` on the three-checkpoint run, once every checkpoint is loaded."""
    from server_utils import start_server

    server = start_server(["--watch", str(lora_run), "--max_lora_rank", "8", "--served_model_name", "base"],
                          env={"SWIFTCLI_API_KEY": KEY}, timeout=900)
    try:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
            deadline = time.monotonic() + 300
            while True:
                listing = http.get("/checkpoints").json()
                if sum(bool(row["loaded"]) for row in listing["data"]) == 3:
                    break
                assert time.monotonic() < deadline, f"the checkpoints were not loaded in time: {listing}"
                time.sleep(0.5)
        yield server
    finally:
        assert server.stop() == 0, server.output()[-3000:]


@pytest.fixture(scope="module")
def page_url(watch_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    # Greedy without a repetition penalty, as the OpenAI client below asks: the answers must then be equal.
    command = [*SWIFTCLI, "app-ui", "--port", str(port), "--api_url", watch_server.base_url, "--api_key", KEY,
               "--temperature", "0", "--repetition_penalty", "1.0", "--max_new_tokens", str(MAX_TOKENS)]
    url = f"http://127.0.0.1:{port}/"
    with running(command, url, tmp_path_factory.mktemp("app-ui-run") / "app-ui.log"):
        yield url


def greedy(server: Any, model: str) -> str:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=300) as client:
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": FRANCE}],
                                               temperature=0, max_tokens=MAX_TOKENS,
                                               extra_body={"repetition_penalty": 1.0})
    return reply.choices[0].message.content or ""


def words(text: str) -> str:
    return " ".join(text.split())


def pick(page: Any, elem_id: str, value: str) -> None:
    """Choose `value` in a Gradio dropdown as a user does: open it, click the option."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    # The input names its own option list (aria-controls): another dropdown's list may still be in the page, and
    # visible, while it closes.
    options = page.locator(f'[id="{box.get_attribute("aria-controls")}"]')
    options.get_by_role("option", name=value, exact=True).click()
    page.wait_for_function("([id, v]) => document.querySelector(`#${id} input`).value === v", arg=[elem_id, value])


def column_answer(page: Any, chat: str, model: str) -> str:
    """Wait until the column's first answer has finished (its stats line names the model); return its text."""
    selector = f"#{chat} .bot"
    page.wait_for_function(
        "([s, m]) => { const a = document.querySelectorAll(s);"
        " return a.length === 1 && a[0].innerText.includes(m + ' · ') && a[0].innerText.includes('tokens/s'); }",
        arg=[selector, model], timeout=ANSWER_TIMEOUT_MS)
    text = str(page.locator(selector).first.inner_text())
    return text[: text.rindex(f"{model} · ")]


@pytest.mark.slow
def test_table_lists_the_runs_checkpoints(page_url: str, context: Any, watch_server: Any,  # noqa: F811
                                          lora_run: Path) -> None:
    page = context.new_page()
    page.goto(page_url)
    page.wait_for_function("(s) => document.querySelectorAll(s).length === 3", arg=TABLE_ROWS)
    ids = page.locator(TABLE_ROWS).evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert ids == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    for row in page.locator(TABLE_ROWS).all_inner_texts():
        assert "loaded" in row, row
    assert "checkpoint-30 (latest)" in page.locator(TABLE_ROWS).nth(2).inner_text()
    assert str(watch_server.base_url) not in page.content()
    # The curve: the training loss each checkpoint's trainer_state.json logged last, one point a checkpoint.
    logged = {}
    for step in (10, 20, 30):
        state = json.loads((lora_run / f"checkpoint-{step}" / "trainer_state.json").read_text())
        logged[step] = [entry["loss"] for entry in state["log_history"]][-1]
    points = page.locator('#learning-curve circle[data-series="training loss"]').evaluate_all(
        "dots => dots.map(d => [Number(d.dataset.step), Number(d.dataset.value)])")
    assert points == [[step, pytest.approx(loss, rel=1e-5)] for step, loss in logged.items()], points
    # Refresh reads the table again (the note's time changes with it).
    page.locator("#checkpoints-refresh").click()
    page.wait_for_function("(s) => document.querySelectorAll(s).length === 3", arg=TABLE_ROWS)


@pytest.mark.slow
def test_chat_with_a_chosen_checkpoint_and_side_by_side(page_url: str, context: Any,  # noqa: F811
                                                         watch_server: Any, tmp_path: Path) -> None:
    expected = {model: greedy(watch_server, model) for model in ("base", "checkpoint-10", "checkpoint-20")}
    # The adapter changes the answer, so an equal answer below means the page asked that checkpoint.
    assert expected["checkpoint-20"] != expected["base"], expected
    page = context.new_page()
    page.goto(page_url)
    pick(page, "checkpoint-model-a", "checkpoint-20")
    page.locator("#checkpoint-question textarea").fill(FRANCE)
    page.locator("#checkpoint-question textarea").press("Enter")
    answer = column_answer(page, "checkpoint-chat-a", "checkpoint-20")
    assert words(answer) == words(expected["checkpoint-20"]), (answer, expected)
    assert page.locator("#checkpoint-chat-b").is_hidden()

    # Side by side: a fresh first column on checkpoint-10 (picking another model starts it afresh), the base
    # model in the second; one question, two answers.
    pick(page, "checkpoint-model-a", "checkpoint-10")
    page.wait_for_function("() => document.querySelectorAll('#checkpoint-chat-a .bot').length === 0")
    page.locator("#side-by-side input").check()
    page.locator("#checkpoint-chat-b").wait_for(state="visible")
    pick(page, "checkpoint-model-b", "base")
    page.locator("#checkpoint-question textarea").fill(FRANCE)
    page.locator("#checkpoint-ask").click()
    first = column_answer(page, "checkpoint-chat-a", "checkpoint-10")
    second = column_answer(page, "checkpoint-chat-b", "base")
    assert words(first) == words(expected["checkpoint-10"]), (first, expected)
    assert words(second) == words(expected["base"]), (second, expected)
    assert page.locator("#checkpoint-question textarea").input_value() == ""
    page.screenshot(path=str(tmp_path / "training-run.png"), full_page=True)


def test_no_panel_in_front_of_a_server_without_checkpoints() -> None:
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.webui import OpenAIChatBackend
    from swiftcli.webui.checkpoints import training_run_panel

    with RecordingServer(key="k") as server:
        backend = OpenAIChatBackend(server.url, "k", "recorder", GenerationConfig())
        assert training_run_panel(backend) is None  # the server answers 404 on /v1/checkpoints
    assert training_run_panel(object()) is None  # a local engine has no training run


def test_panel_renders_the_servers_rows_escaped_and_optional_scores() -> None:
    from swiftcli.webui.checkpoints import curve_series, curve_svg, model_choices, status_of, table_html

    rows = [{"id": "checkpoint-10", "step": 10, "kind": "lora", "loaded": True, "seen_at": 0, "metrics": {},
             "reason": None},
            {"id": "checkpoint-5", "step": 5, "kind": "full", "loaded": False, "seen_at": 0, "metrics": {},
             "reason": "full-weight <checkpoint>"}]
    listing = {"object": "list", "data": rows, "latest": "checkpoint-10"}
    html = table_html(listing)
    assert "full-weight &lt;checkpoint&gt;" in html and "<checkpoint>" not in html
    assert "checkpoint-10 (latest)" in html
    assert [status_of(r) for r in rows] == ["loaded", "full weights (not loaded)"]
    assert model_choices(listing, "base") == ["latest", "checkpoint-10", "base"]
    assert "No learning curve yet" in curve_svg(listing)

    scored = {**listing, "best": "checkpoint-10", "main_metric": "acc",
              "data": [{**rows[0], "metrics": {"acc": 0.5}, "scored": True, "train_loss": 1.2},
                       {**rows[1], "step": 20, "metrics": {"acc": 0.75}}]}
    assert curve_series(scored) == {"training loss": [(10.0, 1.2)], "acc": [(10.0, 0.5), (20.0, 0.75)]}
    svg = curve_svg(scored)
    assert svg.count("<circle") == 3 and 'data-value="0.75"' in svg
    assert model_choices(scored, "base") == ["latest", "best", "checkpoint-10", "base"]
    assert status_of(scored["data"][0]) == "loaded · scored" and "acc 0.5" in table_html(scored)


def test_training_loss_is_the_last_one_logged(tmp_path: Path) -> None:
    from swiftcli.eval.checkpoints import training_loss

    assert training_loss(tmp_path) is None
    (tmp_path / "trainer_state.json").write_text(json.dumps(
        {"log_history": [{"step": 5, "loss": 2.5}, {"step": 10, "loss": 1.25}, {"step": 10, "eval_loss": 1.5}]}))
    assert training_loss(tmp_path) == 1.25
    (tmp_path / "trainer_state.json").write_text("{not json")
    assert training_loss(tmp_path) is None
