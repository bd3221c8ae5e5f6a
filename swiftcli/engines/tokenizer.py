"""Tokenizer loading shared by every backend (and export), so no backend imports another."""

from __future__ import annotations

from typing import Any

from swiftcli.config.spec import ModelSpec
from swiftcli.errors import CheckpointError


def load_tokenizer(spec: ModelSpec, trust_remote_code: bool = False) -> Any:
    """The model folder's tokenizer; a folder without a usable one is a CheckpointError naming it."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:  # transformers says "no tokenizer" with either, in a long message
        raise CheckpointError(  # --debug shows transformers' own words
            f"{spec.model_dir} has no tokenizer that transformers can load",
            "copy tokenizer.json and tokenizer_config.json from the base model into the folder",
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
