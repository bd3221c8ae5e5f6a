"""Which rows a dataset run answers: dataset files (optionally a seeded sample), or the validation split that a
fine-tuning checkpoint's args.json / sft_args.json describes (ms-swift's `--load_dataset_config true`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from swiftcli.data.records import Record
from swiftcli.data.runs import (
    DEFAULT_DATASET_SEED,
    Row,
    checkpoint_datasets,
    load_rows,
    sample_rows,
    split_validation,
)
from swiftcli.errors import InputError, UsageError


@dataclass
class DatasetSelection:
    """Dataset files, or `load_config` to take them from `ckpt_dir`; `sample` rows (-1: all), `seed` (None: 42,
    or the checkpoint's)."""

    files: list[str] = field(default_factory=list)
    sample: int = -1
    load_config: bool = False
    seed: int | None = None
    skip_bad_rows: bool = False


def select_rows(selection: DatasetSelection, ckpt_dir: str | None = None,
                on_skip: Callable[[Record, InputError], None] | None = None) -> list[Row]:
    """Read and check every selected row (before any engine starts: a bad file fails in a second)."""
    from swiftcli.hub.resolve import find_ckpt_args

    if selection.sample < -1:
        raise UsageError("--val_dataset_sample must be -1 (all rows) or a count")
    seed = selection.seed
    if not (selection.load_config and not selection.files):
        return load_rows(selection.files, selection.sample, DEFAULT_DATASET_SEED if seed is None else seed,
                         selection.skip_bad_rows, on_skip)
    if not ckpt_dir:
        raise UsageError("--load_dataset_config true needs --ckpt_dir (a checkpoint with sft_args.json)")
    ckpt = Path(ckpt_dir)
    args = find_ckpt_args(ckpt)
    if not args:
        raise UsageError(f"no sft_args.json or args.json in {ckpt} or its parent", "pass --val_dataset FILE instead")
    files, whole, ratio, ckpt_seed = checkpoint_datasets(args, ckpt)
    seed = ckpt_seed if seed is None else seed
    rows = load_rows(files, -1, seed, selection.skip_bad_rows, on_skip)
    if not whole:
        rows = split_validation(rows, ratio, seed)
    return sample_rows(rows, selection.sample, seed)
