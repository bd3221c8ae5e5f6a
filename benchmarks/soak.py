"""Soak test for `swiftcli deploy`: many requests over a few minutes, 10% malformed, 10% abandoned mid-stream and
5% hostile (an oversize body, lone surrogates as escapes and as UTF-8 bytes, a seed beyond int64, a huge top_k,
too many stops or prompts).

Every complete request is checked for a whole answer (finish_reason, text, [DONE] for streams). Pass criteria:
0 responses with 5xx, 0 lost requests, the running/waiting/engine-unfinished gauges back to 0 within 30 s, and
server RSS at the end within 10% of RSS after warm-up. Prints the counts and the RSS curve, and writes JSON
under benchmarks/results/.

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


HI = [{"role": "user", "content": "Hi"}]
HOSTILE: list[tuple[str, bytes]] = [
    ("completions", json.dumps({"model": MODEL, "prompt": "a" * (3 * 2**20), "max_tokens": 1}).encode()),
    ("chat", json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi \ud800"}]}).encode()),
    ("chat", b'{"model": "%s", "messages": [{"role": "user", "content": "Hi \xed\xa0\x80"}]}' % MODEL.encode()),
    ("completions", json.dumps({"model": MODEL, "prompt": ["ok", "\udfff"]}).encode()),
    ("chat", json.dumps({"model": MODEL, "messages": HI, "seed": 2**64 + 1}).encode()),
    ("chat", json.dumps({"model": MODEL, "messages": HI, "top_k": 10**12}).encode()),
    ("chat", json.dumps({"model": MODEL, "messages": HI, "stop": [str(i) for i in range(50)]}).encode()),
    ("completions", json.dumps({"model": MODEL, "prompt": ["p"] * 1000, "max_tokens": 1}).encode()),
]


async def hostile(client: httpx.AsyncClient, rng: random.Random) -> str:
    path, body = rng.choice(HOSTILE)
    url = f"/v1/{'chat/completions' if path == 'chat' else 'completions'}"
    resp = await client.post(url, content=body, headers={"content-type": "application/json"})
    if resp.status_code >= 500:
        return "5xx"
    ok = resp.status_code in (400, 413) and "error" in resp.json()
    return "refused" if ok else "lost"


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


def rss_tree_mb(pid: int) -> float:
    """The server and its children (the engine core)."""
    import psutil

    root = psutil.Process(pid)
    total = root.memory_info().rss
    for child in root.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


async def sample_rss(pid: int, start: float, curve: list[list[float]], every: float = 10.0) -> None:
    while True:
        curve.append([round(time.perf_counter() - start, 1), round(rss_mb(pid), 1), round(rss_tree_mb(pid), 1)])
        await asyncio.sleep(every)


GAUGES = ("swiftcli_num_requests_running", "swiftcli_num_requests_waiting", "swiftcli_engine_unfinished_requests")


async def gauges(client: httpx.AsyncClient) -> dict[str, float]:
    values = {}
    for line in (await client.get("/metrics")).text.splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            values[name] = float(value)
    return values


async def settle(client: httpx.AsyncClient, timeout: float = 30.0) -> tuple[dict[str, float], float]:
    """The gauges once they are all 0 (or at the timeout), and how long that took."""
    start = time.perf_counter()
    while True:
        values = await gauges(client)
        if all(v == 0 for v in values.values()) or time.perf_counter() - start > timeout:
            return values, time.perf_counter() - start
        await asyncio.sleep(0.5)


async def soak(base_url: str, total: int, concurrency: int, seed: int, server_pid: int | None) -> dict:
    rng = random.Random(seed)
    kinds = ["malformed"] * (total // 10) + ["abandoned"] * (total // 10) + ["hostile"] * (total // 20)
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
                elif kind == "hostile":
                    counts[await hostile(client, rng)] += 1
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
        curve: list[list[float]] = []
        sampler = asyncio.ensure_future(sample_rss(server_pid, start, curve)) if server_pid else None
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        left, settle_s = await settle(client)
        await asyncio.sleep(2)
        if sampler is not None:
            sampler.cancel()
            curve.append([round(time.perf_counter() - start, 1), round(rss_mb(server_pid), 1),
                          round(rss_tree_mb(server_pid), 1)])
        rss_end = rss_mb(server_pid) if server_pid else None
    unfinished = left.get("swiftcli_engine_unfinished_requests")
    result = {"requests": total, "concurrency": concurrency, "wall_s": wall, "counts": dict(counts),
              "errors": dict(errors), "rss_after_warmup_mb": rss_start, "rss_end_mb": rss_end,
              "engine_unfinished_at_end": unfinished, "gauges_at_end": left, "gauges_settled_s": settle_s,
              "rss_curve": {"columns": ["seconds", "api_mb", "api_and_engine_mb"], "points": curve}}
    if rss_start and rss_end:
        result["rss_growth"] = rss_end / rss_start - 1
    result["passed"] = (counts["5xx"] == 0 and counts["lost"] == 0 and all(v == 0 for v in left.values())
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
    for key in ("ok", "rejected", "refused", "abandoned", "5xx", "lost"):
        print(f"  {key:<10}{counts.get(key, 0):>6}")
    if result["errors"]:
        print(f"  client-side errors: {result['errors']}")
    if result.get("rss_growth") is not None:
        print(f"  server RSS: {result['rss_after_warmup_mb']:.0f} MiB after warm-up -> {result['rss_end_mb']:.0f} MiB "
              f"at the end ({result['rss_growth'] * 100:+.1f}%)")
    print(f"  gauges {result['gauges_settled_s']:.1f} s after the last request: {result['gauges_at_end']}")
    points = result["rss_curve"]["points"]
    if points:
        print("  RSS curve (s, API MiB, API + engine MiB):")
        for t, api, tree in points:
            print(f"    {t:>7.0f} {api:>8.0f} {tree:>8.0f}")
    print("PASSED" if result["passed"] else "FAILED")
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
