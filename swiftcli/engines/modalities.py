"""What a loaded model can read besides text, checked before any image reaches an engine.

A text-only model given an image must fail with a clear error: dropping the image would answer a different
question than the one asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from swiftcli.config.spec import ModelSpec
from swiftcli.errors import CheckpointError, InputError


def check_accepts(spec: ModelSpec, multi_modal_data: Mapping[str, Sequence[Any]]) -> None:
    """An InputError naming the first modality with items that `spec`'s model does not take."""
    for modality, items in multi_modal_data.items():
        if items and modality not in spec.modalities:
            takes = "text only" if not spec.modalities else "text and " + " and ".join(
                f"{m}s" for m in spec.modalities)
            raise InputError(f"model {spec.name} takes {takes}, not {modality}s",
                             "send text only, or serve a vision-language model (`swiftcli models` lists them)")


# Module names of vision towers and their projectors in the vision-language families vLLM serves.
_VISION_NAMES = (r"vision_model|vision_tower|visual|vpm|vision_encoder|image_encoder|connector|multi_modal_projector|"
                 r"mm_projector|mlp1|resampler|merger")
VISION_MODULES = re.compile(rf"(^|\.)({_VISION_NAMES})(\.|$)")
# target_modules and modules_to_save may be regular expressions: any mention counts there.
VISION_MENTION = re.compile(_VISION_NAMES)


def check_language_only(path: Path, config: dict[str, Any], weights: Path | None) -> None:
    """Refuse an adapter that trains a vision tower: vLLM applies LoRA to the language model only and would
    drop those weights with a log line, serving a different model than the one trained."""
    names = _tensor_names(weights) if weights is not None else []
    touched = sorted({n for n in names if VISION_MODULES.search(n.removeprefix("base_model.model."))})
    targets = config.get("target_modules")
    if not touched and isinstance(targets, str) and VISION_MENTION.search(targets):
        touched = [f"target_modules {targets!r}"]
    touched += [f"modules_to_save {m!r}" for m in config.get("modules_to_save") or []
                if isinstance(m, str) and VISION_MENTION.search(m)]
    if touched:
        raise CheckpointError(
            f"{path} trains the vision tower ({len(touched)} weights, e.g. {touched[0]}), and vLLM applies LoRA "
            "adapters to the language model only",
            "merge the adapter into the model first: --merge_lora true")


def _tensor_names(weights: Path) -> list[str]:
    from safetensors import safe_open  # deferred: safetensors loads only when needed (a light start-up)

    try:
        with safe_open(str(weights), framework="numpy") as f:
            return list(f.keys())
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise CheckpointError(f"cannot read the adapter weights {weights.name}: {type(exc).__name__}") from None
