"""`swiftcli chat`: a terminal chat with streaming Markdown answers, history, and commands (/help).

Ctrl-C while an answer streams stops that answer only. In a terminal, Ctrl-C would send SIGINT to the whole
process group, and vLLM's engine process exits on SIGINT; so while answering, the terminal's signal keys are
turned off and a Ctrl-C byte on stdin aborts the request instead (closing the engine stream aborts it).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftcli.cli.errors import handled
from swiftcli.cli.options import GenerationOptions, ModelOptions, with_options
from swiftcli.cli.remote import ApiKeyOption, ApiUrlOption

EXAMPLES = """

[b]Examples[/b]

  swiftcli chat

  swiftcli chat --model_type qwen2_5-7b-instruct --system "Answer in French." --temperature 0.7

  swiftcli chat --ckpt_dir output/checkpoint-100 --no-markdown

  swiftcli chat --api_url http://127.0.0.1:8000/v1    [dim]# a running swiftcli deploy[/dim]
"""

CTRL_C = b"\x03"


@with_options(model=ModelOptions, gen=GenerationOptions)
@handled
def chat_command(
    no_markdown: Annotated[bool, typer.Option("--no-markdown", "--no_markdown",
                                              help="Print answers as plain text instead of rendered Markdown.")]
    = False,
    history_file: Annotated[Path | None, typer.Option(
        "--history_file", "--history-file", help="Input history file; default $SWIFTCLI_HOME/chat_history.",
        dir_okay=False)] = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    *,
    model: ModelOptions,
    gen: GenerationOptions,
) -> None:
    """Chat with the model in the terminal: streaming answers, history, /help for commands."""
    from swiftcli.cli.remote import ApiOptions

    run_chat(model, gen, markdown=not no_markdown, history_file=history_file,
             api=ApiOptions(api_url, api_key) if api_url else None)


def run_chat(model: ModelOptions, gen: GenerationOptions, markdown: bool = True,
             history_file: Path | None = None, api: Any = None) -> None:
    from rich.console import Console

    if api is not None:
        from swiftcli.cli import remote

        remote.check_options(model)
        remote.run_chat(api, model, gen, markdown, history_file)
        return

    from swiftcli.cli.common import generation_config, load
    from swiftcli.cli.errors import stderr
    from swiftcli.inference.chat import ChatSession

    console = Console(highlight=False)
    with stderr.status("Loading the model...", spinner="dots") if sys.stderr.isatty() else contextlib.nullcontext():
        loaded = load(model, seed=gen.seed)
    config = generation_config(loaded.engine.generation_config, gen)
    session = ChatSession(system=model.system, single_round=not loaded.template.support_multi_round)
    Repl(loaded, config, session, console, markdown, history_file).run()


class Repl:
    def __init__(self, loaded: Any, config: Any, session: Any, console: Any, markdown: bool,
                 history_file: Path | None) -> None:
        self.loaded = loaded
        self.config = config
        self.session = session
        self.console = console
        self.markdown = markdown
        self.multiline = False
        self.reader = LineReader(history_file, self)

    # ---- the loop ----

    def run(self) -> None:
        self.banner()
        with terminal_signals_off():
            self._loop()

    def _loop(self) -> None:
        from swiftcli.inference.chat import InputAssembler, parse_command, question_text

        assembler = InputAssembler()
        while True:
            try:
                line = self.reader.read("... " if assembler.open else ">>> ")
            except EOFError:
                self.console.print()
                return
            except KeyboardInterrupt:
                if assembler.open:
                    assembler.cancel()
                    self.note("Block dropped.")
                else:
                    self.note("(Ctrl-D or /exit to quit)")
                continue
            text = assembler.feed(line)
            if text is None:
                continue
            if not assembler.open and text == line:
                command = parse_command(line)
                if command is not None:
                    if self.handle(command):
                        return
                    continue
                text = question_text(line)
            if text.strip():
                self.answer(text)

    def banner(self) -> None:
        spec, template = self.loaded.spec, self.loaded.template
        self.note(f"{spec.name} ({self.loaded.backend}, template {template.template_type}). "
                  "/help for commands, Ctrl-C stops an answer, Ctrl-D or /exit quits.")
        from swiftcli.config.sampling import describe_sampling

        self.note(f"Sampling: {describe_sampling(self.config)} (/set to change).")
        if self.session.single_round:
            self.console.print(f"[yellow]Template {template.template_type!r} is single-round: each message is "
                               "answered on its own and no history is kept.[/]")

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{_escape(text)}[/]")

    def handle(self, command: Any) -> bool:
        """Run a command; True means leave the chat."""
        from swiftcli.errors import SwiftError
        from swiftcli.inference.chat import ChatSession, help_text, suggest

        name, arg = command.name, command.arg
        try:
            if name == "exit":
                return True
            if name == "help":
                self.console.print(_escape(help_text()))
            elif name == "clear":
                self.session.clear()
                self.note("History cleared.")
            elif name == "system":
                self.set_system(arg or None)
            elif name == "reset-system":
                try:
                    text = self.reader.read("[SYSTEM] ")
                except (EOFError, KeyboardInterrupt):
                    text = ""
                self.session.clear()
                self.set_system(text.strip() or None)
            elif name == "set":
                key, _, value = arg.partition(" ")
                if not key:
                    current = {k: getattr(self.current_config(), k) for k in
                               ("temperature", "top_p", "top_k", "max_new_tokens", "seed")}
                    self.note("usage: /set NAME VALUE; now " + ", ".join(f"{k}={v}" for k, v in current.items()))
                else:
                    key, number = self.session.set(key, value)
                    self.current_config()  # validate the whole config now, not at the next answer
                    self.note(f"{key} = {number}")
            elif name == "regen":
                query = self.session.pop_last()
                if query is None:
                    self.note("Nothing to answer again yet.")
                else:
                    self.answer(query)
            elif name == "save":
                if not arg:
                    self.note("usage: /save FILE")
                else:
                    path = self.session.save(arg, self.loaded.spec.name)
                    self.note(f"Saved {len(self.session.history)} turns to {path}.")
            elif name == "load":
                if not arg:
                    self.note("usage: /load FILE")
                else:
                    loaded = ChatSession.load(arg, single_round=self.session.single_round)
                    loaded.turns = self.session.turns
                    self.session = loaded
                    self.note(f"Loaded {len(loaded.history)} turns from {arg}.")
            elif name == "stats":
                self.console.print(_escape(self.session.stats_text()))
            elif name == "multi":
                self.multiline = True
                self.note("Multi-line input: Enter adds a line; Esc Enter or a line ending in # sends. "
                          "/single to go back.")
            elif name == "single":
                self.multiline = False
                self.note("Single-line input.")
            else:
                self.console.print(f"[yellow]{_escape(suggest(arg))}[/]")
        except SwiftError as exc:
            self.console.print(f"[red]{_escape(exc.message)}[/]" + (f" [dim]({_escape(exc.hint)})[/]"
                                                                       if exc.hint else ""))
        return False

    def set_system(self, text: str | None) -> None:
        template = self.loaded.template
        if text is not None and not template.support_system:
            self.console.print(f"[red]Template {template.template_type!r} has no system prompt.[/]")
            return
        self.session.system = text
        if text is None:
            default = template.default_system
            self.note("System prompt reset to the template's default" + (f": {default}" if default else " (none)."))
        else:
            self.note("System prompt set.")

    def current_config(self) -> Any:
        return self.config.copy(**self.session.generation_overrides())

    # ---- answering ----

    def answer(self, query: str) -> None:
        from swiftcli.errors import SwiftError
        from swiftcli.inference.chat import TurnStats, stable_text
        from swiftcli.inference.core import encode_request

        try:
            request = encode_request(self.loaded.template, self.session.request(query), self.current_config())
        except SwiftError as exc:
            self.console.print(f"[red]{_escape(exc.message)}[/]")
            return
        view = AnswerView(self.console, self.markdown)
        state = None
        interrupted = False
        t0 = time.perf_counter()
        stream = self.loaded.engine.stream([request])
        try:
            with ctrl_c_as_byte() as pressed, view:
                for state in stream:
                    view.update(stable_text(state.outputs[0].text) if state.outputs else "")
                    if pressed():
                        interrupted = True
                        break
                if state is not None and state.finished and state.outputs:
                    view.update(state.outputs[0].text, final=True)
        except KeyboardInterrupt:
            interrupted = True
        except SwiftError as exc:
            self.console.print(f"[red]{_escape(exc.message)}[/]")
            return
        finally:
            with contextlib.suppress(Exception):
                stream.close()  # aborts the request if it is still running
        seconds = time.perf_counter() - t0
        tokens = state.output_tokens if state is not None else 0
        prompt = len(request.prompt_ids)
        stats = TurnStats(prompt, tokens, seconds, interrupted)
        self.session.record(stats)
        if interrupted:
            self.console.print(f"[yellow]Stopped[/] [dim]after {tokens} tokens; not kept in the history.[/]")
            return
        response = state.outputs[0].text if state is not None and state.outputs else ""
        self.session.add_turn(query, response)
        reason = state.outputs[0].finish_reason if state is not None and state.outputs else None
        cut = ", cut at max_new_tokens" if reason == "length" else ""
        self.note(f"{tokens} tokens, {stats.tokens_per_second:.1f} tok/s, {seconds:.1f} s{cut}")


class AnswerView:
    """Shows a streaming answer: Markdown re-rendered live (its tail while it is taller than the screen), or
    plain text written as it grows."""

    def __init__(self, console: Any, markdown: bool) -> None:
        self.console = console
        self.markdown = markdown and console.is_terminal
        self.shown = ""
        self.live: Any = None

    def __enter__(self) -> AnswerView:
        if self.markdown:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=10, transient=True,
                             vertical_overflow="crop")
            self.live.__enter__()
        return self

    def update(self, text: str, final: bool = False) -> None:
        if self.markdown:
            self.shown = text
            if not final:
                self.live.update(self._render(self._tail(text)))
            return
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.console.file.write(text[len(self.shown):])
            self.console.file.flush()
            self.shown = text

    def _tail(self, text: str) -> str:
        room = max(self.console.size.height - 2, 4)
        lines = text.splitlines()
        return "\n".join(lines[-room:]) if len(lines) > room else text

    def _render(self, text: str) -> Any:
        from rich.markdown import Markdown

        return Markdown(text)

    def __exit__(self, *exc: Any) -> None:
        if self.markdown:
            self.live.__exit__(*exc)
            if self.shown:
                self.console.print(self._render(self.shown))
        else:
            self.console.file.write("\n")
            self.console.file.flush()


@contextlib.contextmanager
def terminal_signals_off() -> Iterator[None]:
    """For the whole chat, Ctrl-C on the terminal is a key, not SIGINT to the process group (which would stop
    vLLM's engine process too): the prompt reads it as "clear the line", an answer as "stop"."""
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    if fd is None:
        yield
        return
    import termios

    saved = termios.tcgetattr(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ISIG
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


@contextlib.contextmanager
def ctrl_c_as_byte() -> Iterator[Any]:
    """While active, Ctrl-C on a terminal arrives as a byte instead of SIGINT; yields a `pressed()` check.

    Typed keys are not echoed meanwhile (they would scramble the streaming answer) and are dropped.
    """
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    if fd is None:
        yield lambda: False
        return
    import termios

    saved = termios.tcgetattr(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~(termios.ISIG | termios.ICANON | termios.ECHO)
    attrs[6][termios.VMIN] = 0
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)

    def pressed() -> bool:
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready) and CTRL_C in os.read(fd, 1024)

    try:
        yield pressed
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


class LineReader:
    """prompt_toolkit input with history and editing on a terminal; plain lines from a pipe."""

    def __init__(self, history_file: Path | None, repl: Repl) -> None:
        self.repl = repl
        self.session: Any = None
        if sys.stdin.isatty() and sys.stdout.isatty():
            self.session = self._prompt_session(history_file)

    def _prompt_session(self, history_file: Path | None) -> Any:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.filters import Condition
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.key_binding import KeyBindings

        from swiftcli.config.paths import swiftcli_home

        path = history_file or swiftcli_home() / "chat_history"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            history: Any = FileHistory(str(path))
        except OSError:
            history = InMemoryHistory()
        keys = KeyBindings()
        multiline = Condition(lambda: self.repl.multiline)

        @keys.add("c-c")
        def _(event: Any) -> None:
            buffer = event.app.current_buffer
            if buffer.text:
                buffer.reset()
            else:
                event.app.exit(exception=KeyboardInterrupt())

        @keys.add("enter", filter=multiline)
        def _(event: Any) -> None:
            buffer = event.app.current_buffer
            if buffer.text.rstrip().endswith("#"):
                # ms-swift's multi-line mode ends a message with '#'.
                buffer.text = buffer.text.rstrip()[:-1]
                buffer.validate_and_handle()
            else:
                buffer.insert_text("\n")

        @keys.add("escape", "enter", filter=multiline)
        def _(event: Any) -> None:
            event.app.current_buffer.validate_and_handle()

        return PromptSession(history=history, key_bindings=keys, multiline=multiline,
                             prompt_continuation=lambda width, line, wrap: "... ".rjust(width))

    def read(self, prompt: str) -> str:
        if self.session is not None:
            return str(self.session.prompt(prompt))
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


chat_command.__doc__ = (chat_command.__doc__ or "") + EXAMPLES
