"""`swiftcli app-ui`: a web chat page on a local engine, or in front of an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any

from swiftcli.apidialect import carried, connect_dialect, refuse_uncarried
from swiftcli.cli.common import check_before_loading, load
from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.cli.output import show_logs, stderr
from swiftcli.cli.remote import DEFAULT_CONCURRENCY, ApiKeyOption, ApiUrlOption, check_dialect
from swiftcli.cli.state import quiet
from swiftcli.config.commands import SERVER, ApiDialectOptions, ListenConfig, option
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationConfig, GenerationOverrides
from swiftcli.engines.loader import interactive_generation, merge_generation
from swiftcli.errors import UsageError
from swiftcli.webui import ApiChatBackend, EngineChatBackend, PageDefaults, build_app, serve
from swiftcli.webui.checkpoints import training_run_panel

EXAMPLES = """

[b]Examples[/b]

  swiftcli app-ui

  swiftcli app-ui --ckpt-dir output/checkpoint-100 --merge-lora true --port 7861

  swiftcli app-ui --api-url http://127.0.0.1:8000/v1 --api-key "$SWIFTCLI_API_KEY" --api-dialect messages
"""


@dataclass(frozen=True)
class PageOptions:
    """Where the chat page is served, who may use it, and how many answers it generates at once."""

    host: str = option(ListenConfig.host, "Address to bind; 0.0.0.0 exposes the page to your network.",
                       panel=SERVER)
    port: int = option(7860, "Port to serve the page on.", panel=SERVER)
    share: bool = option(False, "Also publish a public gradio.live link.", panel=SERVER)
    auth: list[str] | None = option(None, "Require this login (repeatable); other local users can read it in the "
                                    "process list, so prefer --auth-file.", panel=SERVER, metavar="USER:PASSWORD")
    auth_file: str | None = option(None, "Require a login from FILE: one USER:PASSWORD per line (# comments).",
                                   panel=SERVER, metavar="FILE")
    max_concurrency: int = option(DEFAULT_CONCURRENCY, "Answers generated at once over all tabs; more wait in "
                                  "the queue.", panel=SERVER)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise UsageError(f"--port must be between 1 and 65535, not {self.port}")
        if self.max_concurrency < 1:
            raise UsageError(f"--max-concurrency must be at least 1, not {self.max_concurrency}")


@with_options(page=PageOptions, model=ModelOptions, engine=EngineConfig, gen=GenerationOverrides,
              dialect=ApiDialectOptions)
@handled
def app_ui_command(
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
    *,
    page: PageOptions,
    model: ModelOptions,
    engine: EngineConfig,
    gen: GenerationOverrides,
    dialect: ApiDialectOptions,
) -> None:
    """Chat in the browser: streamed Markdown answers, a system prompt, sampling controls, Stop."""
    if api_url and (model.ckpt_dir or model.infer_backend or model.merge_lora):
        raise UsageError("--api-url chats with a running server; --ckpt-dir, --merge-lora and --infer-backend "
                         "load a local model", "give one or the other")
    api_dialect = check_dialect(api_url, dialect)
    logins = parse_auth(page.auth or [], page.auth_file)
    check_port_free(page.host, page.port)
    if not api_url:
        # looked up per call, so a lent engine (tests) or a swapped function takes effect
        from swiftcli.cli.output import engine_logs

        check_before_loading(model, engine)
        engine_logs("app-ui")  # first: the page's request log below must bind the terminal, not the engine log
    show_request_logs()
    if api_url:
        backend, defaults = api_backend(api_url, api_key, model, engine, gen, api_dialect)
    else:
        backend, defaults = engine_backend(model, engine, gen)
    serve_page(backend, defaults, page, logins)


def serve_page(backend: Any, defaults: Any, page: PageOptions, logins: list[tuple[str, str]] | None) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the backend (and its engine)."""

    # In front of `deploy --watch`: the training run's checkpoints, their curve and a chat with any of them.
    run_panel = training_run_panel(backend)
    demo = build_app(backend, defaults, concurrency=page.max_concurrency, panels=[run_panel] if run_panel else ())
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the page as Ctrl-C does
    try:
        serve(demo, host=page.host, port=page.port, share=page.share, on_ready=announce(backend.model_name),
              auth=logins)
    finally:
        signal.signal(signal.SIGTERM, previous)
        close_backend(backend)


