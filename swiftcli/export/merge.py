"""Merge a peft LoRA adapter into its base model: a full checkpoint that vLLM serves without LoRA support.

Merging happens in float32 (so B @ A is added without rounding twice) and the result is saved in the model's
dtype. The output is written atomically (see `atomic`); `merged_checkpoint` is what `--merge_lora true` on
infer/deploy/app-ui/eval calls: merge once, then reuse.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swiftcli.config.spec import ModelSpec, normalize_dtype
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.errors import CheckpointError
from swiftcli.export import atomic
from swiftcli.export import checkpoint as files
from swiftcli.export import verify as checks
from swiftcli.export.chat_template import chat_template_for
from swiftcli.export.verify import VerificationError, VerifyReport
from swiftcli.hub.resolve import resolve_model
from swiftcli.registry.templates import get_template

# --verify defaults to on up to this many parameters: it loads the model twice in float32 (about 8 bytes per
# parameter at once), which is seconds for small models and minutes plus tens of GiB for large ones.
VERIFY_DEFAULT_MAX_PARAMS = 3_000_000_000

Message = Callable[[str], None]
logger = logging.getLogger("swiftcli.export")


@dataclass
class ExportResult:
    """Where the output is, whether an earlier complete one was reused, and what the checks found."""

    output_dir: Path
    reused: bool
    seconds: float
    verify: VerifyReport | None = None
    details: dict[str, Any] | None = None


def merged_dir_for(ckpt_dir: Path) -> Path:
    """ms-swift's naming: checkpoint-100 -> checkpoint-100-merged beside it."""
    return ckpt_dir.with_name(f"{ckpt_dir.name}-merged")


def resolve_adapter(ckpt_dir: str | Path, model_type: str | None = None,
                    model_id_or_path: str | None = None) -> ModelSpec:
    """The base model and adapter of a LoRA checkpoint; a clear error when it is not one."""
    spec = resolve_model(model_type, model_id_or_path, ckpt_dir)
    if not spec.adapters:
        raise CheckpointError(
            f"{spec.ckpt_dir or ckpt_dir} is not a LoRA checkpoint (it has no adapter_config.json): nothing to merge",
            "it already holds full weights: use it directly with --ckpt_dir, or drop --merge_lora",
        )
    if len(spec.adapters) > 1:
        raise CheckpointError("merging more than one adapter at once is not supported",
                              "merge them one at a time")
    return spec


def merge_lora(
    ckpt_dir: str | Path,
    output_dir: str | Path | None = None,
    *,
    model_type: str | None = None,
    model_id_or_path: str | None = None,
    dtype: str | None = None,
    force: bool = False,
    verify: bool | None = None,
    trust_remote_code: bool = False,
    on_message: Message | None = None,
) -> ExportResult:
    """Merge the LoRA adapter in `ckpt_dir` into its base and save a full checkpoint (default `<ckpt>-merged`).

    verify=None means on for models up to VERIFY_DEFAULT_MAX_PARAMS parameters. Raises CheckpointError,
    VerificationError or atomic.DiskSpaceError; on any error nothing is left at the output path.
    """
    say = on_message or (lambda _msg: None)
    started = time.perf_counter()
    spec = resolve_adapter(ckpt_dir, model_type, model_id_or_path)
    adapter = spec.adapters[0]
    target = Path(output_dir).expanduser().absolute() if output_dir else merged_dir_for(adapter)
    if target.resolve() in (adapter, spec.model_dir.resolve()):
        raise CheckpointError(f"the output {target} is the input itself", "choose another --output_dir")
    save_dtype = normalize_dtype(dtype) or spec.torch_dtype or "bfloat16"
    save_dtype = {"half": "float16", "float": "float32"}.get(save_dtype, save_dtype)
    params = files.parameter_estimate(spec.model_dir)
    if verify is None:
        verify = params <= VERIFY_DEFAULT_MAX_PARAMS
    source_id = files.fingerprint([adapter, spec.model_dir])
    marker = {"kind": "merge", "base": str(spec.model_dir), "adapter": str(adapter), "dtype": save_dtype,
              "source_fingerprint": source_id}

    def reuse(state: atomic.OutputState) -> bool:
        if state.marker.get("source_fingerprint") not in (None, source_id):
            say(f"The adapter or base model changed since {target} was merged: merging again")
            return False
        if state.marker.get("dtype") != save_dtype:
            say(f"{target} was merged as {state.marker.get('dtype') or 'an unrecorded dtype'}, not {save_dtype}: "
                "merging again")
            return False
        say(f"Reusing the complete merge in {target} (pass --force true to redo it)")
        return True

    report: list[VerifyReport] = []

    def build(temp: Path) -> None:
        atomic.check_free_space(target, params * files.DTYPE_BYTES.get(save_dtype, 2), "the merged model")
        say(f"Merging {adapter} into {spec.model_dir} (float32, saving as {save_dtype})")
        # peft may import gptqmodel, which prints a banner: stdout is for results.
        with contextlib.redirect_stdout(sys.stderr):
            result = _merge_into(spec, temp, target, save_dtype, verify, trust_remote_code, say)
        if result is not None:
            report.append(result)

    written = atomic.write_atomically(target, build, force=force, marker=marker, reuse=reuse, on_message=say)
    return ExportResult(target, not written, time.perf_counter() - started, report[0] if report else None,
                        {"dtype": save_dtype, "parameters": params})


