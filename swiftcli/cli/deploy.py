"""`swiftcli deploy`: an OpenAI-compatible server (chat/completions, completions, models, health, metrics)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from swiftcli.cli.errors import handled
from swiftcli.cli.options import BoolValue, GenerationOptions, ModelOptions, parse_bool, with_options

SERVER_PANEL = "Server"
# Adapters in one engine batch with --enable_runtime_lora (more can be loaded; vLLM swaps them in as needed).
RUNTIME_MAX_LORAS = 4

EXAMPLES = """

[b]Examples[/b]

  swiftcli deploy --port 8000

  swiftcli deploy --model_type qwen2_5-7b-instruct --api_key "$KEY" --max_concurrent_requests 128

  swiftcli deploy --lora_modules mylora=output/checkpoint-100 --served_model_name base
"""


def _opt(*names: str, help: str, **kwargs: object) -> typer.models.OptionInfo:
    kwargs.setdefault("show_default", True)
    return typer.Option(*names, help=help, rich_help_panel=SERVER_PANEL, **kwargs)  # type: ignore[arg-type]


@with_options(model=ModelOptions, gen=GenerationOptions)
@handled
def deploy_command(
    host: Annotated[
        str, _opt("--host", help="Address to bind; 0.0.0.0 exposes the server to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, _opt("--port", help="Port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        _opt(
            "--api_key",
            "--api-key",
            envvar="SWIFTCLI_API_KEY",
            show_envvar=True,
            show_default=False,
            help="Require 'Authorization: Bearer KEY' on /v1/*.",
        ),
    ] = None,
    served_model_name: Annotated[
        str | None,
        _opt("--served_model_name", "--served-model-name", help="Model id in /v1/models; default the model type."),
    ] = None,
    lora_modules: Annotated[
        list[str] | None,
        _opt(
            "--lora_modules", "--lora-modules", metavar="NAME=PATH", help="Serve a LoRA adapter by name (repeatable)."
        ),
    ] = None,
    enable_runtime_lora: Annotated[
        BoolValue,
        _opt(
            "--enable_runtime_lora",
            "--enable-runtime-lora",
            parser=parse_bool,
            metavar="BOOL",
            help="Allow POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vllm backend; LoRA on).",
        ),
    ] = False,  # type: ignore[assignment]
    ssl_keyfile: Annotated[str | None, _opt("--ssl_keyfile", "--ssl-keyfile", help="TLS key file.")] = None,
    ssl_certfile: Annotated[str | None, _opt("--ssl_certfile", "--ssl-certfile", help="TLS certificate file.")] = None,
    max_concurrent_requests: Annotated[
        int | None,
        _opt(
            "--max_concurrent_requests",
            "--max-concurrent-requests",
            help="Requests in flight beyond this get 429; default no limit.",
        ),
    ] = None,
    shutdown_timeout: Annotated[
        float,
        _opt("--shutdown_timeout", "--shutdown-timeout", help="Seconds to let requests in flight finish on SIGTERM."),
    ] = 30.0,
    log_requests: Annotated[
        bool,
        _opt(
            "--log_requests",
            "--log-requests",
            parser=parse_bool,
            metavar="BOOL",
            help="Log each request (and uvicorn's access log).",
        ),
    ] = False,
    *,
    model: ModelOptions,
    gen: GenerationOptions,
) -> None:
    """Serve the model with an OpenAI-compatible API (chat, completions, streaming, LoRA, metrics)."""
    from swiftcli.cli.common import engine_config, generation_config, quiet_engine_logs, resolve_spec
    from swiftcli.cli.state import verbose
    from swiftcli.engines import default_backend
    from swiftcli.server.app import ServerSettings
    from swiftcli.server.run import ListenOptions, serve

    loras = parse_lora_modules(lora_modules or [])
    check_listen(host, port, ssl_keyfile, ssl_certfile)
    if max_concurrent_requests is not None and max_concurrent_requests < 1:
        raise _usage("--max_concurrent_requests must be at least 1")
    if shutdown_timeout < 0:
        raise _usage("--shutdown_timeout must be >= 0")
    quiet_engine_logs(verbose())
    _configure_logging(verbose() or log_requests)
    spec = resolve_spec(model)
    backend = model.infer_backend or default_backend()
    config = engine_config(model, gen.seed)
    if loras:
        if backend != "vllm":
            raise _usage("--lora_modules needs the vllm backend", "drop --infer_backend pt")
        config.enable_lora = True
        config.max_loras = max(config.max_loras, len(loras))
    if enable_runtime_lora:
        if backend != "vllm":
            raise _usage("--enable_runtime_lora needs the vllm backend", "drop --infer_backend pt")
        config.enable_lora = True
        config.max_loras = max(config.max_loras, len(loras), RUNTIME_MAX_LORAS)

    def load() -> tuple[object, object]:
        from swiftcli.engines import create_async_engine
        from swiftcli.registry.templates import get_template

        engine = create_async_engine(spec, config, backend)
        engine.generation_config = generation_config(engine.generation_config, gen)
        return engine, get_template(spec.template_type, engine.hf_tokenizer, spec.default_system)

    settings = ServerSettings(
        served_model_name=served_model_name,
        api_key=api_key or None,
        lora_modules=loras,
        max_concurrent_requests=max_concurrent_requests,
        log_requests=log_requests,
        default_max_tokens=gen.max_new_tokens,
        runtime_lora=bool(enable_runtime_lora),
    )
    listen = ListenOptions(
        host, port, ssl_keyfile, ssl_certfile, shutdown_timeout, "info" if verbose() or log_requests else "warning"
    )
    code = serve(settings, load, listen)
    if code:
        raise typer.Exit(code)


def _usage(message: str, hint: str | None = None) -> Exception:
    from swiftcli.errors import UsageError

    return UsageError(message, hint)


def parse_lora_modules(values: list[str]) -> dict[str, str]:
    """NAME=PATH pairs -> {name: path}, each path an adapter directory."""
    modules: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise _usage(f"--lora_modules {value!r} is not NAME=PATH", "e.g. --lora_modules mylora=output/ckpt")
        if not os.path.isfile(os.path.join(path, "adapter_config.json")):
            raise _usage(f"--lora_modules {name}: {path} is not a LoRA adapter directory (no adapter_config.json)")
        if name in modules:
            raise _usage(f"--lora_modules names {name!r} twice")
        modules[name] = os.path.abspath(path)
    return modules


def check_listen(host: str, port: int, ssl_keyfile: str | None, ssl_certfile: str | None) -> None:
    """Fail before loading the model when the address cannot be served."""
    import socket

    if not 0 < port < 65536:
        raise _usage(f"--port must be in 1..65535, not {port}")
    if bool(ssl_keyfile) != bool(ssl_certfile):
        raise _usage("TLS needs both --ssl_keyfile and --ssl_certfile")
    for path in (ssl_keyfile, ssl_certfile):
        if path and not os.path.isfile(path):
            raise _usage(f"{path} does not exist")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise _usage(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                "choose another --port, or stop the process that holds it",
            ) from None


def _configure_logging(verbose: bool) -> None:
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("swiftcli")
    log.addHandler(handler)
    log.setLevel(logging.INFO if verbose else logging.WARNING)


deploy_command.__doc__ = (deploy_command.__doc__ or "") + EXAMPLES
