"""POST /v1/embeddings on a `deploy --task embedding` server (vLLM's pooling runner, see engines.vllm_embed).

Input: a string, a list of strings, token ids or lists of token ids; `dimensions` for Matryoshka models;
`encoding_format` float or base64 (little-endian float32, as OpenAI's clients decode it). A chat server answers
this route with a 400 that says how to start an embedding one, and an embedding server answers the generation
routes with a 400 that says the reverse.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import uuid
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from swiftcli.server.admission import ClientGone, admit, until_disconnected
from swiftcli.server.errors import APIError
from swiftcli.server.fields import check_extra_fields
from swiftcli.server.limits import check_capacity

# OpenAI's own bound on inputs per request.
MAX_INPUTS = 2048
GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages",
                    "/v1/messages/count_tokens")


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    @model_validator(mode="after")
    def _no_silent_drops(self) -> EmbeddingRequest:
        check_extra_fields(self.model_extra or {})
        return self


def encode_inputs(raw: Any, tokenizer: Any, vocab: int, max_len: int) -> list[list[int]]:
    """Token ids of each input; 400 for none, too many, empty, unknown ids, surrogates or too long."""
    single = isinstance(raw, str) or bool(raw and isinstance(raw[0], int))
    inputs: list[Any] = [raw] if single else list(raw)
    if not inputs:
        raise APIError(400, "input must not be empty", param="input")
    if len(inputs) > MAX_INPUTS:
        raise APIError(400, f"input holds {len(inputs)} items; at most {MAX_INPUTS} are allowed", param="input")
    out = []
    for i, item in enumerate(inputs):
        where = "input" if single else f"input.{i}"
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(400, f"{where} holds a lone UTF-16 surrogate, which is not valid Unicode text",
                               param=where) from None
            ids = list(tokenizer.encode(item, add_special_tokens=True))
        else:
            ids = [int(t) for t in item]
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise APIError(400, f"{where}: token id {bad[0]} is out of the vocabulary's range [0, {vocab})",
                               param=where)
        if not ids:
            raise APIError(400, f"{where} must not be empty", param=where)
        if len(ids) > max_len:
            raise APIError(400, f"{where} is {len(ids)} tokens long; the model takes at most {max_len}", param=where)
        out.append(ids)
    return out


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def add_embedding_routes(app: FastAPI, state: Any, guard: Callable[[Callable[..., Any]], Callable[..., Any]]
                         ) -> None:
    @app.post("/v1/embeddings")
    @guard
    async def embeddings(req: EmbeddingRequest, http: Request) -> Response:
        if state.settings.task != "embedding":
            raise APIError(400, "this server generates text and does not serve embeddings; start an embedding "
                           "server with `swiftcli deploy --task embedding`", param="model")
        engine = state.engine
        state.resolve_model(req.model)
        check_capacity(state.in_flight, state.settings.max_concurrent_requests)
        prompts = await state.off_loop(encode_inputs, req.input, engine.hf_tokenizer, state.vocab_size,
                                       engine.max_model_len)
        slot = admit(state)
        slot.prompt_tokens = sum(len(ids) for ids in prompts)
        finished = False
        base = f"embd-{uuid.uuid4().hex}"

        async def embed_all() -> list[list[float]]:
            tasks = [asyncio.ensure_future(engine.embed(ids, f"{base}-{i}", req.dimensions))
                     for i, ids in enumerate(prompts)]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                # One failed or the client left: the others are cancelled, which aborts their engine requests.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        try:
            try:
                vectors = await until_disconnected(http.receive, embed_all())
            except ClientGone:
                return Response(status_code=499)
            finished = True
        finally:
            slot.release(finished=finished)
        data = [{"object": "embedding", "index": i, "embedding": _encoded(v, req.encoding_format)}
                for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": req.model or state.model_id,
                             "usage": {"prompt_tokens": slot.prompt_tokens, "total_tokens": slot.prompt_tokens}})


def add_generation_refusals(app: FastAPI) -> None:
    """On an embedding server, the generation routes answer 400 saying what this server is."""

    async def refuse() -> Response:
        raise APIError(400, "this server was started with --task embedding and serves /v1/embeddings only; "
                       "start `swiftcli deploy` without --task embedding to generate text")

    for path in GENERATION_PATHS:
        app.add_api_route(path, refuse, methods=["POST"])
