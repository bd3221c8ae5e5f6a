"""`swiftcli chat --api_url`: the same REPL (commands, history, Ctrl-C stops an answer) with answers streamed from
a running server. Stopping an answer closes its connection, which aborts the request on the server."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text

from swiftcli.apidialect import refuse_uncarried
from swiftcli.cli import output
from swiftcli.cli.chat import ChatRepl
from swiftcli.cli.terminal import AnswerView, ctrl_c_as_byte
from swiftcli.config.sampling import describe_sent
from swiftcli.config.spec import GenerationConfig
from swiftcli.errors import SwiftError
from swiftcli.generation.chat import ChatSession, TurnStats, stable_text


@dataclass(frozen=True)
class ServerTemplate:
    """What the chat's commands ask of a chat template, for a server that applies its own."""

    template_type: str = "the server's"
    support_system: bool = True
    support_multi_round: bool = True
    default_system: str | None = None
    has_thinking_switch: bool = False


class RemoteRepl(ChatRepl):
    """The terminal chat with a server: the same loop, commands and conversation as a local chat; each answer
    is the conversation's messages sent with the sampling in force."""

    template = ServerTemplate()

    def __init__(self, remote: Any, sampling: dict[str, Any], session: Any, console: Any, markdown: bool,
                 history_file: Path | None) -> None:
        # /set is checked as a local chat checks it: over the settings sent (the rest are the server's).
        super().__init__(GenerationConfig().copy(**sampling), session, markdown, history_file, console=console)
        self.remote, self.sampling, self.model_name = remote, sampling, remote.model

    @classmethod
    def start(cls, remote: Any, sampling: dict[str, Any], system: str | None, console: Any, markdown: bool,
              history_file: Path | None) -> RemoteRepl:
        return cls(remote, sampling, ChatSession(system=system), console, markdown, history_file)

    def banner(self) -> None:
        api = "" if self.remote.dialect == "chat" else f" ({self.remote.dialect} API)"
        self.note(f"{self.remote.model} at {self.remote.base_url}{api}. /help for commands, Ctrl-C stops an answer, "
                  "Ctrl-D or /exit quits.")
        self.note(f"Sampling: {describe_sent(self.sent())}.")

    def sent(self) -> dict[str, Any]:
        return {**self.sampling, **self.session.generation_overrides()}

    def refused(self) -> bool:
        """Say so when a /set value has no field in the server's API (it would be dropped otherwise)."""
        try:
            refuse_uncarried(self.remote.dialect, self.session.generation_overrides())
        except SwiftError as exc:
            output.render_error(exc)
            return True
        return False

    def handle(self, command: Any) -> bool:
        if command.name == "set" and not command.arg:
            self.note(f"usage: /set NAME VALUE; now sending: {describe_sent(self.sent())}")
            return False
        return super().handle(command)

    def answer(self, query: str) -> None:
        if self.refused():
            return
        view = AnswerView(self.console, self.markdown)
        progress = None
        interrupted = False
        t0 = time.perf_counter()
        stream = self.remote.stream(self.session.request(query), self.sent())
        try:
            with ctrl_c_as_byte() as pressed, view:
                for progress in stream:
                    view.update(stable_text(progress.text))
                    if pressed():
                        interrupted = True
                        break
                if progress is not None and progress.finished:
                    view.update(progress.text, final=True)
        except KeyboardInterrupt:
            interrupted = True
        except SwiftError as exc:
            output.render_error(exc)
            return
        finally:
            with contextlib.suppress(Exception):
                stream.close()  # closes the connection: the server aborts the request
        seconds = time.perf_counter() - t0
        tokens = progress.output_tokens if progress is not None else 0
        stats = TurnStats(progress.prompt_tokens if progress is not None else 0, tokens, seconds, interrupted)
        self.session.record(stats)
        if interrupted:
            self.console.print(Text.assemble(("Stopped", "yellow"),
                                             (f" after {tokens} tokens; not kept in the history.", "dim")))
            return
        self.session.add_turn(query, progress.text if progress is not None else "")
        cut = ", cut at max_new_tokens" if progress is not None and progress.finish_reason == "length" else ""
        self.note(f"{tokens} tokens, {stats.tokens_per_second:.1f} tok/s, {seconds:.1f} s{cut}")
