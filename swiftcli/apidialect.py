"""One conversation asked through any of three APIs: OpenAI Chat Completions (`chat`, the default), OpenAI
Responses (`responses`) or Anthropic Messages (`messages`).

`--api_url` with `--api_dialect` (infer, chat, app-ui) sends the same turns and sampling whichever API the server
speaks, and reads back the same text, usage and finish reason:

- `refuse_uncarried`: a sampling setting the user typed that the API has no field for is refused by name
  (Responses carries max_new_tokens, temperature and top_p; Messages also top_k and stop). Settings the user did
  not type (a model's listed chat defaults) are left out by `carried`;
- `dialect_of(name)`: the API's client (the official `openai` or `anthropic` SDK), its request, its whole reply
  and its stream folded by a tally with StreamTally's shape (text, chunks, finish_reason, tokens).

Thinking (Anthropic `thinking` blocks, Responses reasoning text) comes back inside `<think>...</think>` before
the answer, as a local model's reasoning does, so the chat shows it the same way.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swiftcli.apiclient import (
    API_KEY_ENV,
    CONNECT_RETRIES,
    ApiTarget,
    StreamTally,
    XRequestConfig,
    api_key,
    connect_api,
    openai_client,
    target_of,
)
from swiftcli.config.commands import API_DIALECTS
from swiftcli.errors import EngineError, MissingDependencyError, UsageError

# GenerationConfig field -> the Chat Completions request's name.
REQUEST_FIELDS = {
    "max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
    "repetition_penalty": "repetition_penalty", "seed": "seed", "stop": "stop", "ignore_eos": "ignore_eos",
    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
}
# The sampling settings each API has a field for (None: all of REQUEST_FIELDS); do_sample travels as temperature.
CARRIED: dict[str, frozenset[str] | None] = {
    "chat": None,
    "responses": frozenset({"max_new_tokens", "temperature", "top_p", "do_sample"}),
    "messages": frozenset({"max_new_tokens", "temperature", "top_p", "top_k", "stop", "do_sample"}),
}
# Anthropic requires max_tokens: when none is set, GenerationConfig's default, within half the listed context.
MESSAGES_MAX_TOKENS = 2048


def request_config(sampling: Mapping[str, Any], stream: bool = False) -> XRequestConfig:
    """The Chat Completions fields for sampling settings given as GenerationConfig names; an unknown one is
    refused."""
    values = _plain(sampling)
    unknown = sorted(set(values) - set(REQUEST_FIELDS))
    if unknown:
        raise UsageError(f"cannot send {', '.join(unknown)} to a server", "leave it out with --api_url")
    return XRequestConfig(stream=stream, **{REQUEST_FIELDS[k]: v for k, v in values.items()})


def _plain(sampling: Mapping[str, Any]) -> dict[str, Any]:
    """Set values only, do_sample false as temperature 0, no empty stop list."""
    values = {k: v for k, v in sampling.items() if v is not None}
    if values.pop("do_sample", None) is False:
        values["temperature"] = 0.0
    if not values.get("stop"):
        values.pop("stop", None)
    return values


def refuse_uncarried(dialect: str, typed: Mapping[str, Any]) -> None:
    """Refuse, by name, sampling settings the user set that `dialect`'s requests have no field for."""
    allowed = CARRIED[dialect]
    if allowed is None:
        return
    lost = [name for name, value in typed.items() if value is not None and value != [] and name not in allowed]
    if lost:
        names = ", ".join(f"--{name}" for name in lost)
        raise UsageError(f"--api_dialect {dialect} has no field for {names}",
                         "leave it out, or ask the server with --api_dialect chat")


def carried(dialect: str, sampling: Mapping[str, Any]) -> dict[str, Any]:
    """The settings `dialect` can send; the others (defaults the user did not type) stay the server's."""
    allowed = CARRIED[dialect]
    return dict(sampling) if allowed is None else {k: v for k, v in sampling.items() if k in allowed}


@dataclass(frozen=True)
class Reply:
    """A whole answer: its text, token counts (0 when the server sent none) and why it ended."""

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str | None


@dataclass
class EventTally:
    """A Responses or Messages stream folded into what StreamTally gives for a chat stream."""

    text: str = ""
    chunks: int = 0
    finish_reason: str | None = None
    prompt: int | None = None
    output: int | None = None
    thinking: bool = False

    def _grow(self, piece: str, thinking: bool) -> bool:
        if not piece:
            return False
        if thinking and not self.thinking:
            self.text += "<think>\n"
        elif not thinking and self.thinking:
            self.text += "\n</think>\n\n"
        self.thinking = thinking
        self.text += piece
        self.chunks += 1
        return True

    @property
    def output_tokens(self) -> int:
        return self.output if self.output is not None else self.chunks

    @property
    def prompt_tokens(self) -> int:
        return self.prompt or 0


