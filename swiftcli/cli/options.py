"""Command-line options derived from the config dataclasses: each field that carries `setting(...)` metadata is one
option, with the field's default and help. `with_options` expands the dataclasses into a command's signature and
hands the command filled instances, so commands never take 30 loose parameters.

Every option has one name, in kebab-case. The snake_case spelling (ms-swift's) and the old names in `ALIASES`
keep working: cli.argv maps each alias to the option of that name on the command typed (an alias may name
different options on different commands), and Click normalizes snake_case through `normalize_token`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import Annotated, Any

import typer

from swiftcli.cli.remote import DEFAULT_CONCURRENCY
from swiftcli.config.spec import GenerationConfig, GenerationOverrides
from swiftcli.errors import SwiftError

# Other spellings that keep working, in kebab-case: alias -> the options of that name (on some command).
ALIASES: dict[str, list[str]] = {}


class BoolValue(int):
    """Marks an option that takes true/false as a value, as ms-swift's do (`--merge_lora true`); help shows its
    default as true/false."""

    def __str__(self) -> str:
        return "true" if self else "false"

    __repr__ = __str__


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "on"):
        return True
    if text in ("false", "0", "no", "n", "off"):
        return False
    raise typer.BadParameter(f"expected true or false, got {value!r}")


def normalize_token(token: str) -> str:
    """`infer_backend` -> `infer-backend`."""
    return token.replace("_", "-")


def option_name(f: Field[Any]) -> str:
    return (f.metadata.get("name") or f.name).replace("_", "-")


# Values that shell completion offers, by option name (choices complete on their own).
_DTYPES = ("bf16", "fp16", "fp32", "auto", "bfloat16", "float16", "float32")


def _registered(kind: str) -> Callable[[], list[str]]:
    def names() -> list[str]:
        if kind == "model":
            from swiftcli.registry.models import names as model_names

            return list(model_names())
        from swiftcli.registry.templates import names as template_names

        return list(template_names())

    return names


VALUE_COMPLETIONS: dict[str, Callable[[], Any]] = {
    "model-type": _registered("model"),
    "template-type": _registered("template"),
    "dtype": lambda: _DTYPES,
}


def _completer(values: Callable[[], Any]) -> Callable[[str], list[str]]:
    def complete(incomplete: str) -> list[str]:
        return [v for v in values() if v.startswith(incomplete)]

    return complete


def _annotation(hint: Any) -> tuple[Any, dict[str, Any]]:
    """The type Typer sees, and extra Option arguments (booleans take a value, as in ms-swift)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    inner = next((a for a in args if a is not type(None)), hint) if optional else hint
    if inner is bool:
        return (BoolValue | None if optional else BoolValue), {"parser": parse_bool, "metavar": "BOOL"}
    if typing.get_origin(inner) is dict:  # JSON on the command line; the dataclass parses it
        return str | None, {}
    return hint, {}


def _parameter(f: Field[Any], hint: Any, default: Any) -> inspect.Parameter:
    meta = f.metadata
    annotation, extra = _annotation(hint)
    name = option_name(f)
    for alias in meta.get("aliases", ()):
        targets = ALIASES.setdefault(alias.replace("_", "-"), [])
        if name not in targets:
            targets.append(name)
    kwargs: dict[str, Any] = {"help": meta["help"], "rich_help_panel": meta.get("panel") or None,
                              "show_default": default not in (None, [], {}, ()), **extra}
    for key in ("envvar", "metavar"):
        if meta.get(key):
            kwargs[key] = meta[key]
    if meta.get("envvar"):
        kwargs["show_envvar"] = True
    complete = VALUE_COMPLETIONS.get(name)
    if meta.get("choices"):
        kwargs["metavar"] = "|".join(meta["choices"])
        kwargs["callback"] = _choice_callback(name, meta["choices"])
        complete = lambda choices=meta["choices"]: choices  # noqa: E731
    if complete is not None:
        kwargs["autocompletion"] = _completer(complete)
    option = typer.Option(f"--{name}", *meta.get("short", ()), **kwargs)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, option])


