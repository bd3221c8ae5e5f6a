"""What to load, as a user says it: a model type, a path or hub id, or a checkpoint, with template and backend.

`swiftcli.load` turns these into a ModelSpec (hub.resolve) and an engine. Each field's default and help live
here once; the CLI derives its options from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from swiftcli.config.spec import ENGINE, MODEL, setting


@dataclass(frozen=True)
class ModelOptions:
    """Which model to load and how to prompt it; every field may be left out (the embedded model)."""

    model_type: str | None = setting(None, "Registered model type (see `swiftcli models`).", panel=MODEL)
    model_id_or_path: str | None = setting(None, "Local model directory or hub id.", "model_id_or_path", panel=MODEL,
                                            name="model")
    ckpt_dir: str | None = setting(None, "Fine-tuned checkpoint (full weights or a LoRA adapter).", panel=MODEL)
    template_type: str | None = setting(None, "Chat template; default the registry's or the tokenizer's.",
                                        panel=MODEL)
    system: str | None = setting(None, "System prompt; default the template's.", panel=MODEL)
    revision: str | None = setting(None, "Hub revision to download.", panel=MODEL)
    merge_lora: bool = setting(False, "Merge a LoRA --ckpt-dir first (or reuse the merge).", panel=MODEL)
    infer_backend: str | None = setting(None, "vllm or pt; default vllm when installed.", panel=ENGINE,
                                        choices=("vllm", "pt"))
