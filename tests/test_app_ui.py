"""`swiftcli app-ui` in a real headless Chromium (Debian's `chromium`, driven by playwright's Python package).

The page is served by `swiftcli app-ui` in a subprocess on the embedded model (vLLM), then by `--api_url` in
front of `swiftcli deploy`; one engine runs at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
SWIFTCLI = [sys.executable, "-c", "from swiftcli.cli.main import main; main()"]
FRANCE = "What is the capital of France?"
STORY = "Write a 2000-word story about a dragon who learns to bake bread."
ANSWER_TIMEOUT_MS = 90_000
START_TIMEOUT_S = 300

# Chatbot messages as the page renders them: `.bot` / `.user` are Gradio's message classes.
BOT = "#chatbot .bot"
USER = "#chatbot .user"
FINISHED = "tokens/s"  # the stats line appears under an answer once it has ended


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env() -> dict[str, str]:
    from server_utils import command_env

    return command_env(GRADIO_ANALYTICS_ENABLED="False", COLUMNS="120")


@contextmanager
def running(command: list[str], url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server, wait until `url` answers, and stop it (SIGTERM, then SIGKILL) afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=server_env(), cwd=ROOT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{command[3:]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def find_chromium() -> str:
    """Debian's Chromium; installed with scripts/install-browser.sh (apt) when missing, never downloaded."""
    path = os.environ.get("SWIFTCLI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install-browser.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"no Chromium, and scripts/install-browser.sh failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses its sandbox as root, which CI machines are.
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    # Each wait polls the page; the bound is for a machine where other tests (`make test` may run two processes)
    # share the cores with the browser, the server and the engine.
    ctx.set_default_timeout(60_000)
    yield ctx
    ctx.close()


def send(page: Any, text: str, *, enter: bool = True) -> None:
    page.locator("#message textarea").fill(text)
    if enter:
        page.locator("#message textarea").press("Enter")
    else:
        page.locator("#send").click()


def wait_answer(page: Any, count: int, text: str = FINISHED, timeout: int = ANSWER_TIMEOUT_MS) -> str:
    """Wait until the page shows `count` answers and the last contains `text`; return that answer."""
    page.wait_for_function(
        """([selector, count, text]) => {
            const answers = document.querySelectorAll(selector);
            return answers.length === count && answers[count - 1].innerText.includes(text);
        }""",
        arg=[BOT, count, text],
        timeout=timeout,
    )
    return str(page.locator(BOT).nth(count - 1).inner_text())


def answers(page: Any) -> list[str]:
    return [str(t) for t in page.locator(BOT).all_inner_texts()]


def questions(page: Any) -> list[str]:
    return [str(t).strip() for t in page.locator(USER).all_inner_texts()]


def open_settings(page: Any) -> None:
    """Open the Settings panel, unless its controls already show."""
    if not page.locator("#max_new_tokens input[type=number]").is_visible():
        page.locator("#settings").get_by_text("Settings").first.click()


def cap_answers(page: Any, tokens: int) -> None:
    """Set the page's max_new_tokens control: answers that may ramble (a stopped turn in the history tips this
    small model either way) then end in seconds; the footer's token count shows the cap held."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    number, slider = "#max_new_tokens input[type=number]", "#max_new_tokens input[type=range]"
    control = page.locator(number)
    open_settings(page)
    # The box shows (server-rendered, or as the panel opens) before the slider is live, and a value typed then is
    # lost when it takes over. The slider follows the box only once it is live: type until both hold the value.
    deadline = time.monotonic() + 60
    while True:
        control.fill(str(tokens))
        control.press("Tab")
        try:
            page.wait_for_function("([n, r, v]) => document.querySelector(n).value === v"
                                   " && document.querySelector(r).value === v", arg=[number, slider, str(tokens)],
                                   timeout=2_000)
            return
        except PlaywrightTimeout:
            assert time.monotonic() < deadline, f"the page's max_new_tokens control did not take {tokens}"


def footer_tokens(answer: str) -> int:
    stats = re.search(r"· (\d+) tokens · [\d.]+ tokens/s", answer)
    assert stats, answer
    return int(stats.group(1))


def check_stop(page: Any, count: int) -> str:
    """Ask for a long answer, press Stop while it streams; the answer must stop growing and say so."""
    send(page, STORY, enter=False)
    page.wait_for_function(
        "([selector, count]) => { const a = document.querySelectorAll(selector);"
        " return a.length === count && a[count - 1].innerText.length > 24; }",
        arg=[BOT, count],
        timeout=ANSWER_TIMEOUT_MS,
    )
    # A next message typed while the answer streams survives the updates that follow.
    draft = "a draft typed while the answer streams"
    page.locator("#message textarea").fill(draft)
    grown = len(answers(page)[count - 1])
    page.wait_for_function("([s, c, n]) => document.querySelectorAll(s)[c - 1].innerText.length > n + 24",
                           arg=[BOT, count, grown], timeout=ANSWER_TIMEOUT_MS)
    page.locator("#stop").click()
    stopped = wait_answer(page, count, "stopped", timeout=20_000)
    time.sleep(2.0)
    assert answers(page)[count - 1] == stopped, "the answer kept growing after Stop"
    assert page.locator("#message textarea").input_value() == draft, "the streaming answer wiped the draft"
    assert 2 <= footer_tokens(stopped) < 1000, stopped
    return stopped


@pytest.mark.slow
class TestOnTheEngine:
    """The page on the embedded model: the async vLLM engine in the app-ui process."""

    @pytest.fixture(scope="class")
    @classmethod
    def page_url(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
        port = free_port()
        log = tmp_path_factory.mktemp("app-ui") / "app-ui.log"
        # No sampling options: the page runs on the model's defaults, as a new user's does. A cap of 256 new
        # tokens: a rambling answer (see below) ends in seconds, not minutes.
        command = [*SWIFTCLI, "app-ui", "--port", str(port), "--max_model_len", "2048", "--max_new_tokens", "256"]
        url = f"http://127.0.0.1:{port}/"
        with running(command, url, log):
            yield url, log

    def test_answers_stops_regenerates_and_clears(self, page_url: tuple[str, Path], context: Any,
                                                   tmp_path: Path) -> None:
        url, log = page_url
        page = context.new_page()
        page.goto(url)
        send(page, "   ")  # an empty message is ignored
        time.sleep(0.5)
        assert answers(page) == []

        send(page, FRANCE)
        answer = wait_answer(page, 1)
        assert "Paris" in answer
        assert "smollm2-135m-instruct" in answer, "the model's name belongs under the answer"
        assert " tokens/s" in answer

        stopped = check_stop(page, 2)
        assert "stopped · smollm2-135m-instruct" in stopped
        # The engine request was aborted, not left running behind the page.
        deadline = time.monotonic() + 10
        while "aborted in the engine (0 requests still running)" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)

        # The page is still usable: the next question is answered (with the stopped turn in its history, which
        # tips this small model's answer either way, so only its completion is checked). That history can also
        # send it rambling: the page's own control caps it.
        cap_answers(page, 32)
        send(page, FRANCE)
        third = wait_answer(page, 3)
        assert third.split("\n")[0].strip() and "smollm2-135m-instruct · " in third
        assert footer_tokens(third) <= 32
        page.screenshot(path=str(tmp_path / "app-ui.png"), full_page=True)
        assert (tmp_path / "app-ui.png").stat().st_size > 10_000

        page.locator("#regenerate").click()
        # The old answer gives way to a new, finished one. (A short answer can stream and finish between two
        # polls, so the change is checked, not the moment without a stats line.)
        page.wait_for_function("([s, t, old]) => { const a = document.querySelectorAll(s);"
                               " return a.length === 3 && a[2].innerText !== old && a[2].innerText.includes(t); }",
                               arg=[BOT, FINISHED, answers(page)[2]], timeout=ANSWER_TIMEOUT_MS)
        regenerated = wait_answer(page, 3)  # the same history as the third answer: only completion is checked
        assert regenerated.split("\n")[0].strip() and "smollm2-135m-instruct · " in regenerated
        assert footer_tokens(regenerated) <= 32
        assert questions(page) == [FRANCE, STORY, FRANCE]

        page.locator("#clear").click()
        page.wait_for_function("(s) => document.querySelectorAll(s).length === 0", arg=BOT)
        send(page, FRANCE)
        assert "Paris" in wait_answer(page, 1)
        assert questions(page) == [FRANCE]

    def test_first_answers_are_right_and_the_settings_show_the_sampling(self, page_url: tuple[str, Path],
                                                                       context: Any) -> None:
        """Fresh conversations (a new tab each) on the defaults: the question shows above a right answer."""
        url, _ = page_url
        for _ in range(3):
            page = context.new_page()
            page.goto(url)
            send(page, FRANCE)
            answer = wait_answer(page, 1)
            assert "Paris" in answer, answer
            assert questions(page) == [FRANCE]
            question_box = page.locator(USER).first.bounding_box()
            answer_box = page.locator(BOT).first.bounding_box()
            assert question_box and answer_box and page.locator(USER).first.is_visible()
            assert question_box["y"] + question_box["height"] <= answer_box["y"] + 1, (question_box, answer_box)
            page.close()
        page = context.new_page()
        page.goto(url)
        open_settings(page)
        shown = {name: page.locator(f"#{name} input[type=number]").input_value()
                 for name in ("temperature", "top_k", "repetition_penalty")}
        assert float(shown["temperature"]) == 0.0 and float(shown["repetition_penalty"]) == 1.1, shown

    def test_two_tabs_chat_at_once_with_their_own_histories(self, page_url: tuple[str, Path],
                                                            context: Any) -> None:
        url, _ = page_url
        first, second = context.new_page(), context.new_page()
        first.goto(url)
        second.goto(url)
        arithmetic = "What is 2 + 2?"
        cap_answers(second, 32)  # its answer may ramble; the cap is this tab's own
        send(first, FRANCE)
        send(second, arithmetic)
        assert "Paris" in wait_answer(first, 1)
        assert footer_tokens(wait_answer(second, 1)) <= 32
        assert questions(first) == [FRANCE]
        assert questions(second) == [arithmetic]
        # A reload starts a new conversation; the other tab keeps its own.
        second.reload()
        send(second, FRANCE)
        wait_answer(second, 1)
        assert questions(second) == [FRANCE]
        assert questions(first) == [FRANCE]

    def test_too_long_message_is_an_error_in_the_page(self, page_url: tuple[str, Path], context: Any) -> None:
        url, _ = page_url
        page = context.new_page()
        page.goto(url)
        send(page, "hello " * 2500, enter=False)
        error = wait_answer(page, 1, "Error:")
        assert "context of 2048 tokens" in error
        send(page, FRANCE)
        assert "Paris" in wait_answer(page, 2)


@pytest.mark.slow
def test_api_url_front_end_to_swiftcli_deploy(context: Any, tmp_path: Path) -> None:
    """`--api_url` in front of a running `swiftcli deploy` (pt backend: quick to start) with an API key:
    streaming through the openai client, the served name under answers, Stop, a wrong key refused at start."""
    api_port, ui_port = free_port(), free_port()
    server = [*SWIFTCLI, "deploy", "--infer_backend", "pt", "--port", str(api_port), "--served_model_name",
              "smollm2-deploy", "--api_key", "sesame"]
    api = f"http://127.0.0.1:{api_port}/v1"
    with running(server, f"http://127.0.0.1:{api_port}/health", tmp_path / "deploy.log"):
        refused = invoke("app-ui", "--port", str(free_port()), "--api_url", api, "--api_key", "wrong")
        assert refused.exit_code == 1 and "refused the API key" in refused.output, refused.output

        # No sampling options: the controls start at what the server lists for a chat with its model.
        ui = [*SWIFTCLI, "app-ui", "--port", str(ui_port), "--api_url", api, "--api_key", "sesame"]
        with running(ui, f"http://127.0.0.1:{ui_port}/", tmp_path / "app-ui.log"):
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{ui_port}/")
            open_settings(page)
            shown = {name: page.locator(f"#{name} input[type=number]").input_value()
                     for name in ("temperature", "repetition_penalty")}
            assert float(shown["temperature"]) == 0.0 and float(shown["repetition_penalty"]) == 1.1, shown
            send(page, FRANCE)
            answer = wait_answer(page, 1)
            assert "Paris" in answer
            assert "smollm2-deploy · " in answer
            assert page.locator("#training-run").count() == 0, "a server without checkpoints has no run panel"
            assert "stopped · smollm2-deploy" in check_stop(page, 2)
            # The stopped turn is in this answer's history, which tips the small model either way: completion only.
            # It may also ramble: the page's control caps it, and the server honours that cap.
            cap_answers(page, 32)
            send(page, FRANCE)
            third = wait_answer(page, 3)
            assert third.split("\n")[0].strip() and "smollm2-deploy · " in third
            assert footer_tokens(third) <= 32
            page.screenshot(path=str(tmp_path / "app-ui-api.png"))


def test_api_dialect_messages_in_front_of_deploy(context: Any, deploy_server: Any, tmp_path: Path) -> None:
    """`--api_dialect messages`: the page asks deploy's /v1/messages through the anthropic client; the
    repetition guard deploy lists has no Messages field, so its control starts neutral."""
    ui_port = free_port()
    ui = [*SWIFTCLI, "app-ui", "--port", str(ui_port), "--api_url", deploy_server.root_url, "--api_dialect",
          "messages"]
    with running(ui, f"http://127.0.0.1:{ui_port}/", tmp_path / "app-ui.log"):
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{ui_port}/")
        open_settings(page)
        shown = {name: page.locator(f"#{name} input[type=number]").input_value()
                 for name in ("temperature", "repetition_penalty")}
        assert float(shown["temperature"]) == 0.0 and float(shown["repetition_penalty"]) == 1.0, shown
        send(page, FRANCE)
        assert "Paris" in wait_answer(page, 1)


@pytest.mark.slow
def test_fine_tuned_checkpoint_on_the_pt_backend(context: Any, lora_ckpt: Path, tmp_path: Path) -> None:
    """The seed's `--ckpt_dir` variant: a LoRA checkpoint, applied at load by the transformers backend."""
    port = free_port()
    ui = [*SWIFTCLI, "app-ui", "--ckpt_dir", str(lora_ckpt), "--infer_backend", "pt", "--port", str(port),
          "--temperature", "0", "--max_new_tokens", "3"]
    with running(ui, f"http://127.0.0.1:{port}/", tmp_path / "app-ui.log"):
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        send(page, FRANCE)
        answer = wait_answer(page, 1)
        stats = re.search(r"smollm2-135m-instruct \(checkpoint-10\) · (\d+) tokens · [\d.]+ tokens/s", answer)
        assert stats, answer
        assert 1 <= int(stats.group(1)) <= 3, "--max_new_tokens sets the page's default"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "120"})