def _choice_callback(name: str, choices: tuple[str, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def cli_fields(cls: type) -> list[tuple[Field[Any], Any, Any]]:
    """(field, type, CLI default) for each command-line field of a config dataclass."""
    hints = typing.get_type_hints(cls)  # resolved in the dataclass's own module
    out = []
    for f in fields(cls):
        if not f.metadata.get("help") or f.metadata.get("cli") is False:
            continue
        default = f.default if f.default is not MISSING else None
        if f.default_factory is not MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
            default = default or None  # an empty list or dict: the option was not given
        if isinstance(default, bool):
            default = BoolValue(default)
        out.append((f, hints[f.name], default))
    return out


def _build(cls: type, values: dict[str, Any]) -> Any:
    """The group's instance; a value the dataclass refuses (temperature -1) is a usage error, before any load."""
    values = {k: (bool(v) if isinstance(v, BoolValue) else v) for k, v in values.items()}
    if cls is GenerationOverrides:
        values = {k: (v or None) if isinstance(v, list) else v for k, v in values.items()}
        overrides = cls(**values)
        GenerationConfig().copy(**overrides.given())
        return overrides
    return cls(**values)


def with_options(**groups: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Expand config dataclasses into the command's CLI signature: `@with_options(model=ModelOptions)` gives the
    command a `model: ModelOptions` argument filled from --model-type, --ckpt-dir, ...; a bad value in a group
    (temperature -1) is a usage error before anything loads."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
        own = [p.replace(annotation=hints.get(name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for name, p in signature.parameters.items() if name not in groups]
        members: dict[str, list[str]] = {}
        extra: list[inspect.Parameter] = []
        for arg, cls in groups.items():
            group = cli_fields(cls)
            members[arg] = [f.name for f, _, _ in group]
            extra += [_parameter(f, hint, default) for f, hint, default in group]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            try:
                for arg, cls in groups.items():
                    kwargs[arg] = _build(cls, {name: kwargs.pop(name) for name in members[arg]})
            except SwiftError as exc:
                from swiftcli.cli.output import report

                raise typer.Exit(report(exc)) from None
            return func(**kwargs)

        params = own + extra
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


# The question as an argument, as `llm` and `ollama run` take it: `swiftcli infer "question"`. Several words
# are taken so that an unquoted question can be refused with the quoted command (see infer.questions).
PromptArgument = Annotated[list[str] | None, typer.Argument(
    metavar="[PROMPT]", show_default=False, help="The question, quoted; with none, stdin or the chat.")]

def questions(prompt: list[str] | None, query: list[str] | None = None, command: str = "infer") -> list[str]:
    """The questions asked: a quoted PROMPT or --query (repeatable). Words left unquoted are refused with the
    quoted command, rather than answered one word at a time."""
    from swiftcli.errors import UsageError

    words, queries = list(prompt or []), list(query or [])
    if queries and words:
        quoted = " ".join([queries[-1], *words])
        raise UsageError(f"--query takes one question, and {' '.join(words)!r} was left over",
                         f'quote the question: --query "{quoted}" (repeat --query for several questions)')
    if len(words) > 1:
        raise UsageError(f"{len(words)} words were given as separate arguments",
                         f'quote the question: swiftcli {command} "{" ".join(words)}"')
    return words or queries


# Requests (or answers) at once against a server; one default for every command that sends several.
MaxConcurrencyOption = Annotated[int | None, typer.Option(
    "--max-concurrency", rich_help_panel="Server", show_default=False,
    help=f"Requests in flight at once with --api-url; default {DEFAULT_CONCURRENCY}.")]


def check_positive(value: int | None, option: str) -> None:
    from swiftcli.errors import UsageError

    if value is not None and value < 1:
        raise UsageError(f"--{option.replace('_', '-')} must be at least 1")
