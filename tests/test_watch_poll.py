"""The watcher's poll rules, fast, with a recording engine (the live server test is tests/test_watch.py): a
checkpoint loads only once its adapter files exist and stayed unchanged across two polls, a refused one keeps
its reason (without server paths) and is not retried until its files change, a deleted one is unloaded."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftcli.config.spec import GenerationConfig
from swiftcli.server.app import ServerSettings
from swiftcli.server.watch import FULL_WEIGHT_REASON, PENDING_REASON, CheckpointWatcher


@dataclass
class Capabilities:
    max_lora_rank: int = 8


@dataclass
class RecordingEngine:
    """Only what the watcher calls: the adapters it holds, and every load and unload."""

    spec: Any = None  # no base to compare shapes with: the rank and the files are still checked
    capabilities: Capabilities = field(default_factory=Capabilities)
    loaded: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    @property
    def lora_names(self) -> list[str]:
        return list(self.loaded)

    async def load_lora(self, name: str, path: str) -> None:
        self.calls.append(f"load {name}")
        if name in self.refuse:
            raise RuntimeError(f"cannot read {path}\ndetails")
        self.loaded[name] = path

    async def unload_lora(self, name: str) -> None:
        self.calls.append(f"unload {name}")
        del self.loaded[name]


class State:
    def __init__(self) -> None:
        self.engine = RecordingEngine()
        self.model_id = "base"
        self.aliases: dict[str, str] = {}
        self.settings = ServerSettings(generation=GenerationConfig())
        self.template = None  # these checkpoints have no args.json: no training prompt to render against


def write_adapter(path: Path, rank: int = 8, weights: bytes | None = b"weights") -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": 16}))
    if weights is not None:
        (path / "adapter_model.safetensors").write_bytes(weights)


def poll(watcher: CheckpointWatcher, state: State) -> dict[str, dict[str, Any]]:
    asyncio.run(watcher.poll(state))
    return {row["id"]: row for row in watcher.table()}


def test_a_checkpoint_loads_once_its_files_stop_changing(tmp_path: Path) -> None:
    state, watcher = State(), CheckpointWatcher(tmp_path)
    ckpt = tmp_path / "checkpoint-100"
    write_adapter(ckpt, weights=None)
    assert poll(watcher, state)["checkpoint-100"]["reason"] == PENDING_REASON  # config only: not complete
    (ckpt / "adapter_model.safetensors").write_bytes(b"half")
    assert not poll(watcher, state)["checkpoint-100"]["loaded"]  # the weights just appeared
    with open(ckpt / "adapter_model.safetensors", "ab") as f:
        f.write(b" and the rest")
    assert not poll(watcher, state)["checkpoint-100"]["loaded"]  # still growing
    assert state.engine.calls == [] and "latest" not in state.aliases
    table = poll(watcher, state)  # unchanged since the last poll: complete
    assert table["checkpoint-100"]["loaded"] and table["checkpoint-100"]["step"] == 100
    assert state.engine.calls == ["load checkpoint-100"] and state.aliases["latest"] == "checkpoint-100"

    weights = ckpt / "adapter_model.safetensors"  # saved again under the same name: unloaded, then reloaded
    weights.write_bytes(b"new weights")
    os.utime(weights, ns=(1, 1))
    table = poll(watcher, state)
    assert not table["checkpoint-100"]["loaded"] and "latest" not in state.aliases
    assert poll(watcher, state)["checkpoint-100"]["loaded"]
    assert state.engine.calls == ["load checkpoint-100", "unload checkpoint-100", "load checkpoint-100"]

    write_adapter(tmp_path / "checkpoint-200")
    poll(watcher, state)
    poll(watcher, state)
    assert state.aliases["latest"] == "checkpoint-200"
    shutil.rmtree(tmp_path / "checkpoint-200")
    table = poll(watcher, state)
    assert "checkpoint-200" not in table and state.aliases["latest"] == "checkpoint-100"
    assert state.engine.calls[-1] == "unload checkpoint-200" and state.engine.lora_names == ["checkpoint-100"]
    shutil.rmtree(tmp_path / "checkpoint-100")
    poll(watcher, state)
    assert "latest" not in state.aliases and state.engine.lora_names == []


def test_refused_checkpoints_keep_their_reason_and_are_not_retried(tmp_path: Path) -> None:
    state, watcher = State(), CheckpointWatcher(tmp_path)
    write_adapter(tmp_path / "checkpoint-1", rank=64)
    write_adapter(tmp_path / "checkpoint-2")
    state.engine.refuse.add("checkpoint-2")
    full = tmp_path / "checkpoint-3"
    full.mkdir()
    (full / "config.json").write_text("{}")
    (full / "model.safetensors").write_bytes(b"weights")
    for _ in range(3):
        table = poll(watcher, state)
    assert "rank 64" in table["checkpoint-1"]["reason"] and not table["checkpoint-1"]["loaded"]
    assert table["checkpoint-2"]["reason"] == "cannot read checkpoint-2"  # first line, the path replaced
    assert table["checkpoint-3"]["reason"] == FULL_WEIGHT_REASON and table["checkpoint-3"]["kind"] == "full"
    assert str(tmp_path) not in json.dumps(table)
    assert state.engine.calls == ["load checkpoint-2"]  # tried once, not on every poll
    assert "latest" not in state.aliases

    state.engine.refuse.clear()  # the trainer rewrites the checkpoint: tried again once it is stable
    weights = tmp_path / "checkpoint-2" / "adapter_model.safetensors"
    weights.write_bytes(b"new weights")
    os.utime(weights, ns=(1, 1))
    poll(watcher, state)
    assert poll(watcher, state)["checkpoint-2"]["loaded"]
    assert state.aliases["latest"] == "checkpoint-2"
