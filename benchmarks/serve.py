"""Serving benchmark: concurrent streaming chat clients against `swiftcli deploy` and vLLM's own OpenAI server.

Both servers run the same engine settings (the embedded model by default, float32, eager, VLLM_CPU_KVCACHE_SPACE)
one after the other; the load generator is asyncio + httpx (not the openai client), every request streams
`max_tokens` tokens (ignore_eos) so both servers do the same work. Prints output tok/s, TTFT, TPOT and ITL
per server and the swiftcli/vLLM ratios; writes JSON under benchmarks/results/.

    python benchmarks/serve.py                      # 64 clients x 64 prompts x 64 tokens, both servers
    python benchmarks/serve.py --only swiftcli --num_prompts 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TOPICS = ["a lighthouse", "a lost key", "the moon", "a city at night", "a old map", "a robot", "the sea",
          "a mountain village", "a library", "a train journey", "a garden", "a storm", "a painter", "a river"]


@dataclass
class RequestStats:
    ok: bool
    ttft: float = 0.0
    e2e: float = 0.0
    output_tokens: int = 0
    itl: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def one_request(client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int
                      ) -> RequestStats:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    stats = RequestStats(ok=False)
    last = None
    done = False
    async with client.stream("POST", url, json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return stats
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                stats.output_tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    if last is None:
                        stats.ttft = now - start
                    else:
                        stats.itl.append(now - last)
                    last = now
    stats.e2e = time.perf_counter() - start
    stats.ok = done and stats.output_tokens > 0
    return stats


async def run_load(base_url: str, model: str, num_prompts: int, concurrency: int, max_tokens: int) -> dict:
    url = f"{base_url}/v1/chat/completions"
    prompts = [f"Write a short story about {TOPICS[i % len(TOPICS)]} (story {i})." for i in range(num_prompts)]
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
        # Warm-up, not measured.
        await asyncio.gather(*(one_request(client, url, model, "Hello!", 8) for _ in range(4)))
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(prompt: str) -> RequestStats:
            async with semaphore:
                return await one_request(client, url, model, prompt, max_tokens)

        start = time.perf_counter()
        results = await asyncio.gather(*(bounded(p) for p in prompts))
        wall = time.perf_counter() - start
    good = [r for r in results if r.ok]
    tokens = sum(r.output_tokens for r in good)
    tpot = [(r.e2e - r.ttft) / (r.output_tokens - 1) for r in good if r.output_tokens > 1]
    itl = [x for r in good for x in r.itl]
    return {
        "requests": num_prompts, "completed": len(good), "failed": num_prompts - len(good),
        "wall_s": wall, "output_tokens": tokens, "output_tok_s": tokens / wall if wall else 0.0,
        "ttft_p50_s": percentile([r.ttft for r in good], 0.5), "ttft_p99_s": percentile([r.ttft for r in good], 0.99),
        "tpot_mean_s": statistics.fmean(tpot) if tpot else float("nan"),
        "itl_p50_s": percentile(itl, 0.5), "itl_p99_s": percentile(itl, 0.99),
    }


def wait_healthy(process: subprocess.Popen, base_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError("the server did not become healthy")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


def server_command(kind: str, model_dir: str, model: str, port: int, max_num_seqs: int) -> list[str]:
    if kind == "swiftcli":
        return [sys.executable, "-m", "swiftcli.cli", "deploy", "--port", str(port), "--model", model_dir,
                "--served_model_name", model, "--max_num_seqs", str(max_num_seqs)]
    # vLLM's server gets exactly the engine arguments swiftcli's deploy computes on this platform.
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
            "--served-model-name", model, "--port", str(port), "--host", "127.0.0.1",
            *vllm_flags(model_dir, max_num_seqs), "--disable-log-stats", "--disable-uvicorn-access-log"]


def vllm_flags(model_dir: str, max_num_seqs: int) -> list[str]:
    from swiftcli.config import EngineConfig, resolve_model
    from swiftcli.engines.vllm import engine_args

    args = engine_args(resolve_model(model_id_or_path=model_dir), EngineConfig(max_num_seqs=max_num_seqs))
    flags: list[str] = []
    for key, value in args.items():
        if key in ("model", "tokenizer") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def bench(kind: str, args: argparse.Namespace, model_dir: str) -> dict:
    port = args.port + (0 if kind == "swiftcli" else 1)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "VLLM_LOGGING_LEVEL": "WARNING"}
    log = (RESULTS / f"serve-{kind}.log").open("wb")
    process = subprocess.Popen(server_command(kind, model_dir, args.model, port, args.max_num_seqs),
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base_url, 600)
        return asyncio.run(run_load(base_url, args.model, args.num_prompts, args.concurrency, args.max_tokens))
    finally:
        stop(process)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_prompts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--max_num_seqs", type=int, default=64)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="served model name")
    parser.add_argument("--model_dir", default=None, help="default: the embedded model")
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--only", choices=["swiftcli", "vllm"], default=None)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    model_dir = args.model_dir
    if model_dir is None:
        from swiftcli.config import resolve_model

        model_dir = str(resolve_model().model_dir)
    kinds = [args.only] if args.only else ["vllm", "swiftcli"]
    results = {kind: bench(kind, args, model_dir) for kind in kinds}
    rows = [("output tok/s", "output_tok_s", 1), ("TTFT p50 (ms)", "ttft_p50_s", 1000),
            ("TTFT p99 (ms)", "ttft_p99_s", 1000), ("TPOT mean (ms)", "tpot_mean_s", 1000),
            ("ITL p50 (ms)", "itl_p50_s", 1000), ("ITL p99 (ms)", "itl_p99_s", 1000),
            ("completed", "completed", 1), ("wall (s)", "wall_s", 1)]
    header = f"{'metric':<16}" + "".join(f"{k:>12}" for k in kinds)
    if len(kinds) == 2:
        header += f"{'ratio':>10}"
    print(f"{args.num_prompts} streaming chat requests x {args.max_tokens} tokens, {args.concurrency} at once")
    print(header)
    for label, key, scale in rows:
        line = f"{label:<16}" + "".join(f"{results[k][key] * scale:>12.1f}" for k in kinds)
        if len(kinds) == 2 and results["vllm"][key]:
            line += f"{results['swiftcli'][key] / results['vllm'][key]:>10.2f}"
        print(line)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "settings": asdict_args(args, model_dir),
              "results": results}
    if len(kinds) == 2:
        record["ratios"] = {"output_tok_s": results["swiftcli"]["output_tok_s"] / results["vllm"]["output_tok_s"],
                            "ttft_p50": results["swiftcli"]["ttft_p50_s"] / results["vllm"]["ttft_p50_s"]}
        print(f"targets: tok/s ratio >= 0.95 ({record['ratios']['output_tok_s']:.2f}), "
              f"TTFT p50 ratio <= 1.1 ({record['ratios']['ttft_p50']:.2f})")
    out = RESULTS / f"serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


def asdict_args(args: argparse.Namespace, model_dir: str) -> dict:
    return {**vars(args), "model_dir": model_dir, "kv_cache_gib": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}


if __name__ == "__main__":
    main()


__all__ = ["asdict", "run_load"]
