"""`swiftcli chat`: a terminal chat with streaming Markdown answers, history, and commands (/help).

The REPL's commands are a table (name -> help, handler); the help texts and parsing live in
swiftcli.generation.chat, the terminal handling (Ctrl-C as a key, the live view) in cli/terminal.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from swiftcli.cli import output, remote
from swiftcli.cli.chat_thinking import ThinkingAnswerView, think_command
from swiftcli.cli.common import load
from swiftcli.cli.errors import handled
from swiftcli.cli.options import PromptArgument, questions, with_options
from swiftcli.cli.remote import ApiKeyOption, ApiOptions, ApiUrlOption, check_dialect
from swiftcli.cli.terminal import LineReader, ctrl_c_as_byte, queue_input, terminal_signals_off
from swiftcli.config.commands import ApiDialectOptions
from swiftcli.config.options import ModelOptions
from swiftcli.config.sampling import describe_sampling, interactive_generation
from swiftcli.config.spec import EngineConfig, GenerationOverrides
from swiftcli.engines.modalities import check_accepts
from swiftcli.errors import SwiftError, UsageError
from swiftcli.generation.chat import (
    COMMANDS,
    ChatSession,
    InputAssembler,
    TurnStats,
    help_text,
    parse_command,
    question_text,
    stable_text,
    suggest,
)
from swiftcli.generation.core import encode_request
from swiftcli.generation.media import load_image
from swiftcli.generation.thinking import split_thinking

EXAMPLES = """

[b]Examples[/b]

  swiftcli chat "What is the capital of France?"

  swiftcli chat --model-type qwen2_5-7b-instruct --system "Answer in French." --temperature 0.7

  swiftcli chat --api-url http://127.0.0.1:8000/v1    [dim]# a running swiftcli deploy[/dim]
