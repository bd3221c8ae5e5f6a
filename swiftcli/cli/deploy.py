"""`swiftcli deploy`: an OpenAI-compatible server (chat/completions, completions, models, health, metrics)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from swiftcli.cli.errors import handled
from swiftcli.cli.options import BoolValue, parse_bool, with_options
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig, GenerationOverrides
from swiftcli.server.limits import ServerLimits

if TYPE_CHECKING:
    from swiftcli.config.spec import ModelSpec

SERVER_PANEL = "Server"
_LIMITS = ServerLimits()
# Adapters in one engine batch with --enable_runtime_lora (more can be loaded; vLLM swaps them in as needed).
RUNTIME_MAX_LORAS = 4

EXAMPLES = """

[b]Examples[/b]

  swiftcli deploy --port 8000

  swiftcli deploy --model-type qwen2_5-7b-instruct --api-key "$KEY" --max-concurrent-requests 128

  swiftcli deploy --lora-modules mylora=output/checkpoint-100 --served-model-name base
"""


def _opt(*names: str, help: str, **kwargs: object) -> typer.models.OptionInfo:
    kwargs.setdefault("show_default", True)
    return typer.Option(*names, help=help, rich_help_panel=SERVER_PANEL, **kwargs)  # type: ignore[arg-type]


@with_options(model=ModelOptions, engine=EngineConfig, gen=GenerationOverrides)
@handled
def deploy_command(
    host: Annotated[
        str, _opt("--host", help="Address to bind; 0.0.0.0 exposes the server to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, _opt("--port", help="Port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        _opt(
            "--api-key",
            envvar="SWIFTCLI_API_KEY",
            show_envvar=True,
            show_default=False,
            help="Require 'Authorization: Bearer KEY' on /v1/*.",
        ),
    ] = None,
    served_model_name: Annotated[
        str | None,
        _opt("--served-model-name", help="Model id in /v1/models; default the model type."),
    ] = None,
    lora_modules: Annotated[
        list[str] | None,
        _opt(
            "--lora-modules", metavar="NAME=PATH", help="Serve a LoRA adapter by name (repeatable)."
        ),
    ] = None,
    enable_runtime_lora: Annotated[
        BoolValue,
        _opt(
            "--enable-runtime-lora",
            parser=parse_bool,
            metavar="BOOL",
            help="Allow POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vllm backend; LoRA on).",
        ),
    ] = False,  # type: ignore[assignment]
    ssl_keyfile: Annotated[str | None, _opt("--ssl-keyfile", help="TLS key file.")] = None,
    ssl_certfile: Annotated[str | None, _opt("--ssl-certfile", help="TLS certificate file.")] = None,
    max_concurrent_requests: Annotated[
        int | None,
        _opt(
            "--max-concurrent-requests",
            help="Requests in flight beyond this get 429 with Retry-After; default twice the sequences the "
            "engine batches (vLLM's max_num_seqs).",
        ),
    ] = None,
    max_request_bytes: Annotated[
        int, _opt("--max-request-bytes", help="Largest request body; larger ones get 413."),
    ] = _LIMITS.max_request_bytes,
    max_stop_sequences: Annotated[
        int, _opt("--max-stop-sequences", help="Most stop sequences per request.")
    ] = _LIMITS.max_stop,
    max_prompts: Annotated[
        int, _opt("--max-prompts", help="Most prompts in one /v1/completions request.")
    ] = _LIMITS.max_prompts,
    max_sequences_per_request: Annotated[
        int, _opt("--max-sequences-per-request", help="Most sequences one request may start (n x prompts)."),
    ] = _LIMITS.max_choices,
    shutdown_timeout: Annotated[
        float,
        _opt("--shutdown-timeout", help="Seconds to let requests in flight finish on SIGTERM."),
    ] = 30.0,
    log_requests: Annotated[
        BoolValue,
        _opt(
            "--log-requests",
            parser=parse_bool,
            metavar="BOOL",
            help="Log each request (and uvicorn's access log).",
        ),
    ] = False,  # type: ignore[assignment]
    tool_call_parser: Annotated[
        str | None,
        _opt("--tool-call-parser", show_default=False,
             help="How model output becomes tool calls: hermes, llama3_json; default from the template family."),
    ] = None,
    reasoning_parser: Annotated[
        str | None,
        _opt("--reasoning-parser", show_default=False,
             help="Split <think>...</think> into reasoning_content: qwen3, deepseek_r1; default qwen3 for Qwen3."),
    ] = None,
    *,
    model: ModelOptions,
    engine: EngineConfig,
    gen: GenerationOverrides,
) -> None:
    """Serve the model with an OpenAI-compatible API (chat, completions, streaming, LoRA, metrics)."""
    from swiftcli.cli import output
    from swiftcli.cli.scaling import check_ray_address, run_worker_node
    from swiftcli.cli.state import verbose
    from swiftcli.config.sampling import chat_sampling
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.engines import default_backend
    from swiftcli.engines.loader import interactive_generation, load, resolve_spec
    from swiftcli.server.app import ServerSettings
    from swiftcli.server.run import ListenOptions, serve

    check_ray_address(engine, dataset=False)
    if engine.headless:  # a worker node: its engines only; the head node serves the API
        run_worker_node(model, engine)
        return
    loras = parse_lora_modules(lora_modules or [])
    check_parsers(tool_call_parser, reasoning_parser)
    check_listen(host, port, ssl_keyfile, ssl_certfile)
    if max_concurrent_requests is not None and max_concurrent_requests < 1:
        raise _usage("--max_concurrent_requests must be at least 1")
    if shutdown_timeout < 0:
        raise _usage("--shutdown_timeout must be >= 0")
    limits = server_limits(max_request_bytes, max_stop_sequences, max_prompts, max_sequences_per_request)
    given = gen.given()
    GenerationConfig().copy(**given)  # bad sampling settings fail before the engine starts
    if loras:
        if (model.infer_backend or default_backend()) != "vllm":
            raise _usage("--lora_modules needs the vllm backend", "drop --infer_backend pt")
        engine.enable_lora = True
        engine.max_loras = max(engine.max_loras, len(loras))
    if enable_runtime_lora:
        if (model.infer_backend or default_backend()) != "vllm":
            raise _usage("--enable_runtime_lora needs the vllm backend", "drop --infer_backend pt")
        engine.enable_lora = True
        engine.max_loras = max(engine.max_loras, len(loras), RUNTIME_MAX_LORAS)
    log = output.engine_logs("deploy")
    _configure_logging(verbose() or bool(log_requests))
    spec = resolve_spec(model)  # a wrong model fails here, before the server starts
    check_adapters(loras, spec, engine)

    def start() -> tuple[object, object]:
        session = load(spec, engine, backend=model.infer_backend, generation=given, asynchronous=True)
        session.engine.generation_config = session.generation  # the server's defaults for requests
        return session.engine, session.template

    settings = ServerSettings(
        served_model_name=served_model_name,
        api_key=api_key or None,
        lora_modules=loras,
        max_concurrent_requests=max_concurrent_requests,
        log_requests=bool(log_requests),
        default_max_tokens=gen.max_new_tokens,
        limits=limits,
        tool_call_parser=tool_call_parser,
        reasoning_parser=reasoning_parser,
        runtime_lora=bool(enable_runtime_lora),
        chat_sampling=chat_sampling(interactive_generation(spec, given)),
        engine_log=log.path.name if log.path else None,
    )
    listen = ListenOptions(
        host, port, ssl_keyfile, ssl_certfile, shutdown_timeout, "info" if verbose() or log_requests else "warning"
    )
    code = serve(settings, start, listen)
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


def check_parsers(tool_call_parser: str | None, reasoning_parser: str | None) -> None:
    """Unknown parser names fail before the model loads."""
    from swiftcli.parsers import get_reasoning_parser, get_tool_parser

    if tool_call_parser:
        get_tool_parser(tool_call_parser)
    if reasoning_parser:
        get_reasoning_parser(reasoning_parser)


def server_limits(max_request_bytes: int, max_stop: int, max_prompts: int, max_choices: int) -> ServerLimits:
    """The limit options -> ServerLimits; each must be at least 1 (0 stop sequences is allowed: none)."""
    for name, value, least in (("--max_request_bytes", max_request_bytes, 1), ("--max_stop_sequences", max_stop, 0),
                               ("--max_prompts", max_prompts, 1), ("--max_sequences_per_request", max_choices, 1)):
        if value < least:
            raise _usage(f"{name} must be at least {least}, not {value}")
    return ServerLimits(max_request_bytes=max_request_bytes, max_stop=max_stop, max_prompts=max_prompts,
                        max_choices=max_choices)


def check_adapters(loras: dict[str, str], spec: ModelSpec, config: EngineConfig) -> None:
    """Fail before loading when an adapter cannot be served; raise --max_lora_rank (and say so) when an
    adapter's rank needs it."""
    from pathlib import Path

    from swiftcli.cli.output import message
    from swiftcli.export.adapters import check_adapter, engine_rank

    paths = {**{p.name: p for p in spec.adapters}, **{n: Path(p) for n, p in loras.items()}}
    if not paths:
        return
    ranks = {name: check_adapter(path, spec).rank for name, path in paths.items()}
    top = max(ranks, key=lambda name: ranks[name])
    needed = engine_rank(ranks[top])
    if needed > config.max_lora_rank:
        message(f"Raising --max_lora_rank from {config.max_lora_rank} to {needed}: adapter {top} has "
                f"rank {ranks[top]}.")
        config.max_lora_rank = needed


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
