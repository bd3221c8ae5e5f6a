"""What an evaluation run is asked to do, as one frozen dataclass: each field's default and help live here once,
and `swiftcli eval` derives its options from them (cli.options.with_options).

Checks that need no model (values in range, files that exist, a writable output folder, lm-eval tasks) run in
`check_before_load`, so a mistake costs seconds rather than an engine start and a whole evaluation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swiftcli.config.sampling import merge_generation
from swiftcli.config.spec import GenerationConfig, setting
from swiftcli.errors import InputError, UsageError
from swiftcli.eval.datasets import KINDS, EvalDataset
from swiftcli.eval.evaluate import LOGLIKELIHOOD, MC_METHODS, Plan, load_datasets
from swiftcli.eval.harness import check_tasks, parse_tasks
from swiftcli.eval.metrics import ZH_TOKENIZERS
from swiftcli.eval.report import check_output_dir

EVAL_PANEL = "Evaluation"
# Reproducible scores: greedy, and room for a worked math answer.
EVAL_SAMPLING: dict[str, Any] = {"temperature": 0.0, "do_sample": False, "max_new_tokens": 512}


@dataclass(frozen=True)
class EvalSettings:
    """One evaluation's datasets, scoring and output; model, engine and sampling options are separate groups."""

    datasets: list[str] | None = setting(None, "A .jsonl, .json or .csv file (repeatable).", panel=EVAL_PANEL,
                                         name="eval_dataset")
    kind: str | None = setting(None, "Task kind; default: from the columns.", panel=EVAL_PANEL, name="eval_type",
                               choices=KINDS)
    few_shot: int = setting(0, "Examples per prompt, drawn from the same file (not scored).", panel=EVAL_PANEL,
                            name="eval_few_shot")
    limit: int | None = setting(None, "Score at most N rows per dataset.", panel=EVAL_PANEL, name="eval_limit")
    output_dir: Path | None = setting(None, "Where samples.jsonl and summary.json go; default a new "
                                      "folder in eval_outputs.", panel=EVAL_PANEL, name="eval_output_dir")
    served_model: str | None = setting(None, "Model name at --api-url; default the first it lists.",
                                       panel=EVAL_PANEL, name="eval_model")
    concurrency: int = setting(8, "Requests in flight at once with --api-url.", panel=EVAL_PANEL,
                               name="eval_concurrency")
    zh_tokenizer: str = setting("char", "How ROUGE-L splits Chinese.", panel=EVAL_PANEL, name="eval_zh_tokenizer",
                                choices=ZH_TOKENIZERS)
    mc_method: str = setting(LOGLIKELIHOOD, "Multiple choice: loglikelihood of each option (lm-eval's acc and "
                             "acc_norm) or generate (the option letter in the answer).", panel=EVAL_PANEL,
                             name="eval_mc_method", choices=MC_METHODS)
    lm_eval_tasks: str | None = setting(None, "lm-evaluation-harness tasks (comma-separated), run against the "
                                        "model behind a local server.", panel=EVAL_PANEL)
    lm_eval_include_path: Path | None = setting(None, "A directory of lm-eval task YAMLs; their relative data "
                                                "files are read from it.", panel=EVAL_PANEL)

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise UsageError(f"--eval-type must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.mc_method not in MC_METHODS:
            raise UsageError(f"--eval-mc-method must be loglikelihood or generate, not {self.mc_method!r}")
        if self.zh_tokenizer not in ZH_TOKENIZERS:
            raise UsageError(f"--eval-zh-tokenizer must be char or jieba, not {self.zh_tokenizer!r}")
        if self.few_shot < 0:
            raise UsageError("--eval-few-shot must be 0 or more")
        if self.limit is not None and self.limit < 1:
            raise UsageError("--eval-limit must be at least 1")
        if self.concurrency < 1:
            raise UsageError("--eval-concurrency must be at least 1")
        if self.lm_eval_include_path is not None and not self.lm_eval_tasks:
            raise UsageError("--lm-eval-include-path needs --lm-eval-tasks")

    @property
    def tasks(self) -> list[str]:
        """The lm-eval task names; [] without --lm-eval-tasks."""
        return parse_tasks(self.lm_eval_tasks) if self.lm_eval_tasks else []

    def plan(self, datasets: Sequence[EvalDataset]) -> Plan:
        """How these datasets are answered and scored under these settings."""
        return Plan(tuple(datasets), self.mc_method, self.zh_tokenizer)

    def recorded(self, seed: int, api_url: str | None) -> dict[str, Any]:
        """The settings as summary.json records them (the API key never)."""
        return {"eval_type": self.kind, "few_shot": self.few_shot, "limit": self.limit, "seed": seed,
                "zh_tokenizer": self.zh_tokenizer, "eval_url": api_url, "concurrency": self.concurrency,
                "mc_method": self.mc_method, "lm_eval_tasks": self.tasks or None}


def eval_generation(base: GenerationConfig, given: dict[str, Any]) -> GenerationConfig:
    """An evaluation's sampling: greedy with room for a worked answer over `base` (the model's own defaults),
    then what the user typed. Every evaluation path (one model, a sweep, a server) takes its sampling here."""
    return merge_generation(base, given, **EVAL_SAMPLING)


def check_before_load(settings: EvalSettings, output_dir: Path, seed: int = 0, *, sweep: bool = False
                      ) -> list[EvalDataset]:
    """Everything that can be checked without a model: something to evaluate, the dataset files (read whole),
    lm-eval's tasks, and a writable output folder. Returns the datasets."""
    if not settings.datasets and not settings.lm_eval_tasks:
        raise UsageError("give at least one --eval-dataset FILE or --lm-eval-tasks", "see `swiftcli eval --help`")
    if not sweep:
        check_output_dir(output_dir)
    check_writable(output_dir)
    datasets = load_datasets(settings.datasets or [], settings.kind, settings.few_shot, settings.limit,
                             seed) if settings.datasets else []
    if settings.lm_eval_tasks:
        check_tasks(settings.tasks, settings.lm_eval_include_path)
    return datasets


def check_writable(path: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any work (not after the evaluation).

    Tried rather than judged from permission bits (which say nothing for root or on a read-only mount); the
    folders it creates for the try are removed again."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise InputError(f"--eval-output-dir {path} cannot be written: {exc.strerror or exc}",
                         "choose a folder you can write to") from None
    finally:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
