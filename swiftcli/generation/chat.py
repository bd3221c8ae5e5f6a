"""The engine-free part of the chat: commands, conversation state, sampling settings, save and load.

The REPL in `swiftcli.cli.chat` reads lines, hands them to `parse_command` / `InputAssembler`, and keeps a
`ChatSession`; the chat page and the server paths keep the same `Conversation`. Everything here is plain data so
it can be tested without a terminal or a model.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftcli.errors import InputError, UsageError

CHAT_FORMAT = "swiftcli-chat"

# ms-swift's chat words, matched on the whole line, and what they mean here.
WORDS = {"exit": "exit", "quit": "exit", "clear": "clear", "reset-system": "reset-system",
         "multi-line": "multi", "single-line": "single"}

COMMANDS: dict[str, str] = {
    "help": "Show this help.",
    "exit": "Leave the chat (also /quit, Ctrl-D).",
    "clear": "Forget the conversation history.",
    "system": "/system TEXT sets the system prompt; /system alone resets it to the template's default.",
    "reset-system": "Ask for a new system prompt and forget the history (ms-swift's word).",
    "set": "/set temperature|top_p|top_k|max_new_tokens|seed VALUE changes sampling for the next answers.",
    "regen": "Answer the last question again (drops the last answer).",
    "save": "/save FILE writes the conversation as JSON.",
    "load": "/load FILE reads a conversation saved with /save (or OpenAI messages).",
    "stats": "Token counts and speed so far.",
    "think": "/think on|off turns thinking on or off (templates with a switch, e.g. Qwen3); /think show|hide "
             "shows the thinking (dimmed) or hides it.",
    "multi": "Multi-line input: Enter adds a line; Esc Enter (or a line ending in #) sends. /single goes back.",
    "single": "Back to single-line input.",
}
ALIASES = {"quit": "exit", "q": "exit", "bye": "exit", "reset": "clear", "multi-line": "multi",
           "single-line": "single", "?": "help", "h": "help"}
SETTINGS = ("temperature", "top_p", "top_k", "max_new_tokens", "seed")


@dataclass(frozen=True)
class Command:
    """A parsed command line: `name` is a key of COMMANDS, or "unknown" (then `arg` holds what was typed)."""

    name: str
    arg: str = ""


def parse_command(line: str) -> Command | None:
    """A command for `/name args` or one of ms-swift's words; None for a question to send to the model.

    A line starting with `//` is a question that starts with `/`.
    """
    text = line.strip()
    if text.lower() in WORDS:
        return Command(WORDS[text.lower()])
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, arg = text[1:].partition(" ")
    name = ALIASES.get(name.lower(), name.lower())
    if name in COMMANDS:
        return Command(name, arg.strip())
    return Command("unknown", text)


def question_text(line: str) -> str:
    """The question a non-command line sends: `//x` sends `/x`."""
    return line[1:] if line.lstrip().startswith("//") else line


def suggest(unknown: str) -> str:
    """A hint for an unknown command: the closest known one, or /help."""
    import difflib

    name = unknown.lstrip("/").split(" ", 1)[0].lower()
    close = difflib.get_close_matches(name, [*COMMANDS, *ALIASES], n=1)
    if close:
        return f"unknown command {unknown.split(' ', 1)[0]!r}; did you mean /{ALIASES.get(close[0], close[0])}? " \
               "(/help lists commands; start with // to send a line that begins with /)"
    return f"unknown command {unknown.split(' ', 1)[0]!r} (/help lists commands; start with // to send a line " \
           "that begins with /)"


def help_text() -> str:
    lines = [f"/{name:<7} {text}" for name, text in COMMANDS.items()]
    lines.append('"""     Start and end a multi-line message with """ on its own or around the text.')
    lines.append("Ctrl-C stops an answer; on an empty prompt, Ctrl-D or /exit quits.")
    return "\n".join(lines)


class InputAssembler:
    """Joins `\"\"\"`-fenced blocks typed over several lines into one message.

    feed(line) returns the complete message, or None while a block is still open.
    """

    FENCE = '"""'

    def __init__(self) -> None:
        self._lines: list[str] | None = None

    @property
    def open(self) -> bool:
        return self._lines is not None

    def feed(self, line: str) -> str | None:
        if self._lines is None:
            stripped = line.strip()
            if not stripped.startswith(self.FENCE):
                return line
            body = stripped[len(self.FENCE):]
            if len(body) >= len(self.FENCE) and body.endswith(self.FENCE):
                return body[: -len(self.FENCE)]
            self._lines = [body] if body else []
            return None
        if line.rstrip().endswith(self.FENCE):
            self._lines.append(line.rstrip()[: -len(self.FENCE)])
            text = "\n".join(self._lines)
            self._lines = None
            return text.strip("\n")
        self._lines.append(line)
        return None

    def cancel(self) -> None:
        self._lines = None


