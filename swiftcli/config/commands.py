"""The settings of the commands themselves (where results go, the dataset run, where a server listens), as frozen
dataclasses: each field holds its option's one default and help, as `spec.setting` does for the engine and
sampling, and the CLI derives the options from them (cli.options.with_options).

`option` adds what only a command line needs to `setting`'s metadata: an environment variable, a metavar, a
short name. Checks that need no model run in `__post_init__`, so a bad value fails before anything loads.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftcli.errors import UsageError

OUTPUT = "Output"
DATASET = "Dataset"
SERVER = "Server"


def option(default: Any = None, help: str = "", *aliases: str, panel: str = "", choices: tuple[str, ...] = (),
           name: str | None = None, envvar: str | None = None, metavar: str | None = None,
           short: tuple[str, ...] = (), default_factory: Any = None) -> Any:
    """A command setting: `setting`'s metadata plus `envvar` (read when the option is not given), `metavar` and
    `short` names (`-o`)."""
    metadata = {"help": help, "aliases": aliases, "panel": panel, "choices": choices, "name": name, "cli": True,
                "envvar": envvar, "metavar": metavar, "short": short}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OutputOptions:
    """How results print: plain text, or JSON for scripts."""

    output: str = option("text", "text, or json for scripts (JSON lines, or one JSON document).", panel=OUTPUT,
                         choices=("text", "json"), short=("-o",))

    @property
    def json(self) -> bool:
        return self.output == "json"


@dataclass(frozen=True)
class QueryOptions:
    """`infer`'s questions, besides the positional PROMPT and stdin."""

    query: list[str] | None = option(None, "A question (repeatable: one --query per question; quote each).")
    images: list[str] | None = option(
        None, "Images for the questions: paths, http(s) URLs or data URIs (repeatable, or ms-swift's --query Q "
        "--images a.jpg b.png); image tags in a question mark where each goes.")
    videos: list[str] | None = option(
        None, "Videos for the questions (models that take video): paths, http(s) URLs or data URIs (repeatable); "
        "video tags in a question mark where each goes.")
    structured_output: str | None = option(
        None, 'Constrain answers: {"choice": [...]}, {"regex": "..."}, {"json": schema}, {"grammar": "..."}.',
        panel="Generation", metavar="JSON")


@dataclass(frozen=True)
class DatasetOptions:
    """`infer`'s dataset mode: which rows, and the result file that a rerun resumes."""

    val_dataset: list[str] | None = option(None, "Dataset file: .jsonl, .json or .csv (repeatable).", "dataset",
                                           panel=DATASET, metavar="FILE")
    val_dataset_sample: int = option(-1, "Answer a seeded random sample of N rows (-1: all).", panel=DATASET)
    result_file: str | None = option(None, "Write result rows here; rerun with the same file to resume.",
                                     "result_path", panel=DATASET, metavar="FILE")
    result_dir: str | None = option(None, "Write results to DIR/TIME.jsonl. Default, with neither: stdout.",
                                    panel=DATASET, metavar="DIR")
    load_dataset_config: bool = option(False, "Take the dataset and its validation split from --ckpt-dir's "
                                       "sft_args.json/args.json.", "load_data_args", panel=DATASET)
    dataset_seed: int | None = option(None, "Seed of sampling and splitting; default 42 (or the checkpoint's).",
                                      panel=DATASET)
    skip_bad_rows: bool = option(False, "Skip rows without a query (with a warning) instead of stopping.",
                                 panel=DATASET)
    overwrite: bool = option(False, "Start --result-file over instead of resuming it (resuming needs the same "
                             "run settings).", panel=DATASET)

    def __post_init__(self) -> None:
        # The rows themselves are checked by data.selection, before any model loads.
        for path in self.val_dataset or []:
            if not Path(path).expanduser().exists():
                raise UsageError(f"--val-dataset {path} does not exist", "check the path (and the current folder)")
        if self.result_file and self.result_dir:
            raise UsageError("give --result-file or --result-dir, not both")
        if self.result_file:
            check_writable(Path(self.result_file).expanduser(), "--result-file", file=True)
        if self.result_dir:
            check_writable(Path(self.result_dir).expanduser(), "--result-dir", file=False)

    @property
    def active(self) -> bool:
        return bool(self.val_dataset or self.load_dataset_config)


API_DIALECTS = ("chat", "responses", "messages")


