"""`swiftcli deploy`: an OpenAI-compatible server (chat/completions, completions, models, health, metrics)."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from swiftcli.apiclient import API_KEY_ENV
from swiftcli.cli import output
from swiftcli.cli.common import check_before_loading
from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.cli.output import message, show_logs
from swiftcli.cli.scaling import check_ray_address, run_worker_node
from swiftcli.cli.state import verbose
from swiftcli.config.commands import SERVER, ListenConfig, WatchEvalConfig, check_writable, option
from swiftcli.config.options import ModelOptions
from swiftcli.config.sampling import chat_sampling, serving_generation
from swiftcli.config.spec import EngineConfig, GenerationOverrides
from swiftcli.data.request_log import DEFAULT_KEEP, DEFAULT_MAX_BYTES, RequestLogConfig, log_kind
from swiftcli.engines import default_backend, require_capability
from swiftcli.engines.loader import interactive_generation
from swiftcli.engines.vllm_embed import AsyncVllmEmbedder
from swiftcli.errors import UsageError
from swiftcli.export.adapters import check_adapter, engine_rank
from swiftcli.export.train_parity import refuse_differences, serving_reports
from swiftcli.loading import load
from swiftcli.parsers import get_reasoning_parser, get_tool_parser
from swiftcli.registry.templates import get_template
from swiftcli.server.app import ServerSettings
from swiftcli.server.limits import ServerLimits
from swiftcli.server.media import MediaSettings
from swiftcli.server.run import ListenOptions
from swiftcli.server.watch_eval import check_watch_eval, prepare_scoring, scoring_engine

if TYPE_CHECKING:
    from swiftcli.config.spec import ModelSpec

_LIMITS = ServerLimits()
TASKS = ("chat", "embedding")
# Adapters in one engine batch with --enable_runtime_lora (more can be loaded; vLLM swaps them in as needed).
RUNTIME_MAX_LORAS = 4

EXAMPLES = """

[b]Examples[/b]

  swiftcli deploy --port 8000

  swiftcli deploy --model-type qwen2_5-7b-instruct --api-key "$KEY" --max-concurrent-requests 128

  swiftcli deploy --lora-modules mylora=output/checkpoint-100 --served-model-name base
