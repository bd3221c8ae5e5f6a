"""argv before Click parses it, so that ms-swift's command lines and a newcomer's habits work:

- `-v/--verbose`, `--debug`, `-q/--quiet` are the root's options, and may be typed after the sub-command too: they
  move to the front (`swiftcli infer --query x -v` is `swiftcli -v infer --query x`);
- options that repeat take their values space-separated, as ms-swift's do (`--val_dataset a.jsonl b.jsonl` is
  `--val_dataset a.jsonl --val_dataset b.jsonl`); `--query` takes exactly one value, so that an unquoted
  question is refused instead of becoming one question per word;
- other spellings map to the option's one name, per command (`--dataset` is infer's `--val-dataset` but export's
  own `--dataset`), and ms-swift options with no equivalent here are refused with the closest one;
- `--json` is `--output json` on commands that print results;
- `--install-completion SHELL` installs that shell's script (Typer's flag alone detects the running shell).

Click's `token_normalize_func` (options.normalize_token) turns snake_case into kebab-case after this.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer._click.exceptions import ClickException, UsageError  # Typer vendors Click; its exceptions are these

from swiftcli.cli.options import ALIASES, normalize_token

__all__ = ["ClickException", "UsageError", "expand_multi_values", "prepare", "style", "style_metavars"]

GLOBAL_FLAGS = {"-v": "--verbose", "--verbose": "--verbose", "--debug": "--debug", "-q": "--quiet",
                "--quiet": "--quiet"}
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
# Options that take one value even though they may be repeated: a space after them ends the value.
SINGLE_VALUE = {"--query"}

# ms-swift 3.x/4.x names of options that exist here under another name (kebab-case, without dashes).
SWIFT_ALIASES: dict[str, str] = {
    "adapters": "ckpt-dir",
    "max-length": "max-model-len",
    "vllm-max-model-len": "max-model-len",
    "vllm-gpu-memory-utilization": "gpu-memory-utilization",
    "vllm-tensor-parallel-size": "tensor-parallel-size",
    "vllm-pipeline-parallel-size": "pipeline-parallel-size",
    "vllm-enforce-eager": "enforce-eager",
    "vllm-max-num-seqs": "max-num-seqs",
    "vllm-max-lora-rank": "max-lora-rank",
    "vllm-engine-kwargs": "engine-kwargs",
}
# ms-swift options whose only value here is what swiftcli always does: accepted with that value, refused with
# the other (name -> (the value accepted, why the other is refused)).
SWIFT_SETTLED: dict[str, tuple[str, str]] = {
    "load-args": ("true", "swiftcli always reads the checkpoint's args.json for the model and template"),
    "stream": ("true", "the chat always streams; infer prints each answer as soon as it is complete"),
}
# Common ms-swift options with no equivalent: refused with the closest swiftcli option.
SWIFT_REFUSED: dict[str, str] = {
    "max-batch-size": "use --max-num-seqs (the engine's batch), or --max-concurrency with --api-url",
    "model-kwargs": "use --engine-kwargs '{...}' for vLLM engine arguments",
    "num-beams": "beam search is not supported; use greedy decoding (the default) or --temperature",
    "attn-impl": "the engine picks its attention kernels; there is nothing to set",
    "device-map": "vLLM places the model; use --tensor-parallel-size N for several devices",
    "write-batch-size": "results are written row by row as they finish; there is nothing to set",
    "truncation-strategy": "prompts longer than --max-model-len are refused, never cut",
    "logprobs": "ask for logprobs per request through `swiftcli deploy`'s API",
    "top-logprobs": "ask for top_logprobs per request through `swiftcli deploy`'s API",
    "infer-batch-size": "use --max-num-seqs (the engine's batch)",
    "lora-modules": "serve adapters with `swiftcli deploy --lora-modules NAME=PATH`",
    "eval-backend": "swiftcli eval scores on its own; --lm-eval-tasks runs lm-evaluation-harness",
    "use-chat-template": "chat models always use their template; --template-type picks another",
    "val-dataset-shuffle": "use --val-dataset-sample N (a seeded sample) and --dataset-seed",
}


class _Options:
    """One command's option table, by normalized `--name`."""

    def __init__(self, command: Any) -> None:
        self.names: set[str] = set()
        self.repeat: set[str] = set()
        self.valued: set[str] = set()
        for param in getattr(command, "params", []):
            if getattr(param, "param_type_name", "") != "option":
                continue
            names = {_normal(opt) for opt in (*param.opts, *param.secondary_opts)}
            self.names |= names
            if getattr(param, "is_flag", False):
                continue
            self.valued |= names
            if getattr(param, "multiple", False):
                self.repeat |= names - SINGLE_VALUE
        self.subcommands: dict[str, Any] = getattr(command, "commands", {})
        self.path = ""  # the sub-command's words after the program's name, for the hint


def _refuse(message: str, table: _Options, ctx: Any) -> UsageError:
    """A usage error whose hint names the sub-command's help (the root's context is all there is yet)."""
    error = UsageError(message, ctx)
    error.help_path = " ".join(filter(None, [getattr(ctx, "info_name", None) or "swiftcli", table.path]))  # type: ignore[attr-defined]
    return error


def _normal(token: str) -> str:
    return "--" + normalize_token(token[2:]) if token.startswith("--") else token


def _canonical(name: str, table: _Options, ctx: Any) -> str:
    """The option's one name for this command: its own names first, then aliases, then ms-swift's names."""
    name = _normal(name)
    if not name.startswith("--") or name in table.names:
        return name
    bare = name[2:]
    for target in (ALIASES.get(bare, ()), [SWIFT_ALIASES[bare]] if bare in SWIFT_ALIASES else []):
        for candidate in target:
            if f"--{candidate}" in table.names:
                return f"--{candidate}"
    if bare in SWIFT_REFUSED:
        raise _refuse(f"ms-swift's --{bare} is not supported here: {SWIFT_REFUSED[bare]}", table, ctx)
    return name


