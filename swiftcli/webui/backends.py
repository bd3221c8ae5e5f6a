"""What the chat page talks to: a local async engine, or any OpenAI-compatible server (`--api_url`).

Both stream a cumulative answer as `ChatProgress`; cancelling the iteration (the page's Stop button) aborts the
request: the engine's generator aborts it in the engine, the OpenAI stream closes its HTTP connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from swiftcli.config.sampling import read_chat_sampling
from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import EngineRequest, new_request_id
from swiftcli.errors import ContextLengthError, EngineError, InputError, MissingDependencyError, UsageError

logger = logging.getLogger("swiftcli.webui")

History = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class ChatSettings:
    """What the page's controls say for one answer. `system` "" means no system prompt; None the default."""

    system: str | None
    temperature: float
    top_p: float
    max_new_tokens: int
    top_k: int | None = None  # None: the base config's (engine) or the CLI's (server)
    repetition_penalty: float | None = None


@dataclass
class ChatProgress:
    """An answer so far: the whole text, the tokens generated and, at the end, why it ended."""

    text: str
    tokens: int
    finished: bool = False
    finish_reason: str | None = None


class ChatBackend(Protocol):
    """A model the page can chat with."""

    model_name: str
    default_system: str | None
    supports_system: bool
    max_new_tokens_limit: int

    def chat(self, query: str, history: History, settings: ChatSettings) -> AsyncIterator[ChatProgress]: ...

    async def aclose(self) -> None: ...


class EngineChatBackend:
    """A local async engine (vLLM's AsyncLLM, or the pt backend on a worker thread) with its chat template."""

    def __init__(self, engine: Any, template: Any, base_config: GenerationConfig, model_name: str) -> None:
        self.engine = engine
        self.template = template
        self.base_config = base_config
        self.model_name = model_name
        self.default_system: str | None = template.default_system
        self.supports_system: bool = template.support_system
        self.max_new_tokens_limit: int = int(engine.max_model_len)

    def request(self, query: str, history: History, settings: ChatSettings) -> EngineRequest:
        """Encode one turn; answers that would overflow the context are cut to the room left."""
        system = settings.system if self.supports_system else None
        ids = self.template.encode(query, list(history) or None, system)
        room = self.engine.max_model_len - len(ids)
        if room < 1:
            raise ContextLengthError(
                f"this conversation is {len(ids)} tokens long, more than the model's context of "
                f"{self.engine.max_model_len} tokens",
                "send a shorter message, or press Clear to start a new conversation",
            )
        config = self.base_config.copy(
            temperature=settings.temperature,
            top_p=settings.top_p,
            do_sample=settings.temperature > 0,
            max_new_tokens=max(1, min(settings.max_new_tokens, room)),
            **_penalties(settings),
        )
        return EngineRequest(ids, config, request_id=new_request_id("chat"), stop=self.template.stop_words,
                             stop_token_ids=self.template.stop_token_ids)

    async def chat(self, query: str, history: History, settings: ChatSettings) -> AsyncIterator[ChatProgress]:
        # Encoded on the event loop: a few ms even for a full context, and the tokenizer is not shared across
        # threads (fast tokenizers raise "Already borrowed" when two threads use one at once).
        request = self.request(query, history, settings)
        stream = self.engine.generate(request)
        tokens, stopped = 0, False
        try:
            async for result in stream:
                first = result.outputs[0]
                tokens = len(first.token_ids)
                yield ChatProgress(first.text, tokens, result.finished, first.finish_reason)
        except (asyncio.CancelledError, GeneratorExit):  # Stop, or a closed tab
            stopped = True
            raise
        finally:
            # Closed now rather than whenever it is collected: closing the engine's stream aborts the request.
            await stream.aclose()
            if stopped:
                running = getattr(self.engine, "num_unfinished", lambda: -1)()
                logger.info("chat request %s stopped after %d tokens; aborted in the engine (%d requests still "
                            "running)", request.request_id, tokens, running)

    async def aclose(self) -> None:
        await self.engine.aclose()


