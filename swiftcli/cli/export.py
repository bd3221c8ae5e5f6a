"""`swiftcli export`: merge a LoRA checkpoint and/or quantize to GPTQ/AWQ; the output directory on stdout."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from swiftcli.cli.errors import handled
from swiftcli.cli.options import with_options
from swiftcli.cli.output import message
from swiftcli.cli.output import result as result_line
from swiftcli.config.commands import OutputOptions, check_writable
from swiftcli.config.spec import MODEL, setting
from swiftcli.errors import UsageError
from swiftcli.export.quantize import QuantOptions, quantize_model

_QUANT = QuantOptions()  # the quantizer's defaults, shown and used as the options' defaults

OUTPUT_PANEL = "Output"
QUANT_PANEL = "Quantization"

EXAMPLES = """

[b]Examples[/b]

  swiftcli export --ckpt-dir output/checkpoint-100 --merge-lora true

  swiftcli export --ckpt-dir output/checkpoint-100 --merge-lora true --quant-bits 4

  swiftcli export --model-type smollm2-135m-instruct --quant-bits 4 --dataset calib.jsonl --output-dir smol-int4
"""


@dataclass(frozen=True)
class ExportOptions:
    ckpt_dir: str | None = setting(None, "Checkpoint to export: a LoRA adapter (with --merge-lora) or full weights.",
                                   panel=MODEL)
    model_type: str | None = setting(None, "Registered model type (the base, when args.json does not say).",
                                     panel=MODEL)
    model_id_or_path: str | None = setting(None, "Local model directory or hub id (the base, or the model to "
                                           "quantize).", "model_id_or_path", panel=MODEL, name="model")
    merge_lora: bool = setting(False, "Merge the LoRA --ckpt-dir into its base model.", panel=MODEL)
    dtype: str | None = setting(None, "dtype to save merged weights in (default the model's).", "torch_dtype",
                                panel=MODEL)
    trust_remote_code: bool = setting(False, "Run code shipped with the model.", panel=MODEL)
    output_dir: str | None = setting(None, "Where to write; default beside the input: DIR-merged, "
                                     "DIR-gptq-int4 (a hub model: ./NAME-gptq-int4).", panel=OUTPUT_PANEL)
    force: bool = setting(False, "Redo the export even if a complete output exists (it is replaced).",
                          panel=OUTPUT_PANEL)
    verify: bool | None = setting(
        None, "Check that the merged model and base + adapter give the same greedy tokens (float32); default on "
              "up to 3B parameters.", panel=OUTPUT_PANEL)
    quant_bits: int | None = setting(None, "Quantize to 4 or 8 bits.", panel=QUANT_PANEL)
    quant_method: str = setting(_QUANT.method, "gptq (CPU or GPU) or awq (CUDA only).", panel=QUANT_PANEL,
                                choices=("gptq", "awq"))
    quant_group_size: int | None = setting(None, "Group size; default the largest of 128/64/32 dividing every "
                                           "layer width.", panel=QUANT_PANEL)
    dataset: str | None = setting(None, "Calibration file (.jsonl/.json/.csv: messages, query/response or text); "
                                  "default a built-in set of varied texts.", panel=QUANT_PANEL)
    quant_n_samples: int = setting(_QUANT.n_samples, "Calibration samples.", panel=QUANT_PANEL)
    quant_seqlen: int = setting(_QUANT.seqlen, "Tokens per calibration sample (longer ones are cut).",
                                panel=QUANT_PANEL)
    quant_batch_size: int = setting(_QUANT.batch_size, "Calibration batch size.", panel=QUANT_PANEL)

    def __post_init__(self) -> None:
        if not self.merge_lora and self.quant_bits is None:
            raise UsageError("nothing to export",
                             "pass --merge-lora true (with a LoRA --ckpt-dir), --quant-bits 4|8, or both")
        if self.merge_lora and not self.ckpt_dir:
            raise UsageError("--merge-lora true needs --ckpt-dir (a LoRA checkpoint)")
        if self.quant_bits is not None:
            self.quant().check()  # bits, method, sizes: before anything loads
        if self.dataset and not Path(self.dataset).expanduser().is_file():
            raise UsageError(f"--dataset {self.dataset} does not exist", "give a .jsonl, .json or .csv file")
        if self.output_dir:
            check_writable(Path(self.output_dir).expanduser().parent, "--output-dir", file=False)

    def quant(self) -> QuantOptions:
        return QuantOptions(bits=self.quant_bits or _QUANT.bits, method=self.quant_method,
                            group_size=self.quant_group_size,
                            dataset=Path(self.dataset).expanduser() if self.dataset else None,
                            n_samples=self.quant_n_samples, seqlen=self.quant_seqlen, batch_size=self.quant_batch_size)


@with_options(export=ExportOptions, out=OutputOptions)
@handled
def export_command(*, export: ExportOptions, out: OutputOptions) -> None:
    """Merge a LoRA checkpoint and/or quantize a model; the output is written atomically (complete or absent)."""
    # looked up per call, so a swapped function (tests) takes effect
    from swiftcli.cli.output import engine_logs

    engine_logs("export")
    if export.quant_bits is None:
        from swiftcli.export.merge import merge_lora  # looked up per call: tests patch it on its module

        result = merge_lora(
            export.ckpt_dir or "", export.output_dir, model_type=export.model_type,
            model_id_or_path=export.model_id_or_path, dtype=export.dtype, force=bool(export.force),
            verify=None if export.verify is None else bool(export.verify),
            trust_remote_code=bool(export.trust_remote_code), on_message=message,
        )
    else:
        result = quantize_model(
            export.quant(), ckpt_dir=export.ckpt_dir, model_type=export.model_type,
            model_id_or_path=export.model_id_or_path, output_dir=export.output_dir,
            merge_lora_first=bool(export.merge_lora), force=bool(export.force),
            trust_remote_code=bool(export.trust_remote_code), on_message=message,
        )
    if not result.reused:
        message(f"Wrote {result.output_dir} in {result.seconds:.1f} s")
    if out.json:
        verify = dataclasses.asdict(result.verify) if dataclasses.is_dataclass(result.verify) else None
        result_line(json.dumps({"output_dir": str(result.output_dir), "reused": result.reused,
                                "seconds": round(result.seconds, 3), "verify": verify}, default=str))
    else:
        result_line(str(result.output_dir))


export_command.__doc__ = (export_command.__doc__ or "") + EXAMPLES
