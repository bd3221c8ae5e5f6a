"""The one way swiftcli talks to an OpenAI-compatible server: `swiftcli deploy`, vLLM's server, or any other.

Every remote path (infer and chat with `--api_url`, the chat page's server backend, `eval --eval_url`, the
Python client API) builds its client, finds its model and reads a refusal here, so that they all say the same
thing when the server is down, asks for a key, or refuses a request:

- `openai_client` / `http_client`: the key from the caller, else `$SWIFTCLI_API_KEY`; a refused connection is
  tried again a few times (httpx's connect retries), but an answer the server gave (429, 503, 400) never is;
- `connect_api`: the server answers, serves the model asked for (else its first), and lists its context and the
  sampling a chat with it starts from when it says (swiftcli deploy does);
- `api_errors` / `server_message`: openai's exceptions as `SwiftError`s carrying the server's own message;
- `XRequestConfig`: a request's sampling fields, the OpenAI schema's at the top and the rest in `extra_body`;
- `StreamTally`: a chat stream's chunks folded into the text, finish reason and usage.

It sits low in the layer order (errors and config only). `openai` and `httpx` are imported inside the functions
that use them, so that `swiftcli --help` and start-up do not pay for them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from swiftcli.config.sampling import read_chat_sampling
from swiftcli.errors import EngineError, InputError, MissingDependencyError, UsageError

API_KEY_ENV = "SWIFTCLI_API_KEY"
# Connection attempts beyond the first when the server refuses the connection (it may be starting or restarting);
# httpx waits 0.5 s, then 1 s between them. Requests the server answered are never sent twice.
CONNECT_RETRIES = 2
DEFAULT_TIMEOUT = 600.0


# Sampling fields the OpenAI schema lacks; sent in the body all the same (vLLM and swiftcli read them).
_EXTRA_FIELDS = ("top_k", "repetition_penalty", "ignore_eos", "min_p", "min_tokens", "stop_token_ids",
                 "skip_special_tokens", "include_stop_str_in_output", "structured_outputs", "chat_template_kwargs")
_CHAT_ONLY = ("chat_template_kwargs",)


@dataclass
class XRequestConfig:
    """Sampling settings of one request; None leaves the server's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    ignore_eos: bool | None = None
    min_p: float | None = None
    min_tokens: int | None = None
    logit_bias: dict[str, float] | None = None
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool | None = None
    include_stop_str_in_output: bool | None = None
    response_format: dict[str, Any] | None = None
    # vLLM's constraint: {"json": schema} | {"regex": ...} | {"choice": [...]} | {"grammar": ...}
    structured_outputs: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    def to_kwargs(self, chat: bool) -> dict[str, Any]:
        """Keyword arguments for openai's `create()`: standard fields directly, the rest in `extra_body`."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        extra = {name: values.pop(name) for name in _EXTRA_FIELDS if values.get(name) is not None}
        for name in _EXTRA_FIELDS:
            values.pop(name, None)
        if not chat:
            for name in _CHAT_ONLY:
                if extra.pop(name, None) is not None:
                    raise InputError(f"{name} is for chat requests")
            values.pop("top_logprobs", None)
            if isinstance(values.get("logprobs"), bool):
                values["logprobs"] = 1 if values["logprobs"] else None
        elif isinstance(values.get("logprobs"), int) and not isinstance(values["logprobs"], bool):
            values["top_logprobs"] = values["top_logprobs"] or values["logprobs"]
            values["logprobs"] = True
        kwargs = {k: v for k, v in values.items() if v is not None}
        if extra:
            kwargs["extra_body"] = extra
        return kwargs


def api_key(key: str | None = None) -> str:
    """The key to send: the one given, else $SWIFTCLI_API_KEY, else a placeholder (servers without auth)."""
    return key or os.environ.get(API_KEY_ENV) or "EMPTY"


def openai_client(base_url: str, key: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                  asynchronous: bool = False) -> Any:
    """The official client (sync, or async with `asynchronous=True`), retrying refused connections only."""
    try:
        # lazy: keeps --help free of the OpenAI SDK; if it is missing, the error names the extra to install
        import openai
    except ImportError:
        raise MissingDependencyError("talking to a server needs the openai package", "pip install openai") from None

    # openai 1.x is built on httpx, later releases on its fork httpx2: the transport comes from the same library.
    httpx_module = importlib.import_module(openai.DefaultHttpxClient.__mro__[1].__module__.split(".")[0])
    # openai's own retries (max_retries) would also resend 429s and 5xx: a refusal reaches the caller as it was.
    if asynchronous:
        async_http = openai.DefaultAsyncHttpxClient(
            transport=httpx_module.AsyncHTTPTransport(retries=CONNECT_RETRIES))
        return openai.AsyncOpenAI(base_url=base_url, api_key=api_key(key), timeout=timeout, max_retries=0,
                                  http_client=async_http)
    sync_http = openai.DefaultHttpxClient(transport=httpx_module.HTTPTransport(retries=CONNECT_RETRIES))
    return openai.OpenAI(base_url=base_url, api_key=api_key(key), timeout=timeout, max_retries=0,
                         http_client=sync_http)


def http_client(key: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """An async httpx client with the same key and connect retries, for a server's routes outside the OpenAI
    schema (vLLM's and swiftcli's /tokenize)."""
    # lazy: keeps --help and start-up free of httpx
    import httpx


    sent = key or os.environ.get(API_KEY_ENV)
    headers = {"Authorization": f"Bearer {sent}"} if sent else {}
    return httpx.AsyncClient(headers=headers, timeout=timeout,
                             transport=httpx.AsyncHTTPTransport(retries=CONNECT_RETRIES))


def server_message(exc: Any) -> str:
    """The server's own words for a refused request (OpenAI's error envelope), else its HTTP status."""
    return envelope_message(getattr(exc, "body", None)) or f"HTTP {getattr(exc, 'status_code', '?')}"


def envelope_message(body: Any) -> str | None:
    """The first line of `{"error": {"message": ...}}` (or of a bare `{"message": ...}`), if the body is one."""
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if message:
            return str(message).splitlines()[0][:500]
    return None


def reply_message(status_code: int, body: Any, text: str = "") -> str:
    """A plain httpx reply's refusal in the same words: "server answered 400: <its message>"."""
    message = envelope_message(body) or (text.splitlines()[0][:500] if text.strip() else f"HTTP {status_code}")
    return f"server answered {status_code}: {message}"


