"""Any sync Engine (the pt backend) behind the AsyncEngine protocol, on a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from swiftcli.engines.base import (
    EngineRequest,
    RequestResult,
    capabilities_of,
    check_context_length,
    describe_feature,
    threaded_capabilities,
)
from swiftcli.errors import EngineError, InputError


class ThreadedAsyncEngine:
    """Requests run one at a time on a worker thread; results hop to the event loop through a queue."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.backend = engine.backend
        self.capabilities = threaded_capabilities(capabilities_of(engine))
        self.spec = engine.spec
        self.hf_tokenizer = engine.hf_tokenizer
        self.generation_config = engine.generation_config
        self.max_model_len = engine.max_model_len
        self.max_num_seqs: int | None = None  # one request at a time, however many wait: no batch to size by
        self._lock = threading.Lock()
        self._running = 0

    @property
    def lora_names(self) -> list[str]:
        return [p.name for p in self.spec.adapters]

    @property
    def vocab_size(self) -> int:
        return len(self.hf_tokenizer)

    @property
    def errored(self) -> bool:
        return False  # a failing request raises in its own call; the engine itself stays usable

    def add_lora(self, name: str, path: str) -> None:
        raise EngineError(f"the {self.backend} backend applies LoRA adapters at load time only",
                          "pass --ckpt_dir with the adapter, or use --infer_backend vllm")

    async def load_lora(self, name: str, path: str) -> None:
        self.add_lora(name, path)

    async def unload_lora(self, name: str) -> None:
        self.add_lora(name, "")

    async def generate(self, request: EngineRequest, *, guided: dict[str, Any] | None = None
                       ) -> AsyncIterator[RequestResult]:
        if guided:
            if not self.capabilities.structured_output:
                raise InputError(f"response_format and structured outputs need a backend with "
                                 f"{describe_feature('structured_output')}; {self.backend} has none")
            request = replace(request, guided=guided)
        check_context_length(len(request.prompt_ids), request.config.max_new_tokens, self.max_model_len)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                with self._lock:
                    if stop.is_set():
                        return
                    stream = self.engine.stream([request])
                    try:
                        for result in stream:
                            loop.call_soon_threadsafe(queue.put_nowait, result)
                            if stop.is_set():
                                break
                    finally:
                        stream.close()
            except BaseException as exc:  # surfaced on the event loop
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        thread = threading.Thread(target=work, name=f"generate-{request.request_id}", daemon=True)
        thread.start()
        self._running += 1
        finished = False
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
        finally:
            self._running -= 1
            if not finished:
                stop.set()
                self.engine.abort([request.request_id])

    async def abort(self, request_id: str) -> None:
        self.engine.abort([request_id])

    def num_unfinished(self) -> int:
        """Requests started and not yet finished or abandoned (counted on the event loop)."""
        return self._running

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.close)
