"""`swiftcli chat`: the session logic alone, the REPL in-process on the session engine (piped input), and the
real REPL in a pseudo-terminal (prompt_toolkit, Rich Live, Ctrl-C aborting a running request)."""

from __future__ import annotations

import json
import re
import sys
import time

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.errors import InputError, UsageError
from swiftcli.generation.chat import (
    ChatSession,
    Command,
    InputAssembler,
    TurnStats,
    parse_command,
    question_text,
    stable_text,
    suggest,
)

FRANCE = "What is the capital of France?"


# ---- engine-free session logic ----


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/exit", Command("exit")), ("/quit", Command("exit")), ("exit", Command("exit")), ("QUIT", Command("exit")),
        ("clear", Command("clear")), ("/clear", Command("clear")), ("reset-system", Command("reset-system")),
        ("multi-line", Command("multi")), ("single-line", Command("single")), ("/multi", Command("multi")),
        ("/system Be brief.", Command("system", "Be brief.")), ("/system", Command("system")),
        ("/set temperature 0.7", Command("set", "temperature 0.7")), ("/regen", Command("regen")),
        ("/save a.json", Command("save", "a.json")), ("/load a.json", Command("load", "a.json")),
        ("/stats", Command("stats")), ("/help", Command("help")), ("/frobnicate x", Command("unknown",
                                                                                           "/frobnicate x")),
        ("What is 2+2?", None), ("clear the table", None), ("//etc/hosts?", None),
    ],
)
def test_parse_command(line, command):
    assert parse_command(line) == command


def test_unknown_command_hint_suggests_the_close_one():
    assert "/stats" in suggest("/stat")
    assert "/help" in suggest("/zzz")
    assert question_text("//usr is a folder") == "/usr is a folder"


def test_triple_quote_blocks():
    assembler = InputAssembler()
    assert assembler.feed("plain") == "plain"
    assert assembler.feed('"""one line"""') == "one line"
    assert assembler.feed('"""') is None and assembler.open
    assert assembler.feed("first") is None
    assert assembler.feed("") is None
    assert assembler.feed('last"""') == "first\n\nlast"
    assert not assembler.open
    assert assembler.feed('"""start') is None
    assembler.cancel()
    assert not assembler.open


def test_stable_text_holds_back_a_half_decoded_character():
    assert stable_text("你好\ufffd") == "你好"
    assert stable_text("ok") == "ok"


def test_settings_are_validated():
    session = ChatSession()
    assert session.set("temperature", "0.7") == ("temperature", 0.7)
    assert session.set("max-new-tokens", "12") == ("max_new_tokens", 12)
    assert session.generation_overrides() == {"temperature": 0.7, "max_new_tokens": 12, "do_sample": True}
    for name, value in [("temperature", "-1"), ("top_p", "0"), ("top_k", "x"), ("max_new_tokens", "0"),
                        ("color", "red"), ("seed", "")]:
        with pytest.raises(UsageError):
            session.set(name, value)


def test_save_load_round_trip_and_bad_files(tmp_path):
    session = ChatSession(system="Be brief.", history=[["Hi", "Hello!"], ["你好", "你好！"]])
    session.set("top_k", "5")
    path = session.save(tmp_path / "sub" / "chat.json", "m")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["messages"][0] == {"role": "system", "content": "Be brief."} and data["model"] == "m"
    assert [p.name for p in path.parent.iterdir()] == ["chat.json"]  # no temporary file left behind
    loaded = ChatSession.load(path)
    assert (loaded.system, loaded.history, loaded.settings) == (session.system, session.history, {"top_k": 5})
    # OpenAI messages and ms-swift history load too.
    (tmp_path / "m.json").write_text(json.dumps([{"role": "user", "content": "q"},
                                                 {"role": "assistant", "content": "a"}]))
    assert ChatSession.load(tmp_path / "m.json").history == [["q", "a"]]
    (tmp_path / "h.json").write_text(json.dumps({"history": [["q", "a"]], "system": "s"}))
    assert ChatSession.load(tmp_path / "h.json").system == "s"
    assert ChatSession.load(tmp_path / "h.json", single_round=True).history == []
    (tmp_path / "bad.json").write_text("{\n  nope")
    with pytest.raises(InputError, match=r"bad\.json:2"):
        ChatSession.load(tmp_path / "bad.json")
    (tmp_path / "order.json").write_text(json.dumps({"messages": [{"role": "assistant", "content": "a"}]}))
    with pytest.raises(InputError, match="out of order"):
        ChatSession.load(tmp_path / "order.json")
    with pytest.raises(InputError, match="does not exist"):
        ChatSession.load(tmp_path / "missing.json")
    with pytest.raises(InputError, match="directory"):
        session.save(tmp_path)