class ResponsesTally(EventTally):
    def add(self, event: Any) -> bool:
        """Fold one Responses event in; True when the text grew."""
        kind = getattr(event, "type", "")
        if kind == "response.output_text.delta":
            return self._grow(event.delta, False)
        if kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            return self._grow(event.delta, True)
        if kind in ("response.completed", "response.incomplete"):
            reply = responses_reply(event.response)
            self.finish_reason, self.prompt, self.output = reply.finish_reason, reply.prompt_tokens, \
                reply.output_tokens
        elif kind in ("response.failed", "error"):
            error = getattr(getattr(event, "response", None), "error", None) or event
            raise EngineError(f"the server failed the answer: {getattr(error, 'message', None) or kind}")
        return False


class MessagesTally(EventTally):
    def add(self, event: Any) -> bool:
        """Fold one Anthropic stream event in; True when the text grew."""
        kind = getattr(event, "type", "")
        if kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return self._grow(delta.text, False)
            if delta.type == "thinking_delta":
                return self._grow(delta.thinking, True)
        elif kind == "message_start":
            self.prompt = getattr(event.message.usage, "input_tokens", None)
        elif kind == "message_delta":
            self.finish_reason = _STOP_REASONS.get(event.delta.stop_reason or "", event.delta.stop_reason)
            self.output = getattr(event.usage, "output_tokens", None)
            self.prompt = getattr(event.usage, "input_tokens", None) or self.prompt
        return False


_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