def request_error(exc: BaseException) -> str:
    """One failed request in words, for runs that note a failed item and go on (eval)."""
    # lazy: keeps --help and start-up free of the OpenAI SDK
    import openai


    if isinstance(exc, openai.APIStatusError):
        return f"server answered {exc.status_code}: {server_message(exc)}"
    if isinstance(exc, openai.APIError):
        return f"request failed: {exc.message}"
    return f"request failed: {exc}"


@contextlib.contextmanager
def api_errors(base_url: str, key_option: str = "--api_key", refused_hint: str | None = None,
               sdk: str = "openai") -> Iterator[None]:
    """The SDK's exceptions as SwiftErrors: the server's own message for a refused request, a hint when the key is
    wrong or the server is gone. Works around `await` too (the mapping is synchronous). `sdk` is "openai" or
    "anthropic": both name their exceptions alike."""
    # lazy: keeps --help and start-up free of the SDKs
    openai = importlib.import_module(sdk)

    try:
        yield
    except openai.AuthenticationError:
        raise EngineError(f"{base_url} refused the API key", f"pass the server's key with {key_option}") from None
    except openai.PermissionDeniedError:
        raise EngineError(f"{base_url} refused the request (403)", f"check {key_option}") from None
    except openai.APIStatusError as exc:
        raise InputError(f"the server refused the request: {server_message(exc)}", refused_hint) from None
    except openai.APIConnectionError:
        raise EngineError(f"lost the connection to {base_url}", "check that the server is still up") from None


@dataclass(frozen=True)
class ApiTarget:
    """A server that answered: its base URL, the model to use and, when it says, the model's context and the
    sampling a chat with it starts from (`swiftcli deploy` lists both)."""

    base_url: str
    model: str
    max_model_len: int | None = None
    chat_sampling: dict[str, float | int] = field(default_factory=dict)


