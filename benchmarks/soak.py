"""Soak test for `swiftcli deploy`: many requests over a few minutes, some malformed, some abandoned mid-stream.

Every complete request is checked for a whole answer (finish_reason, text, [DONE] for streams). Pass criteria:
0 responses with 5xx, 0 lost requests, server RSS at the end within 10% of RSS after warm-up. Prints the counts
and writes JSON under benchmarks/results/.

    python benchmarks/soak.py                       # 2,000 requests, 32 at once
    python benchmarks/soak.py --requests 200 --url http://127.0.0.1:8000   # against a running server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MODEL = "smollm2-135m-instruct"

MALFORMED = [
    ("chat", b"{not json"),
    ("chat", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "temperature": -1}),
    ("chat", {"model": MODEL}),
    ("chat", {"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]}),
    ("chat", {"model": MODEL, "messages": [{"role": "assistant", "content": "Hi"}]}),
    ("completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 100000}),
    ("completions", {"model": MODEL, "prompt": [], "max_tokens": 4}),
    ("chat", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "n": 2, "temperature": 0}),
]


async def malformed(client: httpx.AsyncClient, rng: random.Random) -> str:
    path, body = rng.choice(MALFORMED)
    url = f"/v1/{'chat/completions' if path == 'chat' else 'completions'}"
    if isinstance(body, bytes):
        resp = await client.post(url, content=body, headers={"content-type": "application/json"})
    else:
        resp = await client.post(url, json=body)
    if resp.status_code >= 500:
        return "5xx"
    ok = 400 <= resp.status_code < 500 and "error" in resp.json()
    return "rejected" if ok else "lost"


async def abandoned(client: httpx.AsyncClient, i: int) -> str:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Write a long essay, part {i}."}],
            "max_tokens": 400, "stream": True}
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code >= 500:
            return "5xx"
        seen = 0
        async for line in resp.aiter_lines():
            if line.startswith("data: {"):
                seen += 1
                if seen == 3:
                    break
    return "abandoned"


async def complete(client: httpx.AsyncClient, i: int, rng: random.Random) -> str:
    stream = rng.random() < 0.5
    if rng.random() < 0.7:
        path = "/v1/chat/completions"
        body: dict = {"model": MODEL, "messages": [{"role": "user", "content": f"Say something about {i}."}]}
    else:
        path = "/v1/completions"
        body = {"model": MODEL, "prompt": f"Number {i} is"}
    body.update(max_tokens=rng.randint(4, 24), stream=stream, temperature=rng.choice([0, 0.7]))
    if not stream:
        resp = await client.post(path, json=body)
        if resp.status_code >= 500:
            return "5xx"
        if resp.status_code != 200:
            return "lost"
        data = resp.json()
        choice = data["choices"][0]
        text = choice.get("text") if "text" in choice else choice["message"]["content"]
        good = choice["finish_reason"] in ("stop", "length") and text is not None and data["usage"]["total_tokens"]
        return "ok" if good else "lost"
    finish, done = None, False
    async with client.stream("POST", path, json=body) as resp:
        if resp.status_code >= 500:
            return "5xx"
        if resp.status_code != 200:
            return "lost"
        async for line in resp.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: {"):
                for choice in json.loads(line[6:]).get("choices") or []:
                    finish = choice.get("finish_reason") or finish
    return "ok" if done and finish in ("stop", "length") else "lost"


def rss_mb(pid: int) -> float:
    """Resident memory of the server process (the API process; the engine core is a child with its own)."""
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


async def soak(base_url: str, total: int, concurrency: int, seed: int, server_pid: int | None) -> dict:
    rng = random.Random(seed)
    kinds = ["malformed"] * (total // 10) + ["abandoned"] * (total // 10)
    kinds += ["complete"] * (total - len(kinds))
    rng.shuffle(kinds)
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(300), limits=limits) as client:
        async def run(i: int, kind: str) -> None:
            try:
                if kind == "malformed":
                    counts[await malformed(client, rng)] += 1
                elif kind == "abandoned":
                    counts[await abandoned(client, i)] += 1
                else:
                    counts[await complete(client, i, rng)] += 1
            except Exception as exc:  # a request that got no proper answer
                counts["lost"] += 1
                errors[type(exc).__name__] += 1

        warmup = 50
        await asyncio.gather(*(complete(client, -i, rng) for i in range(warmup)))
        await asyncio.sleep(1)
        rss_start = rss_mb(server_pid) if server_pid else None
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        for item in enumerate(kinds):
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty():
                i, kind = queue.get_nowait()
                await run(i, kind)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        await asyncio.sleep(2)
        rss_end = rss_mb(server_pid) if server_pid else None
        unfinished = None
        metrics = (await client.get("/metrics")).text
        for line in metrics.splitlines():
            if line.startswith("swiftcli_engine_unfinished_requests "):
                unfinished = float(line.split()[1])
    result = {"requests": total, "concurrency": concurrency, "wall_s": wall, "counts": dict(counts),
              "errors": dict(errors), "rss_after_warmup_mb": rss_start, "rss_end_mb": rss_end,
              "engine_unfinished_at_end": unfinished}
    if rss_start and rss_end:
        result["rss_growth"] = rss_end / rss_start - 1
    result["passed"] = (counts["5xx"] == 0 and counts["lost"] == 0 and unfinished in (None, 0.0)
                        and (result.get("rss_growth") is None or result["rss_growth"] <= 0.10))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=18720)
    parser.add_argument("--url", default=None, help="a running server (RSS is then not measured)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    process = None
    base_url = args.url
    if base_url is None:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
               "VLLM_LOGGING_LEVEL": "WARNING"}
        log = (RESULTS / "soak-server.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "swiftcli.cli", "deploy", "--port", str(args.port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        base_url = f"http://127.0.0.1:{args.port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start; see benchmarks/results/soak-server.log")
            time.sleep(1)
    try:
        result = asyncio.run(soak(base_url, args.requests, args.concurrency, args.seed,
                                  process.pid if process else None))
    finally:
        if process is not None:
            os.kill(process.pid, signal.SIGTERM)
            result_code = process.wait(120)
            print(f"server exit code after SIGTERM: {result_code}")
    counts = result["counts"]
    print(f"{result['requests']} requests, {result['concurrency']} at once, {result['wall_s']:.0f} s")
    for key in ("ok", "rejected", "abandoned", "5xx", "lost"):
        print(f"  {key:<10}{counts.get(key, 0):>6}")
    if result["errors"]:
        print(f"  client-side errors: {result['errors']}")
    if result.get("rss_growth") is not None:
        print(f"  server RSS: {result['rss_after_warmup_mb']:.0f} MiB after warm-up -> {result['rss_end_mb']:.0f} MiB "
              f"at the end ({result['rss_growth'] * 100:+.1f}%)")
    print(f"  engine requests left at the end: {result['engine_unfinished_at_end']}")
    print("PASSED" if result["passed"] else "FAILED")
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