def test_single_round_session_keeps_no_history():
    session = ChatSession(single_round=True)
    session.add_turn("q", "a")
    assert session.history == [] and session.request("x")["history"] == []
    session.record(TurnStats(10, 5, 0.5))
    assert "single-round" in session.stats_text()


# ---- the REPL in-process with a scripted engine: streaming display of multi-byte text ----


class ScriptedEngine:
    """Streams fixed cumulative texts, as vLLM does when a character spans tokens (a transient U+FFFD)."""

    def __init__(self, texts):
        self.texts = texts
        self.closed = 0

    def stream(self, requests):
        from swiftcli.engines.base import Completion, RequestResult

        request = requests[0]
        try:
            for i, text in enumerate(self.texts):
                last = i == len(self.texts) - 1
                yield RequestResult(request.request_id, len(request.prompt_ids),
                                    [Completion(0, text, list(range(i + 1)), "stop" if last else None)], last)
        finally:
            self.closed += 1


def test_conversation_is_one_model_for_the_terminal_and_the_server():
    from swiftcli.generation.chat import Conversation

    turns = Conversation.of([("Hi", "Hello!")], "Be brief.")
    assert turns.messages("Capital?") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Capital?"}]
    assert turns.request("Capital?") == {"query": "Capital?", "history": [["Hi", "Hello!"]], "system": "Be brief."}
    single = Conversation(single_round=True)
    single.add_turn("q", "a")
    assert single.history == [] and single.messages("q") == [{"role": "user", "content": "q"}]
    assert isinstance(ChatSession(), Conversation)