class OpenAIChatBackend:
    """A running OpenAI-compatible server (`swiftcli deploy`, vLLM, ...) through the official async client."""

    def __init__(self, base_url: str, api_key: str, model_name: str, base_config: GenerationConfig,
                 extra_body: dict[str, Any] | None = None, max_new_tokens_limit: int = 8192) -> None:
        import openai

        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
        self.base_url = base_url
        self.model_name = model_name
        self.base_config = base_config
        self.extra_body = extra_body or {}
        self.default_system: str | None = None
        self.supports_system = True
        self.max_new_tokens_limit = max_new_tokens_limit

    def messages(self, query: str, history: History, system: str | None) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": system}] if system else []
        for q, r in history:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": r}]
        messages.append({"role": "user", "content": query})
        return messages

    async def chat(self, query: str, history: History, settings: ChatSettings) -> AsyncIterator[ChatProgress]:
        import openai

        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "messages": self.messages(query, history, settings.system),
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_new_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.base_config.seed is not None:
            kwargs["seed"] = self.base_config.seed
        if self.base_config.stop:
            kwargs["stop"] = list(self.base_config.stop)
        extra = {**self.extra_body, **_penalties(settings)}
        if extra:
            kwargs["extra_body"] = extra
        from swiftcli.generation.remote import StreamTally

        tally = StreamTally()
        try:
            stream = await self.client.chat.completions.create(**kwargs)
            try:
                async for chunk in stream:
                    if tally.add(chunk):
                        yield ChatProgress(tally.text, tally.chunks)
            finally:
                # On Stop this closes the connection, and the server aborts the request.
                await stream.close()
        except openai.APIStatusError as exc:
            raise InputError(f"the server refused the request: {_server_message(exc)}",
                             "send a shorter message or lower max_new_tokens") from None
        except openai.APIConnectionError:
            raise EngineError(f"lost the connection to {self.base_url}", "check that the server is still up"
                              ) from None
        yield ChatProgress(tally.text, tally.output_tokens, True, tally.finish_reason)

    async def aclose(self) -> None:
        await self.client.close()


def _penalties(settings: ChatSettings) -> dict[str, Any]:
    """The page's top_k and repetition_penalty controls, where it has them."""
    values = {"top_k": settings.top_k, "repetition_penalty": settings.repetition_penalty}
    return {k: v for k, v in values.items() if v is not None}


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if message:
            return str(message).splitlines()[0][:500]
    return f"HTTP {getattr(exc, 'status_code', '?')}"


@dataclass(frozen=True)
class ApiTarget:
    """A server that answered: its base URL, the model to use and, when it says, the model's context and the
    sampling a chat with it starts from (`swiftcli deploy` lists both)."""

    base_url: str
    model: str
    max_model_len: int | None = None
    chat_sampling: dict[str, float | int] = field(default_factory=dict)


def connect_api(api_url: str, api_key: str | None, model: str | None, timeout: float = 10.0) -> ApiTarget:
    """Check that an OpenAI-compatible server answers; return its base URL (with /v1 added when that is what
    works) and the model to use (the one asked for, else the first it serves)."""
    try:
        import openai
    except ImportError:
        raise MissingDependencyError("--api_url needs the openai package", "pip install openai") from None
    if not api_url.startswith(("http://", "https://")):
        raise UsageError(f"--api_url must be an http(s) URL, not {api_url!r}",
                         "e.g. --api_url http://127.0.0.1:8000/v1")
    base = api_url.rstrip("/")
    candidates = [base] if base.endswith("/v1") else [base, base + "/v1"]
    last: Exception | None = None
    for url in candidates:
        client = openai.OpenAI(base_url=url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=0)
        try:
            listed = list(client.models.list())
        except openai.APIConnectionError as exc:
            raise EngineError(f"cannot reach {api_url} ({_cause(exc)})",
                              "start the server first (e.g. swiftcli deploy) or check --api_url") from None
        except openai.AuthenticationError:
            raise EngineError(f"{api_url} refused the API key", "pass the server's key with --api_key") from None
        except openai.APIStatusError as exc:
            last = exc
            continue
        finally:
            client.close()
        served = [m.id for m in listed]
        if model and served and model not in served:
            raise InputError(f"{api_url} does not serve {model!r}", f"it serves: {', '.join(served)}")
        if not model and not served:
            raise EngineError(f"{api_url} lists no models", "pass the model name with --model_type")
        chosen = model or served[0]
        # vLLM and `swiftcli deploy` list each model's context; other servers may not.
        entry = next((m for m in listed if m.id == chosen), None)
        context = getattr(entry, "max_model_len", None)
        return ApiTarget(url, chosen, context if isinstance(context, int) else None,
                         read_chat_sampling(getattr(entry, "chat_sampling", None)))
    raise EngineError(f"{api_url} is not an OpenAI-compatible API ({_server_message(last)} on /models)",
                      "point --api_url at the server's /v1 root, e.g. http://127.0.0.1:8000/v1")


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__
    return str(inner).splitlines()[0][:200] if inner and str(inner) else "connection failed"
