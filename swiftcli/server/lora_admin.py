"""Runtime LoRA: `POST /v1/load_lora_adapter` and `POST /v1/unload_lora_adapter`, named and shaped as vLLM's.

Only with `deploy --enable_runtime_lora` (otherwise the routes do not exist, as in vLLM without
VLLM_ALLOW_RUNTIME_LORA_UPDATING), and behind the API key like every /v1 route. A path is checked from its files
before the engine sees it (a LoRA adapter of this base, rank within --max_lora_rank), then the engine loads it
at once, so a bad adapter is refused here and not at some later request. Requests already running are not
touched: loading adds an entry, it does not pause or restart anything.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict

from swiftcli.errors import SwiftError
from swiftcli.export.adapters import check_adapter
from swiftcli.server.errors import APIError

logger = logging.getLogger("swiftcli.server")
# Names end up in /v1/models and in request bodies: keep them to what a model id usually is.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


class LoadLoRAAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str
    lora_path: str


class UnloadLoRAAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str
    lora_int_id: int | None = None  # accepted for vLLM clients that send it; the name decides


def install_lora_admin(app: FastAPI, state: Any) -> None:
    """Add the two routes when the server settings ask for runtime LoRA (`runtime_lora`)."""
    if not state.settings.runtime_lora:
        return
    lock = asyncio.Lock()  # one load/unload at a time: two loads of one name must not race

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(body: LoadLoRAAdapterRequest) -> PlainTextResponse:
        engine = state.engine
        name = _check_name(body.lora_name, state)
        async with lock:
            if name in engine.lora_names:
                raise APIError(400, f"The lora adapter '{name}' has already been loaded.", param="lora_name")
            _check_path(body.lora_path, engine)
            try:
                await engine.load_lora(name, body.lora_path)
            except SwiftError as exc:
                raise APIError(400, f"cannot load LoRA adapter '{name}': {exc.message}", param="lora_path") from None
            except Exception as exc:  # the engine's refusal (e.g. a feature vLLM lacks): its message, no trace
                logger.warning("loading LoRA adapter %s failed: %s", name, exc)
                raise APIError(400, f"cannot load LoRA adapter '{name}': {_first_line(exc)}",
                               param="lora_path") from None
        logger.info("loaded LoRA adapter %s", name)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(body: UnloadLoRAAdapterRequest) -> PlainTextResponse:
        engine = state.engine
        name = body.lora_name
        async with lock:
            if name not in engine.lora_names:
                raise APIError(404, f"The lora adapter '{name}' cannot be found.", param="lora_name",
                               code="lora_not_found")
            await engine.unload_lora(name)
        logger.info("unloaded LoRA adapter %s", name)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")


def _check_name(name: str, state: Any) -> str:
    if not NAME_PATTERN.match(name):
        raise APIError(400, "lora_name must be 1-128 characters: letters, digits and . _ : / @ + -",
                       param="lora_name")
    if name == state.model_id:
        raise APIError(400, f"lora_name '{name}' is the base model's name", param="lora_name")
    return name


def _check_path(path: str, engine: Any) -> None:
    from pathlib import Path

    if not path or not Path(path).is_absolute():
        # Relative paths would resolve against the server's working directory, which clients cannot know.
        raise APIError(400, "lora_path must be an absolute path on the server", param="lora_path")
    try:
        check_adapter(path, engine.spec, engine.capabilities.max_lora_rank)
    except SwiftError as exc:
        raise APIError(400, str(exc), param="lora_path") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
