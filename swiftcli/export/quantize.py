"""Quantize a model to 4 or 8 bits with gptqmodel (GPTQ anywhere, AWQ on CUDA) into a checkpoint vLLM loads.

gptqmodel is the maintained successor of auto-gptq (which no longer imports beside transformers 5). The group
size is chosen so that it divides every linear layer's input width: vLLM refuses a GPTQ checkpoint whose groups
straddle a row (SmolLM2-135M's hidden size 576 is not a multiple of 128, so it gets 64).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swiftcli.config.paths import swiftcli_home
from swiftcli.config.spec import ModelSpec
from swiftcli.engines.tokenizer import load_tokenizer
from swiftcli.errors import MissingDependencyError, UsageError
from swiftcli.export import atomic
from swiftcli.export import checkpoint as files
from swiftcli.export.calibration import load_calibration
from swiftcli.export.merge import ExportResult, merge_lora
from swiftcli.hub.resolve import read_json, resolve_model
from swiftcli.registry.templates import get_template

QUANT_METHODS = ("gptq", "awq")
QUANT_BITS = (4, 8)
GROUP_SIZES = (128, 64, 32)
INSTALL_HINT = "pip install 'swiftcli[export]' (gptqmodel 7.6.0; see the README for the exact steps)"

Message = Callable[[str], None]


# Everything that changes the quantized weights; an output is reused only when all of them match.
REUSE_KEYS = ("method", "bits", "group_size", "source_fingerprint", "calibration", "n_samples", "seqlen")


def calibration_settings(opts: QuantOptions) -> dict[str, Any]:
    calibration = None
    if opts.dataset is not None:
        path = Path(opts.dataset).expanduser().resolve()
        stat = path.stat() if path.is_file() else None
        calibration = f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else str(path)
    return {"calibration": calibration, "n_samples": opts.n_samples, "seqlen": opts.seqlen}


@dataclass
class QuantOptions:
    """How to quantize; None group_size means the largest of 128/64/32 that divides the layer widths."""

    bits: int = 4
    method: str = "gptq"
    group_size: int | None = None
    dataset: Path | None = None
    n_samples: int = 128
    seqlen: int = 512
    batch_size: int = 1

    def check(self) -> None:
        if self.bits not in QUANT_BITS:
            raise UsageError(f"--quant_bits must be 4 or 8, not {self.bits}",
                             "GPTQ/AWQ checkpoints that vLLM serves use 4 or 8 bits")
        if self.method not in QUANT_METHODS:
            raise UsageError(f"--quant_method must be gptq or awq, not {self.method!r}")
        if self.method == "awq" and self.bits != 4:
            raise UsageError("AWQ quantizes to 4 bits only", "use --quant_bits 4, or --quant_method gptq")
        for name in ("n_samples", "seqlen", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--quant_{name} must be at least 1")
        if self.group_size is not None and self.group_size != -1 and self.group_size < 1:
            raise UsageError("--quant_group_size must be positive (or -1 for one group per row)")


def quantized_name(source: Path, opts: QuantOptions) -> str:
    """ms-swift's naming: checkpoint-100 -> checkpoint-100-gptq-int4."""
    return f"{source.name}-{opts.method}-int{opts.bits}"


