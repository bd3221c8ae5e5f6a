"""`swiftcli export`: merge a LoRA checkpoint and/or quantize to GPTQ/AWQ; the output directory on stdout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swiftcli.cli.errors import handled, stderr
from swiftcli.cli.options import MODEL_PANEL, BoolValue, opt, with_options

OUTPUT_PANEL = "Output"
QUANT_PANEL = "Quantization"

EXAMPLES = """

[b]Examples[/b]

  swiftcli export --ckpt_dir output/checkpoint-100 --merge_lora true

  swiftcli export --ckpt_dir output/checkpoint-100 --merge_lora true --quant_bits 4

  swiftcli export --model_type smollm2-135m-instruct --quant_bits 4 --dataset calib.jsonl --output_dir smol-int4
"""


@dataclass
class ExportOptions:
    ckpt_dir: str | None = opt(None, "Checkpoint to export: a LoRA adapter (with --merge_lora) or full weights.",
                                  MODEL_PANEL)
    model_type: str | None = opt(None, "Registered model type (the base, when args.json does not say).",
                                    MODEL_PANEL)
    model_id_or_path: str | None = opt(None, "Local model directory or hub id (the base, or the model to "
                                                "quantize).", MODEL_PANEL, "--model")
    merge_lora: BoolValue = opt(False, "Merge the LoRA --ckpt_dir into its base model.", MODEL_PANEL)
    dtype: str | None = opt(None, "dtype to save merged weights in (default the model's).", MODEL_PANEL,
                               "--torch_dtype")
    trust_remote_code: BoolValue = opt(False, "Run code shipped with the model.", MODEL_PANEL)
    output_dir: str | None = opt(None, "Where to write; default beside the input: DIR-merged, "
                                          "DIR-gptq-int4 (a hub model: ./NAME-gptq-int4).", OUTPUT_PANEL)
    force: BoolValue = opt(False, "Redo the export even if a complete output exists (it is replaced).",
                           OUTPUT_PANEL)
    verify: BoolValue | None = opt(
        None, "Check that the merged model and base + adapter give the same greedy tokens (float32); default on "
              "up to 3B parameters.", OUTPUT_PANEL)
    quant_bits: int | None = opt(None, "Quantize to 4 or 8 bits.", QUANT_PANEL)
    quant_method: str = opt("gptq", "gptq (CPU or GPU) or awq (CUDA only).", QUANT_PANEL, choices=("gptq", "awq"))
    quant_group_size: int | None = opt(None, "Group size; default the largest of 128/64/32 dividing every "
                                                "layer width.", QUANT_PANEL)
    dataset: str | None = opt(None, "Calibration file (.jsonl/.json/.csv: messages, query/response or text); "
                                       "default a built-in set of varied texts.", QUANT_PANEL)
    quant_n_samples: int = opt(128, "Calibration samples.", QUANT_PANEL)
    quant_seqlen: int = opt(512, "Tokens per calibration sample (longer ones are cut).", QUANT_PANEL)
    quant_batch_size: int = opt(1, "Calibration batch size.", QUANT_PANEL)


@with_options(export=ExportOptions)
@handled
def export_command(*, export: ExportOptions) -> None:
    """Merge a LoRA checkpoint and/or quantize a model; the output is written atomically (complete or absent)."""
    from swiftcli.cli.common import quiet_engine_logs
    from swiftcli.cli.state import quiet, verbose
    from swiftcli.errors import UsageError

    quiet_engine_logs(verbose())

    def say(message: str) -> None:
        if not quiet():
            stderr.print(message, markup=False, highlight=False)

    if not export.merge_lora and export.quant_bits is None:
        raise UsageError("nothing to export", "pass --merge_lora true (with a LoRA --ckpt_dir), --quant_bits 4|8, "
                                              "or both")
    if export.merge_lora and not export.ckpt_dir:
        raise UsageError("--merge_lora true needs --ckpt_dir (a LoRA checkpoint)")
    if export.quant_bits is None:
        from swiftcli.export.merge import merge_lora

        result = merge_lora(
            export.ckpt_dir or "", export.output_dir, model_type=export.model_type,
            model_id_or_path=export.model_id_or_path, dtype=export.dtype, force=bool(export.force),
            verify=None if export.verify is None else bool(export.verify),
            trust_remote_code=bool(export.trust_remote_code), on_message=say,
        )
    else:
        from swiftcli.export.quantize import QuantOptions, quantize_model

        opts = QuantOptions(
            bits=export.quant_bits, method=export.quant_method, group_size=export.quant_group_size,
            dataset=Path(export.dataset).expanduser() if export.dataset else None,
            n_samples=export.quant_n_samples, seqlen=export.quant_seqlen, batch_size=export.quant_batch_size,
        )
        result = quantize_model(
            opts, ckpt_dir=export.ckpt_dir, model_type=export.model_type,
            model_id_or_path=export.model_id_or_path, output_dir=export.output_dir,
            merge_lora_first=bool(export.merge_lora), force=bool(export.force),
            trust_remote_code=bool(export.trust_remote_code), on_message=say,
        )
    if not result.reused:
        say(f"Wrote {result.output_dir} in {result.seconds:.1f} s")
    print(result.output_dir, flush=True)


export_command.__doc__ = (export_command.__doc__ or "") + EXAMPLES
