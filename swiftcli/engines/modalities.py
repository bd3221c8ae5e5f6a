"""What a loaded model can read besides text, checked before any image reaches an engine.

A text-only model given an image must fail with a clear error: dropping the image would answer a different
question than the one asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swiftcli.config.spec import ModelSpec
from swiftcli.errors import InputError


def check_accepts(spec: ModelSpec, multi_modal_data: Mapping[str, Sequence[Any]]) -> None:
    """An InputError naming the first modality with items that `spec`'s model does not take."""
    for modality, items in multi_modal_data.items():
        if items and modality not in spec.modalities:
            takes = "text only" if not spec.modalities else "text and " + " and ".join(
                f"{m}s" for m in spec.modalities)
            raise InputError(f"model {spec.name} takes {takes}, not {modality}s",
                             "send text only, or serve a vision-language model (`swiftcli models` lists them)")