class ChatDialect:
    """OpenAI Chat Completions: the conversation's messages and every sampling field (the rest in extra_body)."""

    name = "chat"
    sdk = "openai"

    def client(self, base_url: str, key: str | None, timeout: float, asynchronous: bool = False) -> Any:
        return openai_client(base_url, key, timeout=timeout, asynchronous=asynchronous)

    def request(self, model: str, messages: list[Any], sampling: Mapping[str, Any], stream: bool,
                context: int | None = None, extra_body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        kwargs = request_config(sampling, stream=stream).to_kwargs(chat=True)
        extra = {**(extra_body or {}), **kwargs.pop("extra_body", {})}
        if extra:
            kwargs["extra_body"] = extra
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        return {"model": model, "messages": messages, **kwargs}

    def create(self, client: Any, kwargs: dict[str, Any]) -> Any:
        return client.chat.completions.create(**kwargs)

    def reply(self, response: Any) -> Reply:
        choice, usage = response.choices[0], response.usage
        return Reply(choice.message.content or "", usage.prompt_tokens if usage else 0,
                     usage.completion_tokens if usage else 0, choice.finish_reason)

    def tally(self) -> Any:
        return StreamTally()


class ResponsesDialect(ChatDialect):
    """OpenAI Responses: system prompts as `instructions`, the turns as `input`, nothing stored on the server."""

    name = "responses"

    def request(self, model: str, messages: list[Any], sampling: Mapping[str, Any], stream: bool,
                context: int | None = None, extra_body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        values = _plain(carried(self.name, sampling))
        system, turns = _split_system(messages)
        kwargs: dict[str, Any] = {"model": model, "input": turns, "store": False, "stream": stream}
        if system is not None:
            kwargs["instructions"] = system
        for ours, theirs in (("max_new_tokens", "max_output_tokens"), ("temperature", "temperature"),
                             ("top_p", "top_p")):
            if ours in values:
                kwargs[theirs] = values[ours]
        return kwargs

    def create(self, client: Any, kwargs: dict[str, Any]) -> Any:
        return client.responses.create(**kwargs)

    def reply(self, response: Any) -> Reply:
        return responses_reply(response)

    def tally(self) -> Any:
        return ResponsesTally()


def responses_reply(response: Any) -> Reply:
    """A Responses object as a Reply: its output text, usage and (completed | cut at max_output_tokens)."""
    if getattr(response, "status", None) == "failed":
        raise EngineError(f"the server failed the answer: {getattr(response.error, 'message', 'no reason')}")
    reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
    finish = "length" if reason == "max_output_tokens" else "stop" if response.status == "completed" else reason
    usage = response.usage
    return Reply(response.output_text or "", usage.input_tokens if usage else 0, usage.output_tokens if usage else 0,
                 finish)


class MessagesDialect(ChatDialect):
    """Anthropic Messages through the `anthropic` SDK (which sends the key as x-api-key); max_tokens is
    required, so one is always sent."""

    name = "messages"
    sdk = "anthropic"

    def client(self, base_url: str, key: str | None, timeout: float, asynchronous: bool = False) -> Any:
        return anthropic_client(base_url, key, timeout=timeout, asynchronous=asynchronous)

    def request(self, model: str, messages: list[Any], sampling: Mapping[str, Any], stream: bool,
                context: int | None = None, extra_body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        values = _plain(carried(self.name, sampling))
        system, turns = _split_system(messages)
        limit = MESSAGES_MAX_TOKENS if context is None else max(1, min(MESSAGES_MAX_TOKENS, context // 2))
        kwargs: dict[str, Any] = {"model": model, "messages": turns, "stream": stream,
                                  "max_tokens": values.get("max_new_tokens", limit)}
        if system is not None:
            kwargs["system"] = system
        # Sent as body fields: some releases of the SDK no longer take them as arguments, the API still does.
        sampling_fields = {name: values[name] for name in ("temperature", "top_p", "top_k") if name in values}
        if sampling_fields:
            kwargs["extra_body"] = sampling_fields
        if values.get("stop"):
            stop = values["stop"]
            kwargs["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        return kwargs

    def create(self, client: Any, kwargs: dict[str, Any]) -> Any:
        return client.messages.create(**kwargs)

    def reply(self, response: Any) -> Reply:
        tally = MessagesTally()
        for block in response.content:
            if block.type in ("text", "thinking"):
                tally._grow(getattr(block, block.type), block.type == "thinking")
        usage = response.usage
        return Reply(tally.text, usage.input_tokens if usage else 0, usage.output_tokens if usage else 0,
                     _STOP_REASONS.get(response.stop_reason or "", response.stop_reason))

    def tally(self) -> Any:
        return MessagesTally()


_DIALECTS: dict[str, ChatDialect] = {d.name: d for d in (ChatDialect(), ResponsesDialect(), MessagesDialect())}


def dialect_of(name: str) -> ChatDialect:
    """The adapter for an --api_dialect value."""
    if name not in _DIALECTS:
        raise UsageError(f"--api_dialect must be one of {', '.join(API_DIALECTS)}, not {name!r}")
    return _DIALECTS[name]


def _split_system(messages: list[Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """(the system prompt or None, the other turns): both APIs take the system prompt beside the turns."""
    system = [str(m["content"]) for m in messages if m["role"] == "system"]
    turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
    return ("\n\n".join(system) if system else None), turns


def anthropic_root(base_url: str) -> str:
    """The anthropic SDK adds /v1 itself: the root it wants for a server's /v1 URL."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def anthropic_client(base_url: str, key: str | None = None, *, timeout: float = 600.0,
                     asynchronous: bool = False) -> Any:
    """The official Anthropic client for a server's /v1 URL, retrying refused connections only (as
    apiclient.openai_client does)."""
    try:
        # lazy: keeps --help free of the Anthropic SDK; if it is missing, the error says what to install
        import anthropic
    except ImportError:
        raise MissingDependencyError("--api_dialect messages needs the anthropic package",
                                     "pip install 'swiftcli[anthropic]'") from None

    httpx_module = importlib.import_module(anthropic.DefaultHttpxClient.__mro__[1].__module__.split(".")[0])
    root = anthropic_root(base_url)
    # Anthropic's servers read the key from x-api-key; recent SDK releases send it as a bearer token only.
    headers = {"x-api-key": api_key(key)}
    if asynchronous:
        http = anthropic.DefaultAsyncHttpxClient(transport=httpx_module.AsyncHTTPTransport(retries=CONNECT_RETRIES))
        return anthropic.AsyncAnthropic(base_url=root, api_key=api_key(key), timeout=timeout, max_retries=0,
                                        http_client=http, default_headers=headers)
    sync_http = anthropic.DefaultHttpxClient(transport=httpx_module.HTTPTransport(retries=CONNECT_RETRIES))
    return anthropic.Anthropic(base_url=root, api_key=api_key(key), timeout=timeout, max_retries=0,
                               http_client=sync_http, default_headers=headers)


def connect_dialect(api_url: str, key: str | None, model: str | None, dialect: str,
                    timeout: float = 10.0) -> ApiTarget:
    """`apiclient.connect_api` for any dialect: a Messages server's models come from Anthropic's GET /v1/models
    (with x-api-key); a Responses or Messages server that lists none serves the model asked for."""
    if dialect != "messages":
        return connect_api(api_url, key, model, timeout, listing_optional=dialect != "chat")
    if not api_url.startswith(("http://", "https://")):
        raise UsageError(f"--api_url must be an http(s) URL, not {api_url!r}", "e.g. --api_url http://127.0.0.1:8000")
    base = api_url.rstrip("/")
    url = base if base.endswith("/v1") else base + "/v1"
    # lazy: anthropic_client has imported it (or said how to install it)
    client = anthropic_client(url, key, timeout=timeout)
    anthropic = importlib.import_module("anthropic")
    try:
        listed = list(client.models.list())
    except anthropic.APIConnectionError:
        raise EngineError(f"cannot reach {api_url}", "start the server first or check --api_url") from None
    except (anthropic.AuthenticationError, anthropic.PermissionDeniedError):
        typed = key or os.environ.get(API_KEY_ENV)
        raise EngineError(f"{api_url} refused the API key" if typed else f"{api_url} needs an API key",
                          "pass the server's key with --api_key") from None
    except anthropic.APIStatusError:
        if model:
            return ApiTarget(url, model)
        raise EngineError(f"{api_url} lists no models on /v1/models", "pass the model name with --model") from None
    finally:
        client.close()
    return target_of(api_url, url, listed, model, "--model")
