"""Shared options, declared once: each field of an options dataclass is one CLI option with one default and one
help text. `with_options` expands the dataclasses into a command's signature (both --snake_case and
--kebab-case) and hands the command a filled instance, so commands never take 30 loose parameters."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Annotated, Any, Optional

import typer

from swiftcli.errors import UsageError

MODEL_PANEL = "Model"
ENGINE_PANEL = "Engine"
GENERATION_PANEL = "Generation"


class BoolValue(int):
    """Marks an option that takes true/false as a value, as ms-swift's do (`--merge_lora true`)."""


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "on"):
        return True
    if text in ("false", "0", "no", "n", "off"):
        return False
    raise typer.BadParameter(f"expected true or false, got {value!r}")


def opt(default: Any, help: str, panel: str, *aliases: str, choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"help": help, "panel": panel, "aliases": aliases, "choices": choices})


def option_names(name: str, aliases: tuple[str, ...] = ()) -> list[str]:
    names = [f"--{name}"]
    if "_" in name:
        names.append(f"--{name.replace('_', '-')}")
    return [*names, *aliases]


@dataclass
class ModelOptions:
    model_type: str | None = opt(None, "Registered model type (see `swiftcli models`).", MODEL_PANEL)
    model_id_or_path: str | None = opt(
        None, "Local model directory or hub id.", MODEL_PANEL, "--model")
    ckpt_dir: str | None = opt(
        None, "Fine-tuned checkpoint (full weights or a LoRA adapter).", MODEL_PANEL)
    template_type: str | None = opt(None, "Chat template; default from the registry or the tokenizer.",
                                       MODEL_PANEL)
    system: str | None = opt(None, "System prompt; default the template's.", MODEL_PANEL)
    dtype: str | None = opt(None, "bf16, fp16, fp32 or auto.", MODEL_PANEL, "--torch_dtype")
    revision: str | None = opt(None, "Hub revision to download.", MODEL_PANEL)
    merge_lora: BoolValue = opt(False, "Merge a LoRA --ckpt_dir first (or reuse the merge) and run the merged "
                                       "weights.", MODEL_PANEL)
    infer_backend: str | None = opt(None, "vllm or pt; default vllm when installed.", ENGINE_PANEL,
                                       choices=("vllm", "pt"))
    max_model_len: int | None = opt(None, "Context length; default the model's.", ENGINE_PANEL)
    gpu_memory_utilization: float | None = opt(
        None, "Fraction of GPU memory for vLLM (on CPU: of node memory; default a 2 GiB KV cache).", ENGINE_PANEL)
    tensor_parallel_size: int = opt(1, "Tensor-parallel workers.", ENGINE_PANEL)
    pipeline_parallel_size: int = opt(1, "Pipeline-parallel stages.", ENGINE_PANEL)
    enforce_eager: BoolValue | None = opt(
        None, "Eager mode; default true on CPU (correct bf16 answers, fast start), false on GPU.", ENGINE_PANEL)
    max_num_seqs: int | None = opt(None, "Most sequences per engine step.", ENGINE_PANEL)
    trust_remote_code: BoolValue = opt(False, "Run code shipped with the model.", ENGINE_PANEL)
    vllm_enable_lora: BoolValue = opt(False, "Serve a LoRA --ckpt_dir as an adapter on vLLM.", ENGINE_PANEL)
    max_lora_rank: int = opt(16, "Largest LoRA rank vLLM accepts.", ENGINE_PANEL)
    distributed_executor_backend: str | None = opt(
        None, "mp (one node, default) or ray (multi-node).", ENGINE_PANEL, choices=("mp", "ray"))
    engine_kwargs: str | None = opt(None, "Extra vLLM engine arguments as JSON, e.g. '{\"max_num_seqs\": 64}'.",
                                       ENGINE_PANEL)


@dataclass
class GenerationOptions:
    max_new_tokens: int | None = opt(None, "Most new tokens per answer.", GENERATION_PANEL)
    temperature: float | None = opt(None, "Sampling temperature; 0 is greedy.", GENERATION_PANEL)
    top_p: float | None = opt(None, "Nucleus sampling.", GENERATION_PANEL)
    top_k: int | None = opt(None, "Top-k sampling; 0 disables.", GENERATION_PANEL)
    repetition_penalty: float | None = opt(None, "Repetition penalty.", GENERATION_PANEL)
    do_sample: BoolValue | None = opt(None, "false for greedy decoding.", GENERATION_PANEL)
    seed: int | None = opt(None, "Random seed (engine and sampling).", GENERATION_PANEL)
    stop: list[str] | None = opt(None, "Stop string (repeatable).", GENERATION_PANEL)
    ignore_eos: BoolValue | None = opt(None, "true to generate max_new_tokens regardless of EOS (benchmarks).",
                                          GENERATION_PANEL)
    enable_thinking: BoolValue | None = opt(None, "Thinking on or off, for templates with a switch (Qwen3).",
                                            GENERATION_PANEL)


def _parameter(f: Any) -> inspect.Parameter:
    meta = f.metadata
    annotation = f.type if not isinstance(f.type, str) else eval(f.type, globals())  # noqa: S307
    kwargs: dict[str, Any] = {"help": meta["help"], "rich_help_panel": meta["panel"], "show_default": True}
    base = annotation
    if base is BoolValue or base == Optional[BoolValue]:  # noqa: UP045 (matches either spelling at runtime)
        kwargs.update(parser=parse_bool, metavar="BOOL")
    if meta["choices"]:
        kwargs["metavar"] = "|".join(meta["choices"])
        kwargs["callback"] = _choice_callback(option_names(f.name)[0], meta["choices"])
    typer_option = typer.Option(*option_names(f.name, meta["aliases"]), **kwargs)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                             annotation=Annotated[annotation, typer_option])


def _choice_callback(name: str, choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def with_options(**groups: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Expand option dataclasses into the command's CLI signature: `@with_options(model=ModelOptions)` gives the
    command a `model: ModelOptions` argument filled from --model_type, --ckpt_dir, ..."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        own = [p.replace(annotation=hints.get(name, p.annotation))
               for name, p in signature.parameters.items() if name not in groups]
        extra: list[inspect.Parameter] = []
        members: dict[str, list[str]] = {}
        for arg, cls in groups.items():
            members[arg] = [f.name for f in fields(cls)]
            extra += [_parameter(f) for f in fields(cls)]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            for arg, cls in groups.items():
                values = {name: kwargs.pop(name) for name in members[arg]}
                kwargs[arg] = cls(**{k: (bool(v) if isinstance(v, BoolValue) else v) for k, v in values.items()})
            return func(**kwargs)

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def defaults_of(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def check_positive(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"--{option} must be at least 1")
