"""What background scoring costs people: `deploy --watch` latency with and without `--eval_dataset`.

One training-run folder with LoRA checkpoints and one generation dataset. Three servers, one after the other, on
the embedded model: `--watch` alone (no scoring); `--watch --eval_dataset` (scoring below people: vLLM priority
scheduling, a few scoring requests in flight); the same with `--engine_kwargs '{"scheduling_policy": "fcfs"}'`
(no priorities: scoring one request at a time). In the scoring runs the load starts once a checkpoint is being
scored, and the run records whether scoring was still going when the load ended. The load: `--requests`
streaming chat requests to `base` from `--concurrency` clients, `--max_tokens` tokens each (ignore_eos).
Prints TTFT and total latency p50/p99 per setup, writes JSON.

    python benchmarks/watch_latency.py                       # 3 checkpoints, 24 rows, 40 requests, 2 clients
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from serve import RESULTS, one_request, percentile, versions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's checkpoint maker and server starter

from checkpoints import make_lora_adapter  # noqa: E402
from server_utils import start_server  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "Say hello in French.",
             "What is 2 plus 3?", "Name a fruit that is yellow.", "What do bees make?",
             "What is the opposite of hot?", "Name a planet.", "What colour is the sky?", "Count to three."]
SETUPS = {"no scoring": [], "scoring, priority": ["--eval_dataset", "{data}"],
          "scoring, fcfs (1 in flight)": ["--eval_dataset", "{data}", "--engine_kwargs",
                                          '{"scheduling_policy": "fcfs"}']}


def make_inputs(root: Path, checkpoints: int, rows: int) -> tuple[Path, Path]:
    from swiftcli.hub.resolve import resolve_model

    base = resolve_model().model_dir
    root.mkdir(parents=True, exist_ok=True)
    data = root / "qa.jsonl"
    data.write_text("".join(json.dumps({"query": QUESTIONS[i % len(QUESTIONS)] + f" ({i})", "response": "Paris"})
                            + "\n" for i in range(rows)))
    run = root / "run"
    for i in range(checkpoints):
        make_lora_adapter(base, run / f"checkpoint-{(i + 1) * 10}", seed=i, scale=0.01 * (i + 1))
    return data, run


def table(http: httpx.Client) -> dict[str, Any]:
    return http.get("/v1/checkpoints").json()


def wait(http: httpx.Client, done: Any, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = table(http)
        if done(current):
            return current
        time.sleep(0.25)
    raise TimeoutError(f"the checkpoint table did not reach the state: {table(http)}")


async def load(base_url: str, requests: int, concurrency: int, max_tokens: int) -> list[Any]:
    url = f"{base_url}/chat/completions"
    async with httpx.AsyncClient(timeout=httpx.Timeout(600)) as client:
        await one_request(client, url, "base", "Hello!", 4)  # warm-up, not measured
        gate = asyncio.Semaphore(concurrency)

        async def bounded(i: int) -> Any:
            async with gate:
                return await one_request(client, url, "base", f"Tell me about {QUESTIONS[i % 10]}", max_tokens)

        return list(await asyncio.gather(*(bounded(i) for i in range(requests))))


def measure(name: str, extra: list[str], run: Path, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    flags = ["--watch", str(run), "--served_model_name", "base", "--max_lora_rank", "8",
             "--max_new_tokens", str(args.eval_tokens), *[a.replace("{data}", str(data)) for a in extra]]
    server = start_server(flags, timeout=900)
    try:
        with httpx.Client(base_url=server.root_url, timeout=60) as http:
            if extra:
                wait(http, lambda t: any(r.get("eval_status") == "scoring" for r in t["data"]))
            else:
                wait(http, lambda t: t["latest"] is not None)
            start = time.perf_counter()
            results = asyncio.run(load(server.base_url, args.requests, args.concurrency, args.max_tokens))
            wall = time.perf_counter() - start
            after = table(http)
    finally:
        server.stop()
    good = [r for r in results if r.ok]
    statuses = [r.get("eval_status") for r in after["data"]]
    return {"setup": name, "flags": flags, "requests": len(results), "ok": len(good), "wall_s": round(wall, 2),
            "ttft_p50_ms": percentile([r.ttft for r in good], 0.5) * 1000,
            "ttft_p99_ms": percentile([r.ttft for r in good], 0.99) * 1000,
            "total_p50_ms": percentile([r.e2e for r in good], 0.5) * 1000,
            "total_p99_ms": percentile([r.e2e for r in good], 0.99) * 1000,
            "scoring_during_whole_load": bool(extra) and any(s in ("scoring", "pending") for s in statuses),
            "eval_status_after": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--eval_tokens", type=int, default=64, help="new tokens per scored row")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument("--work_dir", default="/tmp/swiftcli-watch-latency")
    parser.add_argument("--output")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    root = Path(args.work_dir) / time.strftime("%Y%m%d-%H%M%S")
    data, run = make_inputs(root, args.checkpoints, args.rows)
    runs = []
    for name, extra in SETUPS.items():
        folder = root / name.split(",")[0].replace(" ", "-") / str(len(runs))
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Each setup scores from scratch: its own copy of the run folder (no earlier results to read back).
        shutil.copytree(run, folder)
        runs.append(measure(name, extra, folder, data, args))
        print(f"{name}: done", file=sys.stderr)
    print(f"{'setup':<30} {'ok':>5} {'TTFT p50':>9} {'TTFT p99':>9} {'total p50':>10} {'total p99':>10} scoring")
    for r in runs:
        print(f"{r['setup']:<30} {r['ok']:>5} {r['ttft_p50_ms']:>7.0f}ms {r['ttft_p99_ms']:>7.0f}ms "
              f"{r['total_p50_ms']:>8.0f}ms {r['total_p99_ms']:>8.0f}ms {r['scoring_during_whole_load']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.output) if args.output else RESULTS / f"watch-latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "versions": versions(), "runs": runs}, indent=2, default=str))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