def merged_checkpoint(ckpt_dir: str | Path, model_type: str | None = None, model_id_or_path: str | None = None,
                      on_message: Message | None = None) -> Path:
    """For `--merge_lora true`: merge the adapter (or reuse a finished merge) and return the merged directory.
    Progress goes to `on_message`, else to the swiftcli.export logger."""
    result = merge_lora(ckpt_dir, model_type=model_type, model_id_or_path=model_id_or_path, verify=False,
                        on_message=on_message or logger.info)
    return result.output_dir


def _merge_into(spec: ModelSpec, temp: Path, target: Path, save_dtype: str, verify: bool,
                trust_remote_code: bool, say: Message) -> VerifyReport | None:
    # lazy: keeps --help and start-up free of torch, transformers, peft, the hub clients
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, GenerationConfig

    # A vision-language model merges whole, its vision tower's adapter weights included.
    model_class = AutoModelForImageTextToText if spec.modalities else AutoModelForCausalLM
    adapter = spec.adapters[0]
    tokenizer_dir = files.tokenizer_source(adapter, spec.model_dir)
    base = model_class.from_pretrained(spec.model_dir, dtype=torch.float32, trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(base, str(adapter))
    model.eval()
    reference = prompts = stop_ids = None
    if verify:
        template = get_template(spec.template_type, load_tokenizer(spec, trust_remote_code), spec.default_system)
        prompts = checks.encode_prompts(template)
        stop_ids = template.stop_token_ids
        say("Sampling base + adapter for --verify")
        reference = checks.sample(model, prompts, stop_ids)
    merged = model.merge_and_unload()
    merged.to(getattr(torch, save_dtype))
    # The base's generation config may be one transformers refuses to save; the real one is written below.
    merged.generation_config = GenerationConfig.from_model_config(merged.config)
    merged.save_pretrained(temp)
    del merged, model, base
    gc.collect()
    # The prompt format swiftcli used goes with the weights, so other servers prompt the merge the same way.
    files.save_tokenizer(tokenizer_dir, temp, trust_remote_code, chat_template_for(spec, trust_remote_code))
    if spec.modalities:
        copy_processor_files(spec.model_dir, temp)
    files.write_generation_config([adapter, spec.model_dir], temp, lambda m: say(f"Warning: {m}"))
    files.write_args(adapter, temp, target, {
        "model_type": spec.model_type, "template_type": spec.template_type, "dtype": save_dtype,
        "merge_lora": True, "merged_from": {"base": str(spec.model_dir), "adapter": str(adapter)},
    }, default_name="sft_args.json")
    if reference is None:
        return None
    say("Checking the merged weights against base + adapter")
    reloaded = model_class.from_pretrained(temp, dtype=torch.float32, trust_remote_code=trust_remote_code)
    reloaded.eval()
    report = checks.compare(reference, reloaded)
    del reloaded
    gc.collect()
    say(f"Verify: {report.summary()}")
    if not report.ok:
        raise VerificationError(
            f"the merged model does not reproduce base + adapter: {report.summary()}",
            "check the adapter (peft version, target modules); --verify false keeps the merge anyway",
        )
    return report


PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")


def copy_processor_files(model_dir: Path, out: Path) -> None:
    """The image processor's configuration goes with a merged vision-language model."""
    for name in PROCESSOR_FILES:
        if (model_dir / name).is_file() and not (out / name).exists():
            shutil.copy2(model_dir / name, out / name)