def test_chat_with_a_server_keeps_the_conversation_and_sends_set(tmp_path):
    """`chat --api_url` against a server that records each request: the same REPL and conversation as a local
    chat; /set changes what the next request sends; /clear empties the history sent."""
    from recording_server import RecordingServer

    saved = tmp_path / "c.json"
    script = "\n".join(["Capital of France?", "/set temperature 0.5", "And of Italy?", f"/save {saved}",
                        "/clear", "Hello", "/think on", "/exit"]) + "\n"
    with RecordingServer() as server:
        server.chat_sampling = {"temperature": 0.0, "repetition_penalty": 1.1}
        result = CliRunner().invoke(app, ["chat", "--api_url", server.url, "--no-markdown", "--system",
                                          "Be brief."], input=script, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        first, second, third = server.bodies
    out = result.output
    assert f"recorder at {server.url}" in out and "Sampling: greedy, repetition_penalty 1.1" in out, out
    assert (first["temperature"], first["repetition_penalty"]) == (0.0, 1.1)
    assert second["temperature"] == 0.5 and [m["content"] for m in second["messages"]] == [
        "Be brief.", "Capital of France?", "Paris.", "And of Italy?"]
    assert [m["role"] for m in third["messages"]] == ["system", "user"]
    assert "has no thinking switch" in out and "Traceback" not in out
    assert json.loads(saved.read_text())["model"] == "recorder"


def test_plain_stream_never_shows_a_broken_character(monkeypatch, embedded_spec):
    from rich.console import Console
    from transformers import AutoTokenizer

    from swiftcli.cli.chat import Repl
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.loading import Session
    from swiftcli.registry.templates import get_template

    engine = ScriptedEngine(["你", "你\ufffd", "你好", "你好，世\ufffd", "你好，世界"])
    template = get_template(embedded_spec.template_type, AutoTokenizer.from_pretrained(embedded_spec.model_dir))
    console = Console(file=__import__("io").StringIO(), force_terminal=False, width=80)
    repl = Repl(Session(embedded_spec, engine, template, "vllm", GenerationConfig()), GenerationConfig(),
                ChatSession(), markdown=False, history_file=None, console=console)
    chunks = []
    monkeypatch.setattr(console.file, "write", lambda s: chunks.append(s) or len(s))
    repl.answer("hi")
    assert "".join(chunks).startswith("你好，世界")
    assert not any("\ufffd" in c for c in chunks)
    assert repl.session.history == [["hi", "你好，世界"]] and engine.closed == 1


# ---- the real REPL in a pseudo-terminal: one process covers the interactive checks. It runs before the
# session engine starts, so that only one engine runs at a time. ----


ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[=>]|\r")


def plain(text: str) -> str:
    return ANSI.sub("", text)


@pytest.mark.slow
def test_repl_in_a_terminal(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    from server_utils import command_env

    env = command_env(VLLM_LOGGING_LEVEL="ERROR", PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm",
                      SWIFTCLI_HOME=str(tmp_path / "home"))
    # `swiftcli infer` with no query on a terminal is the chat, as in ms-swift; no sampling options: a new user's
    # first chat runs on the model's defaults and must answer right.
    child = pexpect.spawn(sys.executable, ["-m", "swiftcli.cli", "infer", "--max_new_tokens", "300"],
                          env=env, encoding="utf-8", timeout=300, dimensions=(40, 100))
    log = []
    child.logfile_read = type("Log", (), {"write": lambda self, s: log.append(s), "flush": lambda self: None})()

    # prompt_toolkit turns bracketed paste on when a prompt is ready and off when a line is accepted: output
    # between the two is what the chat printed for that line.
    ready, accepted = "\x1b[?2004h", "\x1b[?2004l"

    def reply(prompts: int = 1) -> str:
        out = ""
        for _ in range(prompts):
            child.expect_exact(accepted)
            child.expect_exact(ready)
            out += plain(child.before)
        return out

    def ask(line: str, prompts: int = 1) -> str:
        child.sendline(line)
        return reply(prompts)

    try:
        child.expect_exact(ready)
        child.timeout = 120
        banner = plain(child.before)
        assert "Sampling: greedy, repetition_penalty 1.1, max_new_tokens 300" in banner, banner
        # Fresh conversations, one after another: each first answer is right.
        for _ in range(3):
            assert "Paris" in ask(FRANCE)
            assert "History cleared" in ask("/clear")
        assert "Paris" in ask(FRANCE)
        # Ctrl-C mid-answer stops it; the engine lives on and the next question is answered.
        child.sendline("Write a very long story about a dragon who learns to read.")
        child.expect_exact(accepted)
        time.sleep(2)
        child.sendcontrol("c")
        child.expect("Stopped")
        child.expect_exact(ready)
        # Ctrl-C on an empty prompt hints how to leave.
        child.sendcontrol("c")
        assert "Ctrl-D or /exit" in reply()
        assert "/help lists commands" in ask("/nope")
        stats = ask("/stats")
        assert "answers: 4 (1 stopped)" in stats and "history: 1 turns" in stats
        saved = tmp_path / "chat.json"
        assert "Saved 1 turns" in ask(f"/save {saved}")
        assert "History cleared" in ask("/clear")
        assert "history: 0 turns" in ask("/stats")
        assert "Loaded 1 turns" in ask(f"/load {saved}")
        assert "history: 1 turns" in ask("/stats")
        assert "System prompt set" in ask("/system You are a geography teacher.")
        assert "Paris" in ask('"""Tell me again:\nwhat is the capital of France?"""', prompts=2)
        assert "reset to the template's default" in ask("/system")
        child.sendeof()
        child.expect(pexpect.EOF, timeout=60)
        child.close()
        assert child.exitstatus == 0
    finally:
        if child.isalive():
            child.kill(9)
        print(plain("".join(log))[-4000:])  # shown when the test fails
    transcript = plain("".join(log))
    assert "Traceback" not in transcript and "\ufffd" not in transcript
    saved_messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in saved_messages] == ["user", "assistant"]
    history = (tmp_path / "home" / "chat_history").read_text()
    assert FRANCE in history


# ---- the REPL on the real engine ----


def test_piped_chat_answers_and_keeps_history(lend_session_engine, tmp_path):
    saved = tmp_path / "c.json"
    script = "\n".join([FRANCE, "/stats", "/frob", "/set temperature hot", f"/save {saved}", "/clear", "/stats",
                        "/exit", "never sent"]) + "\n"
    result = CliRunner().invoke(app, ["chat", "--no-markdown", "--temperature", "0", "--max_new_tokens", "40"],
                                input=script)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Paris" in out and "tok/s" in out
    assert "history: 1 turns" in out and "history: 0 turns" in out
    assert "unknown command '/frob'" in out and "temperature must be a number" in out
    assert "Traceback" not in out and "never sent" not in out
    messages = json.loads(saved.read_text())["messages"]
    assert messages[0] == {"role": "user", "content": FRANCE} and "Paris" in messages[1]["content"]


def test_single_round_template_says_so_and_keeps_no_history(lend_session_engine):
    result = CliRunner().invoke(
        app, ["chat", "--no-markdown", "--template_type", "default-generation", "--max_new_tokens", "8",
              "--temperature", "0"], input="The capital of France is\n/stats\n")
    assert result.exit_code == 0, result.output
    assert "single-round" in result.output and "history: 0 turns" in result.output
