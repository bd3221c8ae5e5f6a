"""What the chat page talks to: a local async engine, or a server (`--api_url`) speaking OpenAI Chat Completions,
OpenAI Responses or Anthropic Messages (`--api_dialect`).

Both stream a cumulative answer as `ChatProgress`; cancelling the iteration (the page's Stop button) aborts the
request: the engine's generator aborts it in the engine, the OpenAI stream closes its HTTP connection.

Images follow ms-swift's convention: each `<image>` tag in the history's questions and the query stands for the
next image of `images` (local files, in prompt order). The engine renders them with the model's own chat template;
a server gets them as OpenAI `image_url` parts holding `data:` URIs.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from swiftcli.apiclient import DEFAULT_TIMEOUT, ApiTarget, api_errors, connect_api
from swiftcli.apidialect import carried, dialect_of, refuse_uncarried
from swiftcli.config.sampling import layer_sampling, merge_generation
from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import EngineRequest, new_request_id
from swiftcli.engines.modalities import check_accepts
from swiftcli.errors import ContextLengthError, InputError
from swiftcli.generation.chat import Conversation
from swiftcli.generation.media import image_data_uri
from swiftcli.generation.vision import IMAGE_TAG, encode_vision, split_tags

# connect_api and ApiTarget live in swiftcli.apiclient; they stay importable from here and from swiftcli.webui.
__all__ = ["ApiChatBackend", "ApiTarget", "ChatBackend", "ChatProgress", "ChatSettings", "EngineChatBackend",
           "OpenAIChatBackend", "connect_api"]

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
    prompt_tokens: int = 0  # as the engine or server counted them (images included); 0 when not told


class ChatBackend(Protocol):
    """A model the page can chat with."""

    model_name: str
    default_system: str | None
    supports_system: bool
    max_new_tokens_limit: int
    # Whether the page offers an image upload: the local model's own say; a server decides per request.
    takes_images: bool

    def chat(self, query: str, history: History, settings: ChatSettings,
             images: Sequence[str] = ()) -> AsyncIterator[ChatProgress]: ...

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
        self.takes_images: bool = "image" in engine.spec.modalities

    def request(self, query: str, history: History, settings: ChatSettings,
                images: Sequence[str] = ()) -> EngineRequest:
        """Encode one turn; answers that would overflow the context are cut to the room left (with images, the
        room is an upper bound: the engine expands each image's placeholder into its tokens)."""
        conversation = Conversation.of(history, settings.system if self.supports_system else None)
        conversation.images = list(images)
        turns = conversation.request(query)
        multi_modal_data = None
        if images:
            check_accepts(self.engine.spec, {"image": list(images)})
            ids, multi_modal_data, _ = encode_vision(self.template, turns)
        else:
            ids = self.template.encode(query, turns["history"] or None, turns["system"])
        room = self.engine.max_model_len - len(ids)
        if room < 1:
            raise ContextLengthError(
                f"this conversation is {len(ids)} tokens long, more than the model's context of "
                f"{self.engine.max_model_len} tokens",
                "send a shorter message, or press Clear to start a new conversation",
            )
        config = merge_generation(self.base_config, page_sampling(settings, max(1, min(settings.max_new_tokens,
                                                                                       room))))
        return EngineRequest(ids, config, request_id=new_request_id("chat"), stop=self.template.stop_words,
                             stop_token_ids=self.template.stop_token_ids, multi_modal_data=multi_modal_data)

    async def chat(self, query: str, history: History, settings: ChatSettings,
                   images: Sequence[str] = ()) -> AsyncIterator[ChatProgress]:
        # Encoded on the event loop: a few ms even for a full context (images: a few ms more to decode the
        # page's uploads), and the tokenizer is not shared across threads (fast tokenizers raise "Already
        # borrowed" when two threads use one at once).
        request = self.request(query, history, settings, images)
        stream = self.engine.generate(request)
        tokens, stopped = 0, False
        try:
            async for result in stream:
                first = result.outputs[0]
                tokens = len(first.token_ids)
                yield ChatProgress(first.text, tokens, result.finished, first.finish_reason, result.prompt_tokens)
        except (asyncio.CancelledError, GeneratorExit):  # Stop, or a closed tab
            stopped = True
            raise
        finally:
            # Closed now rather than whenever it is collected: closing the engine's stream aborts the request.
            await stream.aclose()
            if stopped:
                running = self.engine.num_unfinished()
                logger.info("chat request %s stopped after %d tokens; aborted in the engine (%d requests still "
                            "running)", request.request_id, tokens, running)

    async def aclose(self) -> None:
        await self.engine.aclose()


class ApiChatBackend:
    """A running server (`swiftcli deploy`, vLLM, ...) through the official async client of its API: OpenAI Chat
    Completions, OpenAI Responses or Anthropic Messages (`dialect`, see swiftcli.apidialect)."""

    def __init__(self, base_url: str, api_key: str, model_name: str, base_config: GenerationConfig,
                 extra_body: dict[str, Any] | None = None, max_new_tokens_limit: int = 8192,
                 dialect: str = "chat") -> None:
        self.api = dialect_of(dialect)
        self.client = self.api.client(base_url, api_key, DEFAULT_TIMEOUT, asynchronous=True)
        self.base_url = base_url
        self.model_name = model_name
        self.base_config = base_config
        # Chat Completions only: the other APIs have no extra fields (app-ui refuses what they cannot carry).
        self.extra_body = extra_body or {}
        self.default_system: str | None = None
        self.supports_system = True
        self.max_new_tokens_limit = max_new_tokens_limit
        self.takes_images = True  # the server says whether its model does, with a 400 the page shows

    def with_model(self, model_name: str) -> ApiChatBackend:
        """The same server, client and settings, chatting with another of its models (a checkpoint's id)."""
        other = copy.copy(self)
        other.model_name = model_name
        return other

    def messages(self, query: str, history: History, system: str | None,
                 images: Sequence[str] = ()) -> list[dict[str, Any]]:
        # The page's "" (no system prompt) is left out, and the server's default applies.
        messages: list[dict[str, Any]] = Conversation.of(history, system or None).messages(query)
        return with_image_parts(messages, images) if images else messages

    def sampling(self, settings: ChatSettings) -> dict[str, Any]:
        """The page's controls laid by the one sampling rule, with seed and stop from the command line
        (base_config); a control the API has no field for is refused unless it is at its neutral value."""
        page = page_sampling(settings, settings.max_new_tokens)
        if self.api.name != "chat":
            page = {k: v for k, v in page.items() if NEUTRAL.get(k, object()) != v}
            refuse_uncarried(self.api.name, page)
        sent = {**layer_sampling(page), "seed": self.base_config.seed, "stop": list(self.base_config.stop)}
        return carried(self.api.name, sent)

    async def chat(self, query: str, history: History, settings: ChatSettings,
                   images: Sequence[str] = ()) -> AsyncIterator[ChatProgress]:
        if images and self.api.name != "chat":
            raise InputError(f"images reach a server through the chat dialect only, not {self.api.name}",
                             "start app-ui with --api_dialect chat")
        kwargs = self.api.request(self.model_name, self.messages(query, history, settings.system, images),
                                  self.sampling(settings), True, extra_body=self.extra_body)
        tally = self.api.tally()
        with api_errors(self.base_url, refused_hint="send a shorter message or lower max_new_tokens",
                        sdk=self.api.sdk):
            stream = await self.api.create(self.client, kwargs)
            try:
                async for chunk in stream:
                    if tally.add(chunk):
                        yield ChatProgress(tally.text, tally.chunks)
            finally:
                # On Stop this closes the connection, and the server aborts the request.
                await stream.close()
        yield ChatProgress(tally.text, tally.output_tokens, True, tally.finish_reason, tally.prompt_tokens)

    async def aclose(self) -> None:
        await self.client.close()


# The name it had when it spoke Chat Completions only.
OpenAIChatBackend = ApiChatBackend
# The page's controls at values that change nothing: left out for an API without their field.
NEUTRAL = {"top_k": 0, "repetition_penalty": 1.0}


def with_image_parts(messages: list[dict[str, Any]], images: Sequence[str]) -> list[dict[str, Any]]:
    """User messages with `<image>` tags as OpenAI content parts: each tag becomes an `image_url` part holding the
    next image as a `data:` URI, so any OpenAI-compatible server (vLLM, swiftcli deploy) reads it."""
    pending = list(images)
    out: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        if message["role"] != "user" or IMAGE_TAG not in content:
            out.append(message)
            continue
        parts: list[dict[str, Any]] = []
        for part in split_tags(content):
            if part["type"] == "image":
                if not pending:
                    raise InputError(f"the conversation has more {IMAGE_TAG} tags than images")
                parts.append({"type": "image_url", "image_url": {"url": image_data_uri(pending.pop(0))}})
            elif part["type"] == "text":
                parts.append(part)
        out.append({**message, "content": parts})
    if pending:
        raise InputError(f"the conversation has {len(pending)} more images than {IMAGE_TAG} tags")
    return out


def page_sampling(settings: ChatSettings, max_new_tokens: int) -> dict[str, Any]:
    """The page's controls as sampling settings a user gave (GenerationConfig names; top_k and
    repetition_penalty only where the page has them)."""
    values = {"temperature": settings.temperature, "top_p": settings.top_p, "max_new_tokens": max_new_tokens,
              "top_k": settings.top_k, "repetition_penalty": settings.repetition_penalty}
    return {k: v for k, v in values.items() if v is not None}