def layer_widths(model_dir: Path) -> list[int]:
    """Input widths of the linear layers quantization touches, from config.json."""
    config = read_json(model_dir / "config.json")
    config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    widths = []
    hidden = config.get("hidden_size")
    if isinstance(hidden, int):
        widths.append(hidden)
        heads = config.get("num_attention_heads")
        head_dim = config.get("head_dim") or (hidden // heads if isinstance(heads, int) and heads else None)
        if isinstance(heads, int) and isinstance(head_dim, int):
            widths.append(heads * head_dim)
    for key in ("intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size"):
        if isinstance(config.get(key), int):
            widths.append(config[key])
    return widths


def choose_group_size(model_dir: Path, requested: int | None) -> int:
    widths = layer_widths(model_dir)
    if requested is not None:
        bad = [w for w in widths if requested != -1 and w % requested]
        if bad:
            raise UsageError(f"--quant_group_size {requested} does not divide the layer widths {sorted(set(bad))}",
                             "vLLM refuses such a checkpoint; leave --quant_group_size unset to choose one")
        return requested
    for size in GROUP_SIZES:
        if all(w % size == 0 for w in widths):
            return size
    return -1


def _config_quantization(model_dir: Path) -> str | None:
    # A registered model type says nothing about a quantized copy of it: ask config.json.
    quant = read_json(model_dir / "config.json").get("quantization_config")
    return str(quant.get("quant_method", "quantized")) if isinstance(quant, dict) else None


def check_backend(opts: QuantOptions) -> None:
    """Refuse what cannot run here before anything heavy happens."""
    if opts.method == "awq":
        # lazy: gptqmodel is optional and pulls torch
        import torch

        if not torch.cuda.is_available():
            raise UsageError("AWQ quantization needs a CUDA GPU, and none is available here",
                             "use --quant_method gptq (it runs on CPU)")

    if importlib.util.find_spec("gptqmodel") is None:
        raise MissingDependencyError("quantization needs gptqmodel, which is not installed", INSTALL_HINT)


def quantize_model(
    opts: QuantOptions,
    *,
    ckpt_dir: str | Path | None = None,
    model_type: str | None = None,
    model_id_or_path: str | None = None,
    output_dir: str | Path | None = None,
    merge_lora_first: bool = False,
    force: bool = False,
    trust_remote_code: bool = False,
    on_message: Message | None = None,
) -> ExportResult:
    """Quantize a model (or a merged LoRA checkpoint) and write `<name>-<method>-int<bits>` atomically.

    A LoRA ckpt_dir needs merge_lora_first=True (merged, or a finished merge reused, then quantized).
    """
    say = on_message or (lambda _msg: None)
    started = time.perf_counter()
    opts.check()
    check_backend(opts)
    spec = _source_spec(ckpt_dir, model_type, model_id_or_path, merge_lora_first, force, trust_remote_code, say)
    target = _target_dir(spec, ckpt_dir, output_dir, opts)
    group_size = choose_group_size(spec.model_dir, opts.group_size)
    params = files.parameter_estimate(spec.model_dir)
    source_id = files.fingerprint([spec.model_dir])
    marker = {"kind": "quantize", "source": str(spec.model_dir), "method": opts.method, "bits": opts.bits,
              "group_size": group_size, "source_fingerprint": source_id, **calibration_settings(opts)}

    def reuse(state: atomic.OutputState) -> bool:
        changed = [k for k in REUSE_KEYS if state.marker.get(k) != marker[k]]
        if changed:
            say(f"{target} was quantized with other {', '.join(changed)}: quantizing again")
            return False
        say(f"Reusing the complete quantized model in {target} (pass --force true to redo it)")
        return True

    def build(temp: Path) -> None:
        # Packed weights plus the embeddings, which stay in 16 bits; a generous bound.
        atomic.check_free_space(target, params * 2, "the quantized model")
        say(f"Quantizing {spec.model_dir} with {opts.method.upper()} to {opts.bits} bits, group size {group_size}")
        _quantize_into(spec, temp, target, opts, group_size, trust_remote_code, say)

    written = atomic.write_atomically(target, build, force=force, marker=marker, reuse=reuse, on_message=say)
    details = {"method": opts.method, "bits": opts.bits, "group_size": group_size,
               "bytes": files.weights_bytes(target)}
    return ExportResult(target, not written, time.perf_counter() - started, None, details)


def _source_spec(ckpt_dir: str | Path | None, model_type: str | None, model_id_or_path: str | None,
                 merge_lora_first: bool, force: bool, trust_remote_code: bool, say: Message) -> ModelSpec:
    """The full-weight model to quantize: the one named, or a LoRA checkpoint merged first (when asked)."""
    spec = resolve_model(model_type, model_id_or_path, ckpt_dir)
    if spec.adapters:
        if not merge_lora_first:
            raise UsageError(f"{spec.ckpt_dir} is a LoRA adapter: it must be merged before quantizing",
                             "add --merge_lora true to merge it first, in the same run")
        merged = merge_lora(spec.adapters[0], model_type=model_type, model_id_or_path=model_id_or_path,
                            force=force, trust_remote_code=trust_remote_code, on_message=say)
        spec = resolve_model(ckpt_dir=merged.output_dir)
    already = spec.quantization or _config_quantization(spec.model_dir)
    if already:
        raise UsageError(f"{spec.model_dir} is already quantized ({already})", "quantize the original weights")
    return spec


def _target_dir(spec: ModelSpec, ckpt_dir: str | Path | None, output_dir: str | Path | None,
                opts: QuantOptions) -> Path:
    """--output_dir, else `<checkpoint>-<method>-int<bits>` beside the checkpoint (the one given, not its merge),
    else in the working directory for a hub model, as ms-swift does."""
    if output_dir:
        target = Path(output_dir).expanduser().absolute()
    elif ckpt_dir:
        source_dir = Path(ckpt_dir).expanduser().absolute()
        target = source_dir.with_name(quantized_name(source_dir, opts))
    else:
        target = Path.cwd() / quantized_name(Path(spec.name), opts)
    if target.resolve() == spec.model_dir.resolve():
        raise UsageError(f"the output {target} is the input itself", "choose another --output_dir")
    return target


def _quantize_into(spec: ModelSpec, temp: Path, target: Path, opts: QuantOptions, group_size: int,
                   trust_remote_code: bool, say: Message) -> None:
    tokenizer = load_tokenizer(spec, trust_remote_code)
    template = get_template(spec.template_type, tokenizer, spec.default_system)
    calibration = load_calibration(opts.dataset, template, tokenizer, opts.n_samples, opts.seqlen)
    say(f"Calibrating on {len(calibration)} samples"
        f"{'' if opts.dataset else ' (built-in texts; pass --dataset FILE for your own)'}")
    # gptqmodel starts one worker per two cores by default; more than the machine has only adds contention.
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(8, os.cpu_count() or 1))))
    # Its own progress bars and tables go to stderr: stdout is for results.
    with contextlib.redirect_stdout(sys.stderr):
        # Layers offloaded during quantization live inside our temporary directory, so a killed run's
        # leftovers are cleaned with it.
        offload = temp / ".offload"
        model = _load_for_quantization(spec, opts, group_size, trust_remote_code, offload)
        with _gptqmodel_logs_in(swiftcli_home() / "logs" / "gptqmodel"):
            model.quantize(calibration, batch_size=opts.batch_size, tokenizer=tokenizer)
        model.save(str(temp))
    del model
    shutil.rmtree(offload, ignore_errors=True)
    for leftover in ("quant_log.csv",):
        (temp / leftover).unlink(missing_ok=True)
    files.save_tokenizer(files.tokenizer_source(spec.ckpt_dir, spec.model_dir), temp, trust_remote_code)
    files.write_generation_config([spec.model_dir], temp, lambda m: say(f"Warning: {m}"))
    files.write_args(spec.ckpt_dir, temp, target, {
        "model_type": spec.model_type, "template_type": spec.template_type,
        "quant_method": opts.method, "quant_bits": opts.bits, "quant_group_size": group_size,
        "quantized_from": str(spec.model_dir),
    })