def connect_api(api_url: str, key: str | None = None, model: str | None = None, timeout: float = 10.0, *,
                url_option: str = "--api_url", key_option: str = "--api_key",
                model_option: str = "--model_type", listing_optional: bool = False) -> ApiTarget:
    """Check that an OpenAI-compatible server answers; return its base URL (with /v1 added when that is what
    works) and the model to use (the one asked for, else the first it serves).

    The option names go into the hints, so that `eval --eval_url` and `chat --api_url` each name their own.
    With `listing_optional` (a Responses server need not list models), a model asked for is taken as it is
    when no /models answers.
    """
    # lazy: keeps --help and start-up free of the OpenAI SDK
    import openai


    if not api_url.startswith(("http://", "https://")):
        raise UsageError(f"{url_option} must be an http(s) URL, not {api_url!r}",
                         f"e.g. {url_option} http://127.0.0.1:8000/v1")
    base = api_url.rstrip("/")
    candidates = [base] if base.endswith("/v1") else [base, base + "/v1"]
    last: Exception | None = None
    for url in candidates:
        client = openai_client(url, key, timeout=timeout)
        try:
            listed = list(client.models.list())
        except openai.APIConnectionError as exc:
            raise EngineError(f"cannot reach {api_url} ({_cause(exc)})",
                              f"start the server first (e.g. swiftcli deploy) or check {url_option}") from None
        except openai.AuthenticationError:
            if key or os.environ.get(API_KEY_ENV):
                raise EngineError(f"{api_url} refused the API key", f"check {key_option}") from None
            raise EngineError(f"{api_url} refused the request: it needs a valid API key",
                              f"pass the server's key with {key_option}") from None
        except openai.PermissionDeniedError:
            raise EngineError(f"{api_url} refused the request (403)", f"check {key_option}") from None
        except openai.APIStatusError as exc:
            last = exc
            continue
        finally:
            client.close()
        return target_of(api_url, url, listed, model, model_option)
    if listing_optional and model:
        return ApiTarget(candidates[-1], model)
    raise EngineError(f"{api_url} is not an OpenAI-compatible API ({server_message(last)} on /models)",
                      f"point {url_option} at the server's /v1 root, e.g. http://127.0.0.1:8000/v1")


def target_of(api_url: str, url: str, listed: list[Any], model: str | None, model_option: str) -> ApiTarget:
    """The ApiTarget for a server's model list (`listed`, OpenAI's or Anthropic's entries)."""
    served = [m.id for m in listed]
    if model and served and model not in served:
        raise InputError(f"{api_url} does not serve {model!r}", f"it serves: {', '.join(served)}")
    if not model and not served:
        raise EngineError(f"{api_url} lists no models", f"pass the model name with {model_option}")
    chosen = model or served[0]
    # vLLM and `swiftcli deploy` list each model's context; other servers may not.
    entry = next((m for m in listed if m.id == chosen), None)
    context = getattr(entry, "max_model_len", None)
    return ApiTarget(url, chosen, context if isinstance(context, int) else None,
                     read_chat_sampling(getattr(entry, "chat_sampling", None)))


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__
    return str(inner).splitlines()[0][:200] if inner and str(inner) else "connection failed"


def is_chat_model(listed: Any, model: str) -> bool:
    """Whether a listed model takes chat requests: swiftcli servers say (`is_chat`); others serve chat."""
    for entry in getattr(listed, "data", listed):
        if entry.id == model:
            flag = (entry.model_extra or {}).get("is_chat")
            return True if flag is None else bool(flag)
    return True


@dataclass
class StreamTally:
    """What an OpenAI chat stream has said so far (the sync and async clients' chunks alike)."""

    text: str = ""
    chunks: int = 0
    finish_reason: str | None = None
    usage: Any = None

    def add(self, chunk: Any) -> bool:
        """Fold one chunk in; False for a chunk without choices (the closing usage chunk)."""
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices:
            return False
        choice = chunk.choices[0]
        if choice.delta.content:
            self.text += choice.delta.content
            self.chunks += 1
        self.finish_reason = choice.finish_reason or self.finish_reason
        return True

    @property
    def output_tokens(self) -> int:
        """The server's count when it sent usage, else the content chunks seen."""
        return int(self.usage.completion_tokens) if self.usage is not None else self.chunks

    @property
    def prompt_tokens(self) -> int:
        return int(self.usage.prompt_tokens) if self.usage is not None else 0