def stable_text(text: str) -> str:
    """The part of a streamed answer that is safe to show: a trailing U+FFFD is the first half of a
    multi-byte character still being decoded, so it waits for the next token."""
    return text.rstrip("\ufffd")


def parse_setting(name: str, value: str) -> tuple[str, Any]:
    """Validate `/set NAME VALUE`; raises UsageError with what is allowed."""
    name = name.strip().lower().replace("-", "_")
    if name not in SETTINGS:
        raise UsageError(f"cannot set {name!r}", f"settable: {', '.join(SETTINGS)}")
    text = value.strip()
    if not text:
        raise UsageError(f"/set {name} needs a value")
    try:
        if name in ("temperature", "top_p"):
            number: float | int = float(text)
        else:
            number = int(text)
    except ValueError:
        kind = "a number" if name in ("temperature", "top_p") else "a whole number"
        raise UsageError(f"{name} must be {kind}, not {text!r}") from None
    if name == "temperature" and number < 0:
        raise UsageError("temperature must be >= 0 (0 is greedy)")
    if name == "top_p" and not 0 < number <= 1:
        raise UsageError("top_p must be in (0, 1]")
    if name == "max_new_tokens" and number < 1:
        raise UsageError("max_new_tokens must be at least 1")
    if name == "top_k" and number < 0:
        raise UsageError("top_k must be >= 0 (0 disables it)")
    return name, number


@dataclass
class TurnStats:
    prompt_tokens: int
    output_tokens: int
    seconds: float
    interrupted: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Conversation:
    """One conversation's turns, as the terminal chat (local or `--api_url`) and the chat page both keep them: a
    system prompt (None: the template's or the server's default) and the [query, answer] pairs kept so far (none
    for a single-round template). A local engine gets `request(query)` through the template; a server gets
    `messages(query)` and applies its own."""

    system: str | None = None
    history: list[list[str]] = field(default_factory=list)
    single_round: bool = False

    @classmethod
    def of(cls, history: Sequence[Sequence[str]] | None, system: str | None = None) -> Conversation:
        """A conversation from pairs kept elsewhere (the page's, the API's `history`)."""
        return cls(system, [[str(q), str(r)] for q, r in history or []])

    def request(self, query: str) -> dict[str, Any]:
        return {"query": query, "history": [] if self.single_round else list(self.history), "system": self.system}

    def messages(self, query: str) -> list[dict[str, str]]:
        """The conversation and `query` as OpenAI chat messages."""
        messages = [{"role": "system", "content": self.system}] if self.system is not None else []
        for q, r in [] if self.single_round else self.history:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": r}]
        messages.append({"role": "user", "content": query})
        return messages

    def add_turn(self, query: str, response: str) -> None:
        if not self.single_round:
            self.history.append([query, response])

    def clear(self) -> None:
        self.history.clear()

    def pop_last(self) -> str | None:
        """Drop the last turn and return its question, for /regen."""
        if not self.history:
            return None
        return self.history.pop()[0]