"""


@dataclass(frozen=True)
class ServeOptions:
    """What the API serves and the limits it keeps (where it listens: config.commands.ListenConfig)."""

    api_key: str | None = option(None, "Require 'Authorization: Bearer KEY' on /v1/*.", panel=SERVER,
                                 envvar=API_KEY_ENV, metavar="KEY")
    served_model_name: str | None = option(None, "Model id in /v1/models; default the model type.", panel=SERVER)
    lora_modules: list[str] | None = option(None, "Serve a LoRA adapter by name (repeatable).", panel=SERVER,
                                            metavar="NAME=PATH")
    enable_runtime_lora: bool = option(False, "Allow POST /v1/load_lora_adapter and /v1/unload_lora_adapter "
                                       "(vllm backend; LoRA on).", panel=SERVER)
    watch: str | None = option(None, "Serve every LoRA checkpoint of this training output folder as it appears "
                               "(checkpoint-N, and latest); GET /v1/checkpoints lists them.", panel=SERVER,
                               metavar="DIR")
    max_concurrent_requests: int | None = option(
        None, "Requests in flight beyond this get 429 with Retry-After; default twice the sequences the engine "
        "batches (vLLM's max_num_seqs).", panel=SERVER)
    max_request_bytes: int = option(_LIMITS.max_request_bytes, "Largest request body; larger ones get 413.",
                                    panel=SERVER)
    max_stop_sequences: int = option(_LIMITS.max_stop, "Most stop sequences per request.", panel=SERVER)
    max_prompts: int = option(_LIMITS.max_prompts, "Most prompts in one /v1/completions request.", panel=SERVER)
    max_sequences_per_request: int = option(_LIMITS.max_choices, "Most sequences one request may start "
                                            "(n x prompts).", panel=SERVER)
    log_requests: str | None = option(
        None, "Record each answered request (messages, sampling, answer, usage, latency; never the API key) in "
        "FILE.jsonl, or SQLite with FILE.sqlite / FILE.db; clients rate them with POST /v1/requests/ID/rating; "
        "swiftcli logs FILE lists and exports them.", panel=SERVER, metavar="FILE")
    log_requests_max_bytes: int = option(DEFAULT_MAX_BYTES, "Rotate the request log when it reaches this size "
                                         "(FILE.jsonl -> FILE.1.jsonl).", panel=SERVER)
    log_requests_keep: int = option(DEFAULT_KEEP, "Rotated request logs to keep.", panel=SERVER)
    tool_call_parser: str | None = option(None, "How model output becomes tool calls: hermes, llama3_json; "
                                          "default from the template family.", panel=SERVER)
    reasoning_parser: str | None = option(None, "Split the think block into reasoning_content: qwen3, "
                                          "deepseek_r1; default qwen3 for Qwen3.", panel=SERVER)
    strict_parity: bool = option(False, "Refuse a checkpoint whose prompt (template, system prompt) or sampling "
                                 "defaults differ from its training run's args.json: exit 1 at start; --watch "
                                 "leaves it unloaded.", panel=SERVER)
    task: str = option("chat", "chat: the generation routes; embedding: /v1/embeddings on vLLM's pooling "
                       "runner.", panel=SERVER, metavar="TASK")

    allowed_media_domains: list[str] | None = option(
        None, "Hosts or CIDRs image URLs may reach even when private (repeatable, or comma-separated); by default "
        "only public addresses are fetched.", panel=SERVER, metavar="HOST|CIDR")
    allowed_local_media_path: str | None = option(
        None, "Let requests name image files under DIR (file paths are refused otherwise).", panel=SERVER,
        metavar="DIR")

    def __post_init__(self) -> None:
        if self.max_concurrent_requests is not None and self.max_concurrent_requests < 1:
            raise UsageError("--max-concurrent-requests must be at least 1")
        self.limits()
        if self.watch is not None:
            check_watch_dir(self.watch)
        check_parsers(self.tool_call_parser, self.reasoning_parser)
        if self.log_requests is not None:
            log_kind(self.log_requests, "--log-requests")
        config = self.request_log()
        if config is not None:
            check_writable(Path(config.path), "--log-requests", file=True)

    def request_log(self) -> RequestLogConfig | None:
        if self.log_requests is None:
            return None
        return RequestLogConfig(str(Path(self.log_requests).expanduser().resolve()), self.log_requests_max_bytes,
                                self.log_requests_keep)

    def limits(self) -> ServerLimits:
        return server_limits(self.max_request_bytes, self.max_stop_sequences, self.max_prompts,
                             self.max_sequences_per_request)


@with_options(serve=ServeOptions, listen=ListenConfig, model=ModelOptions, engine=EngineConfig,
              gen=GenerationOverrides, scoring=WatchEvalConfig)
@handled
def deploy_command(*, serve: ServeOptions, listen: ListenConfig, model: ModelOptions, engine: EngineConfig,
                   gen: GenerationOverrides, scoring: WatchEvalConfig) -> None:
    """Serve the model with an OpenAI-compatible API (chat, completions, streaming, LoRA, metrics)."""
    from swiftcli.loading import resolve_spec  # looked up per call: tests patch it on its module

    check_watch_eval(scoring, serve.watch)
    check_ray_address(engine, dataset=False)
    if engine.headless:  # a worker node: its engines only; the head node serves the API
        run_worker_node(model, engine)
        return
    loras = parse_lora_modules(serve.lora_modules or [])
    check_task(serve.task, model.infer_backend, bool(loras or serve.enable_runtime_lora))
    check_listen(listen.host, listen.port)
    check_before_loading(model, engine)
    engine = lora_engine(engine, model, loras, serve.enable_runtime_lora, serve.watch is not None)
    output.engine_logs("deploy")
    _configure_logging(verbose())
    spec = resolve_spec(model, output.message)  # a wrong model fails here, before the server starts
    engine = check_adapters(loras, spec, engine)
    if serve.task == "chat":
        report_train_parity(model, spec, loras, gen.given(), engine, serve.strict_parity)
    watch_scoring, engine = prepare_watch_scoring(scoring, serve.watch, spec, model, engine, gen.given())
    code = run_server(serve, listen, loras, spec, model, engine, gen.given(), watch_scoring)
    if code:
        raise typer.Exit(code)


def lora_engine(engine: EngineConfig, model: ModelOptions, loras: dict[str, str], runtime: bool,
                watch: bool = False) -> EngineConfig:
    """The engine config with LoRA on, room for the adapters named, and the backend checked for it."""
    if loras:
        require_capability(model.infer_backend, "runtime_lora", "--lora_modules", asynchronous=True)
        engine = replace(engine, enable_lora=True, max_loras=max(engine.max_loras, len(loras)))
    if runtime or watch:
        require_capability(model.infer_backend, "runtime_lora", "--watch" if watch else "--enable_runtime_lora",
                           asynchronous=True)
        engine = replace(engine, enable_lora=True, max_loras=max(engine.max_loras, len(loras), RUNTIME_MAX_LORAS))
    return engine


def run_server(serve: ServeOptions, listen: ListenConfig, loras: dict[str, str], spec: ModelSpec,
               model: ModelOptions, engine: EngineConfig, given: dict[str, Any], watch_scoring: Any = None) -> int:
    """Start the server; the engine loads in the background while /health answers 503. The exit code."""
    from swiftcli.server.run import serve as serve_app  # looked up per call: tests patch it on its module

    log = output.engine_logs("deploy")

    def start() -> tuple[object, object]:
        if serve.task == "embedding":
            return start_embedder(spec, engine)
        session = load(spec, engine, backend=model.infer_backend, generation=given, asynchronous=True)
        return session.engine, session.template

    settings = ServerSettings(
        served_model_name=serve.served_model_name, api_key=serve.api_key or None, lora_modules=loras,
        max_concurrent_requests=serve.max_concurrent_requests, request_log=serve.request_log(),
        default_max_tokens=given.get("max_new_tokens"), limits=serve.limits(),
        tool_call_parser=serve.tool_call_parser, reasoning_parser=serve.reasoning_parser,
        runtime_lora=serve.enable_runtime_lora, chat_sampling=chat_sampling(interactive_generation(spec, given)),
        task=serve.task,
        # the server's defaults for requests: the model's own (as its engine reads them), then the user's options
        generation=serving_generation(spec, given),
        media=media_settings(serve.allowed_media_domains, serve.allowed_local_media_path, engine),
        engine_log=log.path.name if log is not None and log.path else None,
        watch_dir=str(Path(serve.watch).expanduser().resolve()) if serve.watch else None,
        watch_scoring=watch_scoring,
        strict_parity=serve.strict_parity,
    )
    level = "info" if verbose() else "warning"
    return serve_app(settings, start, ListenOptions(**asdict(listen), log_level=level), announce=output.message)


def prepare_watch_scoring(options: WatchEvalConfig, watch: str | None, spec: ModelSpec, model: ModelOptions,
                          engine: EngineConfig, given: dict[str, Any]) -> tuple[Any, EngineConfig]:
    """--eval_dataset with --watch: the datasets read and checked now, and the engine with priority scheduling
    (server.watch_eval); (None, engine) without."""
    if not options.active or watch is None:
        return None, engine
    scoring = prepare_scoring(options, Path(watch).expanduser().resolve(), spec.model_dir, given)
    return scoring, scoring_engine(engine, model.infer_backend)


def check_task(task: str, backend: str | None, lora: bool) -> None:
    """--task embedding runs vLLM's pooling runner on the base model."""
    if task not in TASKS:
        raise UsageError(f"--task must be chat or embedding, not {task!r}")
    if task == "embedding" and (backend or default_backend()) != "vllm":
        raise UsageError("--task embedding needs the vllm backend", "drop --infer-backend pt")
    if task == "embedding" and lora:
        raise UsageError("--task embedding serves the base model: LoRA options do not apply",
                         "merge the adapter first (swiftcli export --merge-lora true)")


