"""The terminal side of the chat: the streaming answer view, Ctrl-C as a key, and line input with history.

Ctrl-C while an answer streams stops that answer only. In a terminal, Ctrl-C would send SIGINT to the whole
process group, and vLLM's engine process exits on SIGINT; so while answering, the terminal's signal keys are
turned off and a Ctrl-C byte on stdin aborts the request instead (closing the engine stream aborts it).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CTRL_C = b"\x03"


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


# Lines the chat reads before the terminal's: `swiftcli chat "first question"` puts its question here.
_queued: list[str] = []


def queue_input(text: str) -> None:
    """The chat's next input line is `text`, as if typed (it is shown after the prompt)."""
    _queued.append(text)


class LineReader:
    """prompt_toolkit input with history and editing on a terminal; plain lines from a pipe. Queued lines
    (queue_input) come first."""

    def __init__(self, history_file: Path | None, multiline: Callable[[], bool]) -> None:
        self.multiline = multiline
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
        multiline = Condition(self.multiline)

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
        if _queued:
            line = _queued.pop(0)
            sys.stdout.write(f"{prompt}{line}\n")
            sys.stdout.flush()
            return line
        if self.session is not None:
            return str(self.session.prompt(prompt))
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")