@dataclass
class ChatSession(Conversation):
    """The terminal chat's conversation: its turns, the sampling set with /set, and each answer's counts."""

    settings: dict[str, Any] = field(default_factory=dict)
    turns: list[TurnStats] = field(default_factory=list)

    def set(self, name: str, value: str) -> tuple[str, Any]:
        key, number = parse_setting(name, value)
        self.settings[key] = number
        return key, number

    def generation_overrides(self) -> dict[str, Any]:
        """Settings in GenerationConfig's field names: a temperature above 0 turns sampling on."""
        values = dict(self.settings)
        if "temperature" in values:
            values["do_sample"] = values["temperature"] > 0
        return values

    def record(self, stats: TurnStats) -> None:
        self.turns.append(stats)

    def stats_text(self) -> str:
        answered = [t for t in self.turns if not t.interrupted]
        prompt = sum(t.prompt_tokens for t in self.turns)
        output = sum(t.output_tokens for t in self.turns)
        seconds = sum(t.seconds for t in self.turns)
        rate = output / seconds if seconds > 0 else 0.0
        lines = [
            f"answers: {len(answered)} ({len(self.turns) - len(answered)} stopped)",
            f"history: {len(self.history)} turns" + (" (single-round template: none kept)" if self.single_round
                                                      else ""),
            f"tokens: {prompt} prompt, {output} output; {rate:.1f} output tok/s",
        ]
        if self.turns:
            last = self.turns[-1]
            lines.append(f"last answer: {last.output_tokens} tokens, {last.tokens_per_second:.1f} tok/s, "
                         f"prompt {last.prompt_tokens} tokens")
        if self.settings:
            lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        return "\n".join(lines)

    def to_json(self, model: str | None = None) -> dict[str, Any]:
        messages = [{"role": "system", "content": self.system}] if self.system is not None else []
        for query, response in self.history:
            messages += [{"role": "user", "content": query}, {"role": "assistant", "content": response}]
        return {"format": CHAT_FORMAT, "version": 1, "model": model, "settings": self.settings,
                "messages": messages}

    def save(self, path: str | Path, model: str | None = None) -> Path:
        """Write the conversation atomically: a crash never leaves half a file."""
        target = Path(path).expanduser()
        if target.is_dir():
            raise InputError(f"{target} is a directory", "give a file name, e.g. /save chat.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_json(model), f, ensure_ascii=False, indent=2)
                f.write("\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | Path, single_round: bool = False) -> ChatSession:
        """Read a conversation written by save(), or an OpenAI `messages` list, or ms-swift `history`."""
        source = Path(path).expanduser()
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{source} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {source}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        session = cls(single_round=single_round)
        if isinstance(data, list):
            data = {"messages": data}
        if not isinstance(data, dict):
            raise InputError(f"{source} is not a saved conversation", "save one with /save FILE")
        settings = data.get("settings") or {}
        for key, value in settings.items() if isinstance(settings, dict) else ():
            if key in SETTINGS:
                session.set(key, str(value))
        if "messages" in data:
            session.system, session.history = _from_messages(data["messages"], source)
        elif "history" in data:
            history = data["history"]
            if not isinstance(history, list) or not all(
                    isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in history):
                raise InputError(f"{source}: 'history' must be a list of [query, response] pairs")
            session.history = [list(p) for p in history]
            session.system = data.get("system") if isinstance(data.get("system"), str) else None
        else:
            raise InputError(f"{source} holds no 'messages' or 'history'", "save one with /save FILE")
        if single_round:
            session.history = []
        return session


def _from_messages(messages: Any, source: Path) -> tuple[str | None, list[list[str]]]:
    if not isinstance(messages, list):
        raise InputError(f"{source}: 'messages' must be a list")
    system: str | None = None
    history: list[list[str]] = []
    pending: str | None = None
    for i, message in enumerate(messages, 1):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InputError(f"{source}: message {i} needs a role and a text content")
        role = message.get("role")
        if role == "system" and i == 1:
            system = message["content"]
        elif role == "user" and pending is None:
            pending = message["content"]
        elif role == "assistant" and pending is not None:
            history.append([pending, message["content"]])
            pending = None
        else:
            raise InputError(f"{source}: message {i} ({role}) is out of order",
                             "expected an optional system message, then user and assistant turns")
    return system, history
