"""`swiftcli app-ui`: a web chat page on a local engine, or in front of an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
from typing import Annotated, Any

import typer

from swiftcli.cli.errors import handled
from swiftcli.cli.options import BoolValue, GenerationOptions, ModelOptions, parse_bool, with_options

SERVER_PANEL = "Server"

EXAMPLES = """

[b]Examples[/b]

  swiftcli app-ui

  swiftcli app-ui --ckpt_dir output/checkpoint-100 --merge_lora true --port 7861

  swiftcli app-ui --api_url http://127.0.0.1:8000/v1 --api_key $OPENAI_API_KEY
"""


@with_options(model=ModelOptions, gen=GenerationOptions)
@handled
def app_ui_command(
    api_url: Annotated[str | None, typer.Option(
        "--api_url", "--api-url", rich_help_panel=SERVER_PANEL,
        help="Chat with a running OpenAI-compatible server (e.g. swiftcli deploy) instead of loading a model.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(
        "--api_key", "--api-key", rich_help_panel=SERVER_PANEL, envvar="OPENAI_API_KEY", show_envvar=False,
        help="API key for --api_url (default $OPENAI_API_KEY).")] = None,
    host: Annotated[str, typer.Option("--host", rich_help_panel=SERVER_PANEL, show_default=True,
                                      help="Address to bind; 0.0.0.0 exposes the page to your network.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", rich_help_panel=SERVER_PANEL, show_default=True,
                                      help="Port to serve the page on.")] = 7860,
    share: Annotated[BoolValue, typer.Option("--share", rich_help_panel=SERVER_PANEL, parser=parse_bool,
                                             metavar="BOOL", show_default=True,
                                             help="Also publish a public gradio.live link.")] = False,  # type: ignore[assignment]
    *,
    model: ModelOptions,
    gen: GenerationOptions,
) -> None:
    """Chat in the browser: streamed Markdown answers, a system prompt, sampling controls, Stop."""
    from swiftcli.errors import UsageError

    if not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, not {port}")
    if api_url and (model.ckpt_dir or model.infer_backend or model.merge_lora):
        raise UsageError("--api_url chats with a running server; --ckpt_dir, --merge_lora and --infer_backend "
                         "load a local model", "give one or the other")
    check_port_free(host, port)
    show_request_logs()
    backend, defaults = api_backend(api_url, api_key, model, gen) if api_url else engine_backend(model, gen)
    from swiftcli.webui import build_app, serve

    demo = build_app(backend, defaults)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the page as Ctrl-C does
    try:
        serve(demo, host=host, port=port, share=bool(share), on_ready=announce(backend.model_name))
    finally:
        signal.signal(signal.SIGTERM, previous)
        close_backend(backend)


def engine_backend(model: ModelOptions, gen: GenerationOptions) -> tuple[Any, Any]:
    from swiftcli.cli.common import engine_config, generation_config, quiet_engine_logs, resolve_spec
    from swiftcli.cli.state import verbose
    from swiftcli.engines import default_backend
    from swiftcli.registry.templates import get_template
    from swiftcli.webui import EngineChatBackend, PageDefaults

    quiet_engine_logs(verbose())
    spec = resolve_spec(model)
    engine = start_async_engine(spec, engine_config(model, gen.seed), model.infer_backend or default_backend())
    try:
        template = get_template(spec.template_type, engine.hf_tokenizer, spec.default_system,
                                enable_thinking=gen.enable_thinking)
        template.thinking(None)  # no thinking switch: refused now rather than at the first message
        base = generation_config(engine.generation_config, gen)
        name = spec.name if spec.ckpt_dir is None else f"{spec.name} ({spec.ckpt_dir.name})"
        backend = EngineChatBackend(engine, template, base, name)
    except BaseException:
        asyncio.run(engine.aclose())
        raise
    limit = int(engine.max_model_len)
    defaults = PageDefaults(temperature=base.temperature if not base.greedy else 0.0, top_p=base.top_p,
                            max_new_tokens=min(base.max_new_tokens or 2048, limit))
    return backend, defaults


def start_async_engine(spec: Any, config: Any, backend: str) -> Any:
    """Start the async engine; tests may swap this like `swiftcli.cli.common.start_engine`."""
    from swiftcli.engines import create_async_engine

    return create_async_engine(spec, config, backend)


def api_backend(api_url: str, api_key: str | None, model: ModelOptions, gen: GenerationOptions
                ) -> tuple[Any, Any]:
    from swiftcli.cli.common import generation_config
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.webui import OpenAIChatBackend, PageDefaults, connect_api

    target = connect_api(api_url, api_key, model.model_type or model.model_id_or_path)
    base = generation_config(GenerationConfig(), gen)
    extra: dict[str, Any] = {key: value for key, value in (("top_k", gen.top_k),
                                                           ("repetition_penalty", gen.repetition_penalty))
                             if value is not None}
    if gen.enable_thinking is not None:
        extra["chat_template_kwargs"] = {"enable_thinking": bool(gen.enable_thinking)}
    limit = model.max_model_len or target.max_model_len or 8192
    backend = OpenAIChatBackend(target.base_url, api_key or "EMPTY", target.model, base, extra_body=extra,
                                max_new_tokens_limit=limit)
    # The server counts the prompt and refuses prompt + max_tokens beyond the context: leave room for the prompt.
    defaults = PageDefaults(temperature=base.temperature if not base.greedy else 0.0, top_p=base.top_p,
                            max_new_tokens=min(base.max_new_tokens or 1024, max(1, limit // 2)),
                            system=model.system)
    return backend, defaults


def check_port_free(host: str, port: int) -> None:
    """Fail before loading a model when the page could not be served anyway."""
    from swiftcli.errors import UsageError

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
    from swiftcli.cli.state import quiet

    logger = logging.getLogger("swiftcli.webui")
    if quiet() or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def close_backend(backend: Any) -> None:
    try:
        asyncio.run(backend.aclose())
    except Exception as exc:  # shutting down: a backend that cannot close cleanly must not hide the exit
        logging.getLogger("swiftcli.webui").warning("closing the backend failed: %s", exc)


def announce(model_name: str) -> Any:
    def ready(local_url: str, share_url: str | None) -> None:
        from swiftcli.cli.errors import stderr

        stderr.print(f"Chat with {model_name} on {local_url}" + (f" (public link: {share_url})" if share_url else "")
                     + "; Ctrl-C stops.", highlight=False, markup=False)

    return ready


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


app_ui_command.__doc__ = (app_ui_command.__doc__ or "") + EXAMPLES
