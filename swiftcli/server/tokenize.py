"""vLLM's tokenizer endpoints: /tokenize, /detokenize and /tokenizer_info, in vLLM's shapes.

lm-evaluation-harness probes /tokenizer_info and /tokenize to tokenize through the server (so its token ids are
the server's), and falls back to downloading the tokenizer when they are missing. They sit behind the same API
key as /v1/*.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import Field

from swiftcli.server.errors import APIError
from swiftcli.server.protocol import _Request

TOKENIZER_PATHS = ("/tokenize", "/detokenize", "/tokenizer_info")
# A tokenize request does no model work, but its text is still bounded: this many characters per context token.
CHARS_PER_TOKEN = 32
_INFO_FIELDS = ("bos_token", "eos_token", "pad_token", "unk_token", "add_bos_token", "add_eos_token",
                "clean_up_tokenization_spaces", "model_max_length", "padding_side", "truncation_side")


class TokenizeRequest(_Request):
    model: str | None = None
    prompt: str | None = None
    messages: list[Any] | None = None
    add_special_tokens: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(_Request):
    model: str | None = None
    tokens: list[int] = Field(max_length=1_000_000)


def add_tokenizer_routes(app: FastAPI, state: Any) -> None:
    """Registers the three endpoints on `app`; they read the engine's tokenizer from `state` once it is ready."""

    @app.post("/tokenize")
    async def tokenize(req: TokenizeRequest) -> dict[str, Any]:
        state.resolve_model(req.model)
        if req.prompt is None:
            param = "messages" if req.messages is not None else "prompt"
            raise APIError(400, "send `prompt` (a string); the chat form with `messages` is not supported",
                           param=param)
        limit = state.engine.max_model_len * CHARS_PER_TOKEN
        if len(req.prompt) > limit:
            raise APIError(400, f"prompt is longer than {limit} characters", param="prompt")
        tokenizer = state.engine.hf_tokenizer
        ids = list(tokenizer.encode(req.prompt, add_special_tokens=req.add_special_tokens))
        strs = tokenizer.convert_ids_to_tokens(ids) if req.return_token_strs else None
        return {"count": len(ids), "max_model_len": state.engine.max_model_len, "tokens": ids, "token_strs": strs}

    @app.post("/detokenize")
    async def detokenize(req: DetokenizeRequest) -> dict[str, Any]:
        state.resolve_model(req.model)
        tokenizer = state.engine.hf_tokenizer
        vocab = len(tokenizer)
        bad = [t for t in req.tokens if not 0 <= t < vocab]
        if bad:
            raise APIError(400, f"token id {bad[0]} is out of the vocabulary's range [0, {vocab})", param="tokens")
        return {"prompt": tokenizer.decode(req.tokens)}

    @app.get("/tokenizer_info")
    async def tokenizer_info() -> dict[str, Any]:
        return tokenizer_description(state.engine.hf_tokenizer)


def tokenizer_description(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer's class, special tokens and chat template: what a client needs to tokenize like the server.
    Built from named fields only, so no local file path leaks (init kwargs hold the model directory)."""
    info: dict[str, Any] = {"tokenizer_class": type(tokenizer).__name__}
    for name in _INFO_FIELDS:
        value = getattr(tokenizer, name, None)
        if value is not None:
            info[name] = str(value) if not isinstance(value, (bool, int, float)) else value
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        info["chat_template"] = template
    return info
