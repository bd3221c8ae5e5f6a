"""ms-swift's client API over the official `openai` package, for `swiftcli deploy` or any OpenAI-compatible server.

    from swiftcli import get_model_list_client, XRequestConfig, inference_client

    model_type = get_model_list_client().data[0].id
    resp = inference_client(model_type, "Where is the capital of Zhejiang?", request_config=XRequestConfig(seed=42))
    print(resp.choices[0].message.content)

Results are the openai package's own types: ChatCompletion / Completion, or an iterator of chunks when
`request_config.stream` is true. HTTP errors surface as openai's exceptions (openai.NotFoundError, ...).
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swiftcli.apiclient import XRequestConfig, is_chat_model, openai_client
from swiftcli.errors import InputError
from swiftcli.generation.chat import Conversation

__all__ = ["XRequestConfig", "get_model_list_client", "get_model_list_client_async", "inference_client",
           "inference_client_async", "messages_of"]

History = Sequence[Sequence[str]]

def _base_url(host: str, port: int | str, url: str | None) -> str:
    return (url or f"http://{host}:{port}/v1").rstrip("/")


def _client(host: str, port: int | str, api_key: str, url: str | None, asynchronous: bool = False) -> Any:
    # swiftcli.apiclient's client: a refused connection is tried again, a 429 or 503 reaches the caller as it was.
    return openai_client(_base_url(host, port, url), api_key, asynchronous=asynchronous)


def get_model_list_client(host: str = "127.0.0.1", port: int | str = 8000, api_key: str = "EMPTY",
                          url: str | None = None) -> Any:
    """The server's models (`.data[i].id`); swiftcli servers also say whether each one `is_chat`."""
    with _client(host, port, api_key, url) as client:
        return client.models.list()


async def get_model_list_client_async(host: str = "127.0.0.1", port: int | str = 8000, api_key: str = "EMPTY",
                                      url: str | None = None) -> Any:
    async with _client(host, port, api_key, url, asynchronous=True) as client:
        return await client.models.list()


def messages_of(query: str, history: History | None = None, system: str | None = None) -> list[dict[str, str]]:
    """OpenAI chat messages for a query after `history` ([query, response] pairs), under `system` if given."""
    return Conversation(system, [list(pair) for pair in history or []]).messages(query)


def _prompt_of(query: str, history: History | None, system: str | None) -> str:
    if history or system:
        raise InputError("a completion request takes the query alone (no history or system)",
                         "pass is_chat_request=True to send a chat request")
    return query


def inference_client(
    model_type: str,
    query: str,
    history: History | None = None,
    system: str | None = None,
    *,
    request_config: XRequestConfig | None = None,
    host: str = "127.0.0.1",
    port: int | str = 8000,
    api_key: str = "EMPTY",
    url: str | None = None,
    is_chat_request: bool | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    messages: Sequence[dict[str, Any]] | None = None,
    images: Sequence[str] | None = None,
) -> Any:
    """One request: a ChatCompletion (chat models) or Completion (base models), or a stream of chunks.

    `is_chat_request=None` asks the server whether the model is a chat model. `tools` / `tool_choice` are
    OpenAI's; `messages` replaces query/history/system for conversations with tool calls and results.
    `images` (URLs, data URIs, or local files, sent inline) fill the `<image>` tags, as ms-swift's client does.
    """
    config = request_config or XRequestConfig()
    client = _client(host, port, api_key, url)
    tool_kwargs = _tool_kwargs(tools, tool_choice)
    media = _images_body(images)
    if is_chat_request is None:
        is_chat_request = bool(tool_kwargs or messages or media) or is_chat_model(client.models.list(), model_type)
    if is_chat_request:
        return client.chat.completions.create(model=model_type, messages=_chat_messages(query, history, system,
                                                                                        messages),
                                              **config.to_kwargs(chat=True), **tool_kwargs, **media)
    return client.completions.create(model=model_type, prompt=_prompt_of(query, history, system),
                                     **config.to_kwargs(chat=False))


async def inference_client_async(
    model_type: str,
    query: str,
    history: History | None = None,
    system: str | None = None,
    *,
    request_config: XRequestConfig | None = None,
    host: str = "127.0.0.1",
    port: int | str = 8000,
    api_key: str = "EMPTY",
    url: str | None = None,
    is_chat_request: bool | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    messages: Sequence[dict[str, Any]] | None = None,
    images: Sequence[str] | None = None,
) -> Any:
    """`inference_client` for asyncio: awaits the response, or returns an async iterator of chunks."""
    config = request_config or XRequestConfig()
    client = _client(host, port, api_key, url, asynchronous=True)
    tool_kwargs = _tool_kwargs(tools, tool_choice)
    media = _images_body(images)
    if is_chat_request is None:
        is_chat_request = bool(tool_kwargs or messages or media) or is_chat_model(await client.models.list(),
                                                                                   model_type)
    if is_chat_request:
        return await client.chat.completions.create(
            model=model_type, messages=_chat_messages(query, history, system, messages),
            **config.to_kwargs(chat=True), **tool_kwargs, **media)
    return await client.completions.create(model=model_type, prompt=_prompt_of(query, history, system),
                                           **config.to_kwargs(chat=False))


def _images_body(images: Sequence[str] | None) -> dict[str, Any]:
    """ms-swift's request field `images`; local files go inline as data URIs (a server reads no client paths)."""
    if not images:
        return {}

    refs = []
    for ref in images:
        path = Path(ref).expanduser()
        if "://" not in ref and not ref.startswith("data:") and path.is_file():
            media_type = mimetypes.guess_type(path.name)[0] or "image/png"
            ref = f"data:{media_type};base64,{base64.b64encode(path.read_bytes()).decode()}"
        refs.append(ref)
    return {"extra_body": {"images": refs}}


def _tool_kwargs(tools: Sequence[dict[str, Any]] | None, tool_choice: str | dict[str, Any] | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if tools:
        kwargs["tools"] = list(tools)
    if tool_choice is not None:
        kwargs["tool_choice"] = tool_choice
    return kwargs


def _chat_messages(query: str, history: History | None, system: str | None,
                   messages: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if messages is None:
        return messages_of(query, history, system)
    if history or system:
        raise InputError("pass either messages or history/system, not both")
    return [*messages, {"role": "user", "content": query}] if query else list(messages)