def start_embedder(spec: ModelSpec, engine: EngineConfig) -> tuple[object, object]:
    """The pooling engine and the model's template (for /v1/models and the tokenizer routes)."""
    embedder = AsyncVllmEmbedder(spec, engine)
    return embedder, get_template(spec.template_type, embedder.hf_tokenizer, spec.default_system)


def _usage(message: str, hint: str | None = None) -> Exception:
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


def check_adapters(loras: dict[str, str], spec: ModelSpec, config: EngineConfig) -> EngineConfig:
    """Fail before loading when an adapter cannot be served; the config with --max_lora_rank raised (said so)
    when an adapter's rank needs it."""

    paths = {**{p.name: p for p in spec.adapters}, **{n: Path(p) for n, p in loras.items()}}
    if not paths:
        return config
    ranks = {name: check_adapter(path, spec).rank for name, path in paths.items()}
    top = max(ranks, key=lambda name: ranks[name])
    needed = engine_rank(ranks[top])
    if needed > config.max_lora_rank:
        message(f"Raising --max_lora_rank from {config.max_lora_rank} to {needed}: adapter {top} has "
                f"rank {ranks[top]}.")
        return replace(config, max_lora_rank=needed)
    return config


def report_train_parity(model: ModelOptions, spec: ModelSpec, loras: dict[str, str], given: dict[str, Any],
                        engine: EngineConfig, strict: bool) -> None:
    """One line per difference between each checkpoint's training and this server (stderr); with `strict`, the
    first difference is the error."""
    checkpoints = {Path(model.ckpt_dir).name: Path(model.ckpt_dir)} if model.ckpt_dir else {}
    checkpoints.update({name: Path(path) for name, path in loras.items()})
    if not checkpoints:
        return
    reports = serving_reports(checkpoints, spec, serving_generation(spec, given), engine.trust_remote_code,
                              given.get("enable_thinking"), adapters_served=not model.merge_lora)
    for report in reports:
        for line in report.summary():
            message(line, style=None if report.ok else "yellow")
    if strict:
        refuse_differences(reports)


