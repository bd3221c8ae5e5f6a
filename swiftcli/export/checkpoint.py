"""What every export writes besides the weights: tokenizer and chat template, a valid generation_config.json,
and ms-swift's args file rewritten for the new checkpoint, plus the size estimates for the disk-space check."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swiftcli.hub.resolve import ARGS_FILES, read_json

# Sampling-only flags that transformers refuses beside do_sample=false (ms-swift checkpoints often carry them).
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
WEIGHT_GLOBS = ("*.safetensors", "*.bin")
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


def weights_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for pattern in WEIGHT_GLOBS for p in Path(model_dir).glob(pattern))


def parameter_estimate(model_dir: Path) -> int:
    """Parameters, estimated from the weight files' size and the dtype config.json says they are stored in."""
    config_path = Path(model_dir) / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    stored = config.get("torch_dtype") or config.get("dtype")
    return weights_bytes(model_dir) // DTYPE_BYTES.get(stored if isinstance(stored, str) else "bfloat16", 2)


def fingerprint(paths: list[Path]) -> str:
    """Cheap identity of some inputs (names, sizes, mtimes): a changed adapter invalidates an earlier export."""
    digest = hashlib.sha256()
    for folder in paths:
        for path in sorted(Path(folder).glob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def tokenizer_source(ckpt_dir: Path | None, base_dir: Path) -> Path:
    """The checkpoint's tokenizer when it saved one (it may have added tokens), else the base model's."""
    if ckpt_dir is not None and any((ckpt_dir / name).is_file() for name in TOKENIZER_FILES):
        return ckpt_dir
    return base_dir


def save_tokenizer(source: Path, out_dir: Path, trust_remote_code: bool = False,
                   chat_template: str | None = None) -> None:
    """Save the tokenizer; with `chat_template`, that one (the prompt format swiftcli used) replaces its own."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
        tokenizer.save_pretrained(out_dir)
        return
    tokenizer.save_pretrained(out_dir)
    for name in CHAT_TEMPLATE_FILES:
        if (source / name).is_file() and not (out_dir / name).exists():
            shutil.copy2(source / name, out_dir / name)


def repaired_generation_config(data: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A generation config transformers accepts: as is, with sampling-only flags dropped, or none at all.

    Returns (config or None, a warning to show or None).
    """
    from transformers import GenerationConfig

    def valid(values: dict[str, Any]) -> bool:
        try:
            GenerationConfig(**values).validate(strict=True)
        except (ValueError, TypeError):
            return False
        return True

    if valid(data):
        return data, None
    if not data.get("do_sample"):
        dropped = [k for k in SAMPLING_ONLY if data.get(k) is not None]
        repaired = {k: v for k, v in data.items() if k not in SAMPLING_ONLY}
        if valid(repaired):
            return repaired, (f"generation_config.json was invalid (do_sample is false but it sets "
                              f"{', '.join(dropped)}): wrote it without those")
    return None, "generation_config.json was invalid and could not be repaired: left it out"


def write_generation_config(sources: list[Path], out_dir: Path, warn: Callable[[str], None]) -> None:
    """Copy the first generation_config.json found in `sources`, repaired if needed; remove an invalid one."""
    target = out_dir / "generation_config.json"
    for folder in sources:
        path = Path(folder) / "generation_config.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            warn(f"{path} is not valid JSON: left it out")
            data = None
        config, message = repaired_generation_config(data) if isinstance(data, dict) else (None, None)
        if message:
            warn(message)
        if config is None:
            target.unlink(missing_ok=True)
        else:
            target.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return


def find_args_file(ckpt_dir: Path | None) -> Path | None:
    """The args.json / sft_args.json that describes a checkpoint (in it or its parent)."""
    if ckpt_dir is None:
        return None
    for folder in (ckpt_dir, ckpt_dir.parent):
        for name in ARGS_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def write_args(
    ckpt_dir: Path | None, out_dir: Path, final_dir: Path, updates: dict[str, Any], default_name: str = "args.json"
) -> Path:
    """ms-swift's args file, rewritten so that the output reads as a full checkpoint of its own."""
    source = find_args_file(ckpt_dir)
    args: dict[str, Any] = read_json(source) if source else {}
    name = source.name if source else default_name
    args.update(updates)
    for key in ("sft_type", "train_type"):
        if key in args or key == "sft_type":
            args[key] = "full"
    for key in ("model_id_or_path", "model"):
        if key in args or key == "model_id_or_path":
            args[key] = str(final_dir)
    for key in ("ckpt_dir", "adapters", "resume_from_checkpoint"):
        args.pop(key, None)
    path = out_dir / name
    path.write_text(json.dumps(args, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