def engine_backend(model: ModelOptions, engine_config: EngineConfig, gen: GenerationOverrides) -> tuple[Any, Any]:
    session = load("app-ui", model, engine_config, gen, asynchronous=True)
    engine = session.engine
    try:
        spec, base = session.spec, interactive_generation(session.spec, gen.given())
        name = spec.name if spec.ckpt_dir is None else f"{spec.name} ({spec.ckpt_dir.name})"
        backend = EngineChatBackend(engine, session.template, base, name)
    except BaseException:
        asyncio.run(engine.aclose())
        raise
    limit = int(engine.max_model_len)
    # The page's controls start at the sampling in force: the model's defaults and the options given.
    defaults = PageDefaults(temperature=base.temperature if not base.greedy else 0.0, top_p=base.top_p,
                            max_new_tokens=min(base.max_new_tokens or 2048, limit), top_k=base.top_k,
                            repetition_penalty=base.repetition_penalty)
    return backend, defaults


def api_backend(api_url: str, api_key: str | None, model: ModelOptions, engine: EngineConfig,
                gen: GenerationOverrides, dialect: str = "chat") -> tuple[Any, Any]:
    refuse_uncarried(dialect, gen.given())  # before connecting: a setting the API has no field for
    target = connect_dialect(api_url, api_key, model.model_type or model.model_id_or_path, dialect)
    # The controls start at the sampling the server lists for a chat (swiftcli deploy: the model's own, as a
    # local app-ui would), else at ms-swift's defaults; then what the user gave.
    base = merge_generation(GenerationConfig(), gen.given(), **target.chat_sampling)
    extra: dict[str, Any] = {key: value for key, value in (("top_k", gen.top_k),
                                                           ("repetition_penalty", gen.repetition_penalty))
                             if value is not None}
    if gen.enable_thinking is not None:
        extra["chat_template_kwargs"] = {"enable_thinking": bool(gen.enable_thinking)}
    limit = engine.max_model_len or target.max_model_len or 8192
    backend = ApiChatBackend(target.base_url, api_key or "EMPTY", target.model, base, extra_body=extra,
                             max_new_tokens_limit=limit, dialect=dialect)
    # The server counts the prompt and refuses prompt + max_tokens beyond the context: leave room for the prompt.
    # Controls the API has no field for start neutral (top_k 0, repetition_penalty 1), so nothing is dropped.
    sendable = carried(dialect, {"top_k": base.top_k, "repetition_penalty": base.repetition_penalty})
    defaults = PageDefaults(temperature=base.temperature if not base.greedy else 0.0, top_p=base.top_p,
                            max_new_tokens=min(base.max_new_tokens or 1024, max(1, limit // 2)),
                            system=model.system, top_k=sendable.get("top_k", 0),
                            repetition_penalty=sendable.get("repetition_penalty", 1.0))
    return backend, defaults


def parse_auth(values: list[str], auth_file: str | None) -> list[tuple[str, str]] | None:
    """--auth USER:PASSWORD values and --auth_file lines -> Gradio's [(user, password)]; None: no login."""

    entries = [("--auth", value) for value in values]
    if auth_file:
        try:
            text = open(auth_file, encoding="utf-8").read()
        except OSError as exc:
            raise UsageError(f"cannot read --auth_file {auth_file}: {exc.strerror or exc}") from None
        entries += [(f"{auth_file}:{n}", line.strip()) for n, line in enumerate(text.split("\n"), 1)
                    if line.strip() and not line.lstrip().startswith("#")]
        if not any(where != "--auth" for where, _ in entries):
            raise UsageError(f"--auth_file {auth_file} holds no USER:PASSWORD line")
    logins = []
    for where, entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            # The value is a secret: name where it came from, never echo it.
            raise UsageError(f"{where}: a login must be USER:PASSWORD with both parts non-empty")
        logins.append((user, password))
    return logins or None


def check_port_free(host: str, port: int) -> None:
    """Fail before loading a model when the page could not be served anyway."""

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r} is not an address here ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            hint = ("pick another --port, or stop what is using it" if exc.errno == errno.EADDRINUSE
                    else "use an address of this machine, e.g. --host 127.0.0.1 (or 0.0.0.0 for all)")
            raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror}", hint) from None


def show_request_logs() -> None:
    """The page's own log lines (a stopped answer, a failed request) go to stderr, as a server's do."""

    if quiet() or logging.getLogger("swiftcli.webui").handlers:
        return
    show_logs("swiftcli.webui", logging.INFO, propagate=False)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def close_backend(backend: Any) -> None:
    try:
        asyncio.run(backend.aclose())
    except Exception as exc:  # shutting down: a backend that cannot close cleanly must not hide the exit
        logging.getLogger("swiftcli.webui").warning("closing the backend failed: %s", exc)


def announce(model_name: str) -> Any:
    def ready(local_url: str, share_url: str | None) -> None:
        stderr.print(f"Chat with {model_name} on {local_url}" + (f" (public link: {share_url})" if share_url else "")
                     + "; Ctrl-C stops.", highlight=False, markup=False)

    return ready


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


app_ui_command.__doc__ = (app_ui_command.__doc__ or "") + EXAMPLES