@dataclass(frozen=True)
class ApiDialectOptions:
    """Which API a server given with --api_url is asked through."""

    api_dialect: str = option(
        "chat", "The API --api-url speaks: chat (OpenAI Chat Completions), responses (OpenAI Responses) or "
        "messages (Anthropic Messages).", panel=SERVER, choices=API_DIALECTS, envvar="SWIFTCLI_API_DIALECT")


WATCH_EVAL = "Scoring checkpoints (--watch)"
MC_METHODS = ("loglikelihood", "generate")


@dataclass(frozen=True)
class WatchEvalConfig:
    """`deploy --watch DIR --eval_dataset FILE`: each checkpoint scored in the background as `eval` scores it.

    The names are `eval`'s options of the same meaning (swiftcli.eval.settings.EvalSettings)."""

    eval_dataset: list[str] | None = option(
        None, "With --watch: score each checkpoint on this .jsonl/.json/.csv file (repeatable) in the background, "
        "below users' requests; `best` serves the top scorer.", panel=WATCH_EVAL, metavar="FILE")
    eval_limit: int | None = option(None, "Score at most N rows per dataset.", panel=WATCH_EVAL)
    eval_mc_method: str = option("loglikelihood", "Multiple choice: loglikelihood of each option or generate "
                                 "(the option letter in the answer).", panel=WATCH_EVAL, choices=MC_METHODS)
    eval_output_dir: str | None = option(None, "Where each checkpoint's run goes (eval's sweep layout; a "
                                         "restart reads them back); default DIR/eval.", panel=WATCH_EVAL,
                                         metavar="DIR")

    def __post_init__(self) -> None:
        if self.eval_limit is not None and self.eval_limit < 1:
            raise UsageError("--eval-limit must be at least 1")
        if self.eval_mc_method not in MC_METHODS:
            raise UsageError(f"--eval-mc-method must be loglikelihood or generate, not {self.eval_mc_method!r}")
        given = [name for name, value in (("--eval-limit", self.eval_limit), ("--eval-output-dir",
                 self.eval_output_dir)) if value is not None]
        if given and not self.eval_dataset:
            raise UsageError(f"{given[0]} needs --eval-dataset", "or drop it")
        if self.eval_mc_method != "loglikelihood" and not self.eval_dataset:
            raise UsageError("--eval-mc-method needs --eval-dataset", "or drop it")

    @property
    def active(self) -> bool:
        return bool(self.eval_dataset)


@dataclass(frozen=True)
class ListenConfig:
    """Where a server listens. `deploy` serves the API on port 8000; `app-ui` (PageListenConfig) on 7860."""

    host: str = option("127.0.0.1", "Address to bind; 0.0.0.0 exposes the server to the network.", panel=SERVER)
    port: int = option(8000, "Port to listen on.", panel=SERVER)
    ssl_keyfile: str | None = option(None, "TLS key file.", panel=SERVER, metavar="FILE")
    ssl_certfile: str | None = option(None, "TLS certificate file.", panel=SERVER, metavar="FILE")
    shutdown_timeout: float = option(30.0, "Seconds to let requests in flight finish on SIGTERM.", panel=SERVER)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise UsageError(f"--port must be in 1..65535, not {self.port}")
        if bool(self.ssl_keyfile) != bool(self.ssl_certfile):
            raise UsageError("TLS needs both --ssl-keyfile and --ssl-certfile")
        for name, path in (("--ssl-keyfile", self.ssl_keyfile), ("--ssl-certfile", self.ssl_certfile)):
            if path and not os.path.isfile(path):
                raise UsageError(f"{name} {path} does not exist")
        if self.shutdown_timeout < 0:
            raise UsageError(f"--shutdown-timeout must be >= 0, not {self.shutdown_timeout:g}")


def check_writable(path: Path, option: str, *, file: bool) -> None:
    """Fail before any model loads when `path` (a file, or a folder with `file=False`) cannot be written. The
    folder is created now (it would be at the first result anyway) and a file is tried in it: permission bits
    alone say nothing to root, or on a read-only or virtual file system."""

    if path.is_dir() if file else path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a {'folder' if file else 'file'}",
                         f"give a {'file' if file else 'folder'} name")
    folder = path.parent if file else path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError) or isinstance(exc, NotADirectoryError):
            reason = "a file is in the way"
        raise UsageError(f"{option} {path}: cannot write in {folder} ({reason})",
                         "choose a folder you can write to") from None