def test_unreachable_api_url_is_reported_at_start() -> None:
    port = free_port()
    result = invoke("app-ui", "--port", str(free_port()), "--api_url", f"http://127.0.0.1:{port}/v1")
    assert result.exit_code == 1, result.output
    assert f"Error: cannot reach http://127.0.0.1:{port}/v1" in result.output
    assert "Hint:" in result.output and "Traceback" not in result.output


def test_busy_port_is_a_usage_error_before_loading_anything() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("app-ui", "--port", str(port))
    assert result.exit_code == 2, result.output
    assert f"Error: cannot serve on 127.0.0.1:{port}" in result.output


def test_api_url_that_is_not_a_url_is_a_usage_error() -> None:
    result = invoke("app-ui", "--port", str(free_port()), "--api_url", "localhost:8000")
    assert result.exit_code == 2, result.output
    assert "Error: --api-url must be an http(s) URL" in result.output


def test_api_url_and_a_local_checkpoint_exclude_each_other(tmp_path: Path) -> None:
    result = invoke("app-ui", "--api_url", "http://127.0.0.1:1/v1", "--ckpt_dir", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "Error: --api-url chats with a running server" in result.output


def test_help_has_examples_and_stays_light() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from swiftcli.cli.main import app\n"
        "r = CliRunner().invoke(app, ['app-ui', '--help'], env={'COLUMNS': '200'})\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'swiftcli app-ui --api-url http://127.0.0.1:8000/v1' in r.output, r.output\n"
        "heavy = [m for m in ('gradio', 'torch', 'vllm', 'transformers', 'openai') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_rendering_keeps_errors_out_of_the_model_history() -> None:
    from swiftcli.webui.app import chat_history, footer, new_turn, render

    done = {**new_turn("Hi"), "response": "Hello!", "tokens": 3, "seconds": 0.5, "status": "done"}
    failed = {**new_turn("x" * 10), "status": "error", "error": "too long"}
    stopped = {**new_turn("Tell"), "response": "Once", "tokens": 2, "seconds": 1.0, "status": "stopped"}
    assert chat_history([done, failed, stopped]) == [("Hi", "Hello!"), ("Tell", "Once")]
    assert footer(done, "m") == "m · 3 tokens · 6.0 tokens/s"
    assert footer(stopped, "m") == "stopped · m · 2 tokens · 2.0 tokens/s"
    messages = render([done, failed], "m")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[3]["content"] == "**Error:** too long"


@pytest.mark.slow
def test_engine_requests_carry_the_page_settings(embedded_spec: Any) -> None:
    """How the page's controls become an EngineRequest (template encoding, system box, room left)."""
    from types import SimpleNamespace

    from swiftcli.config.spec import GenerationConfig
    from swiftcli.engines.tokenizer import load_tokenizer
    from swiftcli.errors import ContextLengthError, InputError
    from swiftcli.registry.templates import get_template
    from swiftcli.webui import ChatSettings, EngineChatBackend

    tokenizer = load_tokenizer(embedded_spec)
    template = get_template(embedded_spec.template_type, tokenizer, embedded_spec.default_system)
    engine = SimpleNamespace(max_model_len=256, spec=embedded_spec)  # its context and modalities are read
    backend = EngineChatBackend(engine, template, GenerationConfig(), "m")
    settings = ChatSettings(system="Answer like a pirate.", temperature=0.0, top_p=0.5, max_new_tokens=1000)

    request = backend.request(FRANCE, [("Hi", "Hello!")], settings)
    prompt = tokenizer.decode(request.prompt_ids)
    assert "Answer like a pirate." in prompt and "Hello!" in prompt and prompt.count(FRANCE) == 1
    assert request.config.max_new_tokens == 256 - len(request.prompt_ids), "answers are cut to the room left"
    assert request.config.greedy and request.config.top_p == 0.5
    assert request.stop_token_ids == template.stop_token_ids

    no_system = backend.request(FRANCE, [], ChatSettings("", 0.7, 0.9, 16))
    assert template.default_system not in tokenizer.decode(no_system.prompt_ids)
    assert no_system.config.max_new_tokens == 16 and not no_system.config.greedy

    with pytest.raises(ContextLengthError, match="context of 256 tokens"):
        backend.request("hello " * 300, [], settings)

    assert not backend.takes_images
    with pytest.raises(InputError, match="takes text only, not images"):  # refused by name, never dropped
        backend.request("<image>" + FRANCE, [], settings, [str(ROOT / "docs" / "missing.png")])
