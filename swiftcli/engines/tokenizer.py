"""Tokenizer loading shared by every backend (and export), so no backend imports another."""

from __future__ import annotations

from typing import Any

from swiftcli.config.spec import ModelSpec


def load_tokenizer(spec: ModelSpec, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.model_dir, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