"""


@with_options(model=ModelOptions, engine=EngineConfig, gen=GenerationOverrides, dialect=ApiDialectOptions)
@handled
def chat_command(
    prompt: PromptArgument = None,
    no_markdown: Annotated[bool, typer.Option("--no-markdown",
                                              help="Print answers as plain text instead of rendered Markdown.")]
    = False,
    history_file: Annotated[Path | None, typer.Option(
        "--history-file", help="Input history file; default $SWIFTCLI_HOME/chat_history.",
        dir_okay=False)] = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    *,
    model: ModelOptions,
    engine: EngineConfig,
    gen: GenerationOverrides,
    dialect: ApiDialectOptions,
) -> None:
    """Chat with the model in the terminal: streaming answers, history, /help for commands."""

    api_dialect = check_dialect(api_url, dialect)
    for question in questions(prompt, command="chat"):  # the first question, as if typed
        queue_input(question)
    run_chat(model, engine, gen, markdown=not no_markdown, history_file=history_file,
             api=ApiOptions(api_url, api_key, dialect=api_dialect) if api_url else None)


def run_chat(model: ModelOptions, engine: EngineConfig, gen: GenerationOverrides, markdown: bool = True,
             history_file: Path | None = None, api: Any = None) -> None:
    if api is not None:
        remote.check_options(model, engine)
        remote.run_chat(api, model, gen, markdown, history_file)
        return

    loaded = load("chat", model, engine, gen)
    session = ChatSession(system=model.system, single_round=not loaded.template.support_multi_round)

    Repl(loaded, interactive_generation(loaded.spec, gen.given()), session, markdown, history_file).run()


class ChatRepl:
    """The terminal chat: the input loop, the commands and the conversation (`ChatSession`). Where answers come
    from is a subclass's: `Repl` (a local engine) or `cli.remote_chat.RemoteRepl` (a server).

    `template` is what the commands ask of the chat template: template_type, support_system, default_system,
    has_thinking_switch."""

    model_name: str
    template: Any

    def __init__(self, config: Any, session: Any, markdown: bool, history_file: Path | None,
                 console: Any = None) -> None:
        self.config = config
        self.session = session
        self.console = console or output.stdout
        self.markdown = markdown
        self.multiline = False
        self.reader = LineReader(history_file, lambda: self.multiline)
        self.show_thinking = True
        self.enable_thinking: bool | None = None  # None: the template's (or --enable_thinking's) default
        handlers: dict[str, Callable[[str], bool | None]] = {
            "help": self.show_help, "exit": lambda arg: True, "clear": self.clear, "system": self.system,
            "reset-system": self.reset_system, "set": self.set_value, "regen": self.regen, "save": self.save,
            "load": self.load_history, "stats": self.stats, "multi": self.multi, "single": self.single,
            "think": self.think, "image": self.attach_image,
        }
        # name -> (help, handler): one table, so a command cannot be listed without a handler or the reverse
        self.commands = {name: (COMMANDS[name], handler) for name, handler in handlers.items()}

    # ---- the loop ----

    def run(self) -> None:
        self.banner()
        with terminal_signals_off():
            self._loop()

    def _loop(self) -> None:
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
        raise NotImplementedError

    def note(self, text: str) -> None:
        self.console.print(Text(text, style="dim"))

    def handle(self, command: Any) -> bool:
        """Run a command; True means leave the chat."""

        entry = self.commands.get(command.name)
        if entry is None:
            self.console.print(Text(suggest(command.arg), style="yellow"))
            return False
        try:
            return bool(entry[1](command.arg))
        except SwiftError as exc:
            output.render_error(exc)
        return False

    # ---- commands: each takes the text after the name; True leaves the chat ----

    def show_help(self, arg: str) -> None:
        self.console.print(Text(help_text()))

    def clear(self, arg: str) -> None:
        self.session.clear()
        self.note("History cleared.")

    def attach_image(self, arg: str) -> None:
        ref = arg.strip()
        if not ref:
            self.session.pending_images.clear()
            self.note("Attached images dropped.")
            return
        spec = self.image_spec()
        if spec is None:
            raise UsageError("/image needs a local model", "leave out --api_url to chat with images")
        check_accepts(spec, {"image": [ref]})
        load_image(ref)  # a bad path or image fails now, not at the next question
        self.session.pending_images.append(ref)
        self.note(f"Image {len(self.session.pending_images)} attached to the next question.")

    def image_spec(self) -> Any:
        """The model spec whose modalities /image checks; None where images cannot be sent (a server)."""
        return None

    def ask_tagged_images(self, query: str) -> bool:
        """ms-swift's way: for each <image> tag beyond the attached images, ask for a path; False if cancelled."""
        while query.count("<image>") > len(self.session.pending_images):
            try:
                ref = self.reader.read("Input an image path or URL <<< ").strip()
            except (EOFError, KeyboardInterrupt):
                self.session.pending_images.clear()
                self.note("Question dropped.")
                return False
            if ref:
                self.attach_image(ref)
        return True

    def system(self, arg: str) -> None:
        self.set_system(arg or None)

    def reset_system(self, arg: str) -> None:
        try:
            text = self.reader.read("[SYSTEM] ")
        except (EOFError, KeyboardInterrupt):
            text = ""
        self.session.clear()
        self.set_system(text.strip() or None)

    def set_value(self, arg: str) -> None:
        key, _, value = arg.partition(" ")
        if not key:
            current = {k: getattr(self.current_config(), k) for k in
                       ("temperature", "top_p", "top_k", "max_new_tokens", "seed")}
            self.note("usage: /set NAME VALUE; now " + ", ".join(f"{k}={v}" for k, v in current.items()))
            return
        key, number = self.session.set(key, value)
        self.current_config()  # validate the whole config now, not at the next answer
        self.note(f"{key} = {number}")

    def regen(self, arg: str) -> None:
        query = self.session.pop_last()
        if query is None:
            self.note("Nothing to answer again yet.")
        else:
            self.answer(query)

    def save(self, arg: str) -> None:
        if not arg:
            self.note("usage: /save FILE")
            return
        path = self.session.save(arg, self.model_name)
        self.note(f"Saved {len(self.session.history)} turns to {path}.")

    def load_history(self, arg: str) -> None:
        if not arg:
            self.note("usage: /load FILE")
            return
        loaded = ChatSession.load(arg, single_round=self.session.single_round)
        loaded.turns = self.session.turns
        self.session = loaded
        self.note(f"Loaded {len(loaded.history)} turns from {arg}.")

    def stats(self, arg: str) -> None:
        self.console.print(Text(self.session.stats_text()))

    def multi(self, arg: str) -> None:
        self.multiline = True
        self.note("Multi-line input: Enter adds a line; Esc Enter or a line ending in # sends. /single to go back.")

    def single(self, arg: str) -> None:
        self.multiline = False
        self.note("Single-line input.")

    def think(self, arg: str) -> None:
        self.note(think_command(self, arg))

    def set_system(self, text: str | None) -> None:
        template = self.template
        if text is not None and not template.support_system:
            self.console.print(Text(f"Template {template.template_type!r} has no system prompt.", style="red"))
            return
        self.session.system = text
        if text is None:
            default = template.default_system
            self.note("System prompt reset to the template's default" + (f": {default}" if default else " (none)."))
        else:
            self.note("System prompt set.")

    def current_config(self) -> Any:
        overrides = self.session.generation_overrides()
        if self.enable_thinking is not None:
            overrides["enable_thinking"] = self.enable_thinking
        return self.config.copy(**overrides)

    # ---- answering ----

    def answer(self, query: str) -> None:
        raise NotImplementedError