def check_watch_dir(value: str) -> None:
    """--watch must name an existing folder (it may still be empty: checkpoints are picked up as they appear)."""
    path = Path(value).expanduser()
    if not path.exists():
        raise _usage(f"--watch {value}: no such directory", "point it at the training run's output folder")
    if not path.is_dir():
        raise _usage(f"--watch {value} is a file, not a directory", "point it at the training run's output folder")


def check_listen(host: str, port: int) -> None:
    """Fail before loading the model when the address cannot be served (the port and TLS files are checked by
    ListenConfig)."""
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
    show_logs("swiftcli", logging.INFO if verbose else logging.WARNING)


deploy_command.__doc__ = (deploy_command.__doc__ or "") + EXAMPLES


def media_settings(domains: list[str] | None, local_path: str | None, engine: EngineConfig) -> Any:
    """The deploy options that bound requests' images and videos, checked before the engine starts."""
    entries = [d.strip() for item in domains or [] for d in item.split(",") if d.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", entry):
                raise _usage(f"--allowed_media_domains: {entry!r} is neither a host name nor a CIDR") from None
    if local_path is not None and not Path(local_path).is_dir():
        raise _usage(f"--allowed_local_media_path {local_path} is not a directory")
    local = str(Path(local_path).resolve()) if local_path else None
    limits = engine.limit_mm_per_prompt or {}
    return MediaSettings(tuple(entries), local, limits.get("image"), limits.get("video"))