@contextlib.contextmanager
def _gptqmodel_logs_in(folder: Path) -> Iterator[None]:
    """gptqmodel writes each run's log under ./logs (a module constant; it has no option for it): send them to
    swiftcli's logs folder instead, so that quantizing writes nothing into the working directory."""
    # lazy: keeps --help and start-up free of torch, transformers, datasets, the hub clients, gptqmodel
    from gptqmodel.looper import loop_processor

    saved = getattr(loop_processor, "_PROJECT_LOG_DIR", None)
    if saved is None:  # a release that keeps its logs elsewhere
        yield
        return
    loop_processor._PROJECT_LOG_DIR = folder
    try:
        yield
    finally:
        loop_processor._PROJECT_LOG_DIR = saved


def _load_for_quantization(spec: ModelSpec, opts: QuantOptions, group_size: int, trust_remote_code: bool,
                           offload: Path) -> Any:
    try:
        # lazy: keeps --help and start-up free of torch
        from gptqmodel import GPTQModel, QuantizeConfig
    except ImportError as exc:
        raise MissingDependencyError(f"gptqmodel does not import: {exc}", INSTALL_HINT) from None
    import torch  # deferred: torch loads only when needed (a light start-up)

    config = QuantizeConfig(bits=opts.bits, group_size=group_size, method=opts.method,
                            offload_to_disk_path=str(offload),
                            **({"desc_act": False} if opts.method == "gptq" else {}))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return GPTQModel.load(str(spec.model_dir), config, device=device, trust_remote_code=trust_remote_code)