class Repl(ChatRepl):
    """The terminal chat with a local engine: answers stream from `loaded.engine` through its template."""

    def __init__(self, loaded: Any, config: Any, session: Any, markdown: bool, history_file: Path | None,
                 console: Any = None) -> None:
        self.loaded = loaded
        self.model_name, self.template = loaded.spec.name, loaded.template
        super().__init__(config, session, markdown, history_file, console)

    def banner(self) -> None:
        spec, template = self.loaded.spec, self.template
        self.note(f"{spec.name} ({self.loaded.backend}, template {template.template_type}). "
                  "/help for commands, Ctrl-C stops an answer, Ctrl-D or /exit quits.")

        self.note(f"Sampling: {describe_sampling(self.config)} (/set to change).")
        if "image" in spec.modalities:
            self.note("This model takes images: /image PATH_OR_URL attaches one to the next question.")
        if self.session.single_round:
            self.console.print(Text(f"Template {template.template_type!r} is single-round: each message is "
                                    "answered on its own and no history is kept.", style="yellow"))

    def image_spec(self) -> Any:
        return self.loaded.spec

    def answer(self, query: str) -> None:
        try:
            if "<image>" in query and not self.ask_tagged_images(query):
                return
            query = self.session.tagged(query)
            request = encode_request(self.template, self.session.request(query), self.current_config())
        except SwiftError as exc:
            output.render_error(exc)
            return
        view = ThinkingAnswerView(self.console, self.markdown, self.template, self.show_thinking)
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
            output.render_error(exc)
            return
        finally:
            with contextlib.suppress(Exception):
                stream.close()  # aborts the request if it is still running
        self.finish_turn(query, state, len(request.prompt_ids), time.perf_counter() - t0, interrupted)

    def finish_turn(self, query: str, state: Any, prompt: int, seconds: float, interrupted: bool) -> None:
        tokens = state.output_tokens if state is not None else 0
        stats = TurnStats(prompt, tokens, seconds, interrupted)
        self.session.record(stats)
        if interrupted:
            self.console.print(Text.assemble(("Stopped", "yellow"),
                                             (f" after {tokens} tokens; not kept in the history.", "dim")))
            return
        response = state.outputs[0].text if state is not None and state.outputs else ""
        self.session.add_turn(query, split_thinking(self.template, response)[1])  # history without thinking
        reason = state.outputs[0].finish_reason if state is not None and state.outputs else None
        cut = ", cut at max_new_tokens" if reason == "length" else ""
        self.note(f"{tokens} tokens, {stats.tokens_per_second:.1f} tok/s, {seconds:.1f} s{cut}")




chat_command.__doc__ = (chat_command.__doc__ or "") + EXAMPLES
