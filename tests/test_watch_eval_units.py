"""The scorer's rules, fast (the live server test is tests/test_watch_eval.py): the bridge sends scoring requests
at the low priority with a bounded window (one at a time without priority scheduling), an earlier run is read back
only with the same resume key, `best` is the top mean main metric and the earlier step on a tie."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swiftcli.config.spec import GenerationConfig
from swiftcli.engines.base import Completion, EngineCapabilities, EngineRequest, RequestResult
from swiftcli.eval.evaluate import Plan
from swiftcli.server.watch_eval import (
    FAILED,
    PENDING,
    PLAIN_WINDOW,
    PRIORITY_WINDOW,
    SCORED,
    SCORING_PRIORITY,
    CheckpointScorer,
    EngineBridge,
    WatchScoring,
)


@dataclass
class CountingEngine:
    """Answers every request after a few event-loop turns; records priorities and the most requests at once."""

    capabilities: EngineCapabilities
    backend: str = "fake"
    spec: Any = None
    hf_tokenizer: Any = None
    generation_config: Any = None
    max_model_len: int = 100
    running: int = 0
    most: int = 0
    priorities: list[int] = field(default_factory=list)

    async def generate(self, request: EngineRequest, *, guided: Any = None) -> Any:
        self.running += 1
        self.most = max(self.most, self.running)
        self.priorities.append(request.priority)
        for _ in range(3):
            await asyncio.sleep(0)
        self.running -= 1
        yield RequestResult(request.request_id, 1, [Completion(0, "ok", [1], "stop")], finished=True)


def drive(engine: CountingEngine, count: int) -> list[RequestResult]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        bridge = EngineBridge(engine, loop)
        requests = [EngineRequest([1, 2], GenerationConfig()) for _ in range(count)]
        results = list(bridge.stream(requests))
        assert bridge.sent == count
        return results
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.parametrize(("priority", "window", "sent"), [(True, PRIORITY_WINDOW, SCORING_PRIORITY),
                                                          (False, PLAIN_WINDOW, 0)])
def test_bridge_priority_and_window(priority: bool, window: int, sent: int) -> None:
    engine = CountingEngine(EngineCapabilities(priority_scheduling=priority))
    results = drive(engine, 12)
    assert len(results) == 12 and all(r.finished for r in results)
    assert engine.most == window and set(engine.priorities) == {sent}


@dataclass
class Ckpt:
    step: int | None
    loaded: bool = True
    metrics: dict[str, float] = field(default_factory=dict)


class Watcher:
    def __init__(self, **steps: int) -> None:
        self.checkpoints = {name.replace("_", "-"): Ckpt(step) for name, step in steps.items()}


def write_summary(folder: Path, key: str, rouge: float) -> None:
    folder.mkdir(parents=True)
    summary = {"settings": {"sweep_key": key}, "datasets": [{"name": "qa", "main_metric": "rouge_l",
                                                               "metrics": {"rouge_l": rouge, "bleu": 1.0}}]}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "samples.jsonl").write_text("")


def test_earlier_runs_are_read_back_with_the_same_key_and_best_breaks_ties_by_step(tmp_path: Path) -> None:
    scoring = WatchScoring(Plan(()), GenerationConfig(), {"sweep_key": "k1"}, tmp_path)
    write_summary(tmp_path / "checkpoint-30", "k1", 40.0)
    write_summary(tmp_path / "checkpoint-20", "k1", 40.0)
    write_summary(tmp_path / "checkpoint-10", "other", 90.0)
    scorer = CheckpointScorer(scoring, Watcher(checkpoint_30=30, checkpoint_20=20, checkpoint_10=10,
                                               checkpoint_40=40))
    scorer.sync()
    states = scorer.states
    assert states["checkpoint-20"].status == SCORED and states["checkpoint-20"].resumed
    assert states["checkpoint-10"].status == FAILED and "other datasets or settings" in (states["checkpoint-10"].error
                                                                                        or "")
    assert states["checkpoint-40"].status == PENDING
    assert scorer.best() == "checkpoint-20"  # 20 and 30 tie: the earlier step
    assert scorer.watcher.checkpoints["checkpoint-30"].metrics == {"qa/rouge_l": 40.0, "qa/bleu": 1.0}
    rows = scorer.annotate([{"id": "checkpoint-20", "step": 20}, {"id": "checkpoint-40", "step": 40}])
    assert rows[0]["best"] and rows[0]["score"] == 40.0 and rows[0]["main_metric"] == "qa/rouge_l"
    assert rows[1]["eval_status"] == PENDING and rows[1]["score"] is None and not rows[1]["best"]
    scorer.watcher.checkpoints["checkpoint-20"].loaded = False  # unloaded: out of the ranking
    scorer.sync()
    assert scorer.best() == "checkpoint-30"