def prepare(args: list[str], root: Any, ctx: Any = None) -> list[str]:
    """Rewrite argv as the module docstring says; raises UsageError for a refused ms-swift option."""
    if len(args) >= 2 and args[0] == "--install-completion" and args[1] in SHELLS:
        install_completion(args[1], ctx)
    front: list[str] = []
    out: list[str] = []
    table = _Options(root)
    nested = False
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":
            out += args[i - 1:]
            break
        if not _is_option(token):
            out.append(token)
            sub = table.subcommands.get(normalize_token(token))
            if sub is not None:
                path = f"{table.path} {normalize_token(token)}".strip()
                table, nested = _Options(sub), True
                table.path = path
            continue
        name, eq, value = token.partition("=")
        name = _canonical(name, table, ctx)
        if nested and name in GLOBAL_FLAGS and name not in table.names:
            front.append(GLOBAL_FLAGS[name])  # the root's switch, typed after the command
            continue
        tokens, i = _option_tokens(name, value if eq else None, args, i, table, ctx)
        out += tokens
    return front + out


def _option_tokens(name: str, value: str | None, args: list[str], i: int, table: _Options, ctx: Any
                   ) -> tuple[list[str], int]:
    """The tokens one option becomes, and where argv continues after its values."""
    settled = SWIFT_SETTLED.get(name[2:])
    if settled is not None and name not in table.names:
        given = value if value is not None else (args[i] if i < len(args) else "")
        i += 0 if value is not None else 1
        if given.strip().lower() != settled[0] and not (name == "--stream" and "--output" in table.names):
            raise _refuse(f"--{name[2:]} {given}: {settled[1]}", table, ctx)
        return [], i
    if name == "--json" and "--json" not in table.names and "--output" in table.names:
        return ["--output", "json"], i
    if value is not None:
        return [f"{name}={value}"], i
    if name in table.repeat:
        tokens = [name, *args[i:i + 1]]
        i += 1
        while i < len(args) and not _is_option(args[i]) and normalize_token(args[i]) not in table.subcommands:
            tokens += [name, args[i]]
            i += 1
        return tokens, i
    if name in table.valued:
        return [name, *args[i:i + 1]], i + 1
    return [name], i


def expand_multi_values(args: list[str], command: Any) -> list[str]:
    """`--opt a b` -> `--opt a --opt b` for options that repeat; the rest of argv as it is."""
    return prepare(args, command)


_NUMBER = re.compile(r"^-\d")


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NUMBER.match(token)


def install_completion(shell: str, ctx: Any) -> None:
    """`--install-completion zsh`: that shell's script, whatever shell runs the command."""
    from typer._completion_shared import install

    from swiftcli.cli.output import stderr

    prog = (ctx.info_name if ctx is not None else None) or "swiftcli"
    installed, path = install(shell=shell, prog_name=prog)
    stderr.print(f"{installed} completion installed in {path}; it takes effect in a new terminal.",
                 highlight=False, markup=False)
    raise typer.Exit(0)


# One metavar style in help: an upper-case word for a value, nothing for a switch.
_TYPE_WORDS = {"text": "TEXT", "integer": "INTEGER", "float": "FLOAT", "path": "PATH", "boolean": "BOOL",
               "file": "FILE", "directory": "DIR"}


# Values whose name says more than their type.
_NAMED = {"api_url": "URL", "api_key": "KEY", "eval_url": "URL", "host": "ADDRESS", "prompt": "TEXT"}


def style_metavars(command: Any) -> None:
    """Give every option of `command` and its sub-commands a metavar in the one style (TEXT, INTEGER, FLOAT,
    PATH, FILE, DIR, BOOL, or a|b choices); switches (--help, --debug) show none. Options added later (--help,
    --install-completion) are styled as the command lists them."""
    list_params = command.get_params

    def get_params(ctx: Any) -> list[Any]:
        params = list_params(ctx)
        for param in params:
            style(param)
        return params

    command.get_params = get_params
    for sub in getattr(command, "commands", {}).values():
        style_metavars(sub)


def style(param: Any) -> None:
    if getattr(param, "param_type_name", "") == "argument":
        word = _type_word(param)
        param.display_type_rich = lambda ctx: word  # help's type column, as for options
        return
    if getattr(param, "param_type_name", "") != "option":
        return
    if param.name == "install_completion":
        param.help = "Install completion for the running shell, or for SHELL: --install-completion zsh."
    if getattr(param, "is_flag", False) or getattr(param, "is_bool_flag", False) or param.name in (
            "install_completion", "show_completion", "help"):
        param.metavar = ""
    elif not param.metavar or param.metavar.startswith("<"):
        param.metavar = _NAMED.get(param.name) or _type_word(param)


def _type_word(param: Any) -> str:
    import typing
    from pathlib import Path

    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    while typing.get_args(annotation):  # list[str] | None -> str
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is Path or isinstance(annotation, type) and issubclass(annotation, Path):
        if getattr(param, "dir_okay", True) is False:
            return "FILE"
        if getattr(param, "file_okay", True) is False:
            return "DIR"
        return "PATH"
    names = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOL"}
    if isinstance(annotation, type):
        for kind, word in names.items():
            if issubclass(annotation, kind) and not (kind is int and issubclass(annotation, bool)):
                return "BOOL" if annotation.__name__ == "BoolValue" else word
    name = getattr(getattr(param, "type", None), "name", "") or ""
    return _TYPE_WORDS.get(name, "TEXT")
