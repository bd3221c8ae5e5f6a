"""Serving benchmark: concurrent streaming chat clients against `swiftcli deploy` and vLLM's own OpenAI server.

Both servers get identical engine arguments (swiftcli's `engine_args` for the model, `--tensor_parallel_size` and
`--engine_kwargs`, passed to vLLM's server as flags) and each keeps its own scheduler defaults, which are reported
(vLLM's server: what vLLM resolves for its server; swiftcli: what its engine logs under -v). Both servers are
started once, one after the other, and stay up; the load then alternates between them, level by level, pass by
pass, and the medians over the passes are reported (single runs on a GPU vary by +-12%). The load generator is
asyncio + httpx; every request streams `max_tokens` tokens (ignore_eos), so both servers do the same work.
Prints output tok/s, TTFT p50/p99, TPOT, ITL and the API process's CPU time per 1,000 streamed tokens (the event
loop's work, engine core excluded) per server and level with the swiftcli/vLLM ratios; writes JSON.

    python benchmarks/serve.py                                   # embedded model, 64 clients, 2 passes
    python benchmarks/serve.py --model /tmp/qwen2.5-vl-7b --images_per_request 1 --image_size 448 ...  # images
    python benchmarks/serve.py --model /tmp/llama-8b-shape --engine_kwargs '{"load_format": "dummy",
        "gpu_memory_utilization": 0.45}' --tensor_parallel_size 2 --concurrency 1,16,64,128,256 --max_tokens 256

With `--images_per_request N`, every request carries N different images (seeded noise, PNG data URIs, the same
set for both servers, made before the load) as OpenAI `image_url` parts, and requests/s is reported beside tok/s.

Two servers share the accelerators while both are up: give each at most half (`gpu_memory_utilization`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil

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


def image_uris(count: int, size: int, seed: int = 0) -> list[str]:
    """`count` different noise images of size x size pixels as PNG data URIs (no two alike: no cache hits)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    uris = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        uris.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return uris


def user_content(prompt: str, images: list[str]) -> str | list[dict]:
    if not images:
        return prompt
    return [*({"type": "image_url", "image_url": {"url": uri}} for uri in images), {"type": "text", "text": prompt}]


async def one_request(client: httpx.AsyncClient, url: str, model: str, prompt: str | list[dict], max_tokens: int,
                      ignore_eos: bool = True) -> RequestStats:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": ignore_eos, "stream": True, "stream_options": {"include_usage": True}}
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


async def run_load(base_url: str, model: str, num_prompts: int, concurrency: int, max_tokens: int,
                   ignore_eos: bool = True, images: list[str] | None = None, images_per_request: int = 0) -> dict:
    url = f"{base_url}/v1/chat/completions"
    texts = [f"Write a short story about {TOPICS[i % len(TOPICS)]} (story {i})." for i in range(num_prompts)]
    pool = images or []
    per = images_per_request
    prompts = [user_content(text, [pool[(i * per + k) % len(pool)] for k in range(per)] if pool else [])
               for i, text in enumerate(texts)]
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
        # Warm-up, not measured.
        await asyncio.gather(*(one_request(client, url, model, "Hello!", 8) for _ in range(4)))
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(prompt: str | list[dict]) -> RequestStats:
            async with semaphore:
                return await one_request(client, url, model, prompt, max_tokens, ignore_eos)

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
        "requests_s": len(good) / wall if wall else 0.0,
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


@dataclass(frozen=True)
class Setup:
    """What both servers share: the model, the parallel size and the extra engine arguments."""

    model_dir: str
    served_model_name: str = "bench"
    tensor_parallel_size: int = 1
    engine_kwargs: dict = field(default_factory=dict)
    max_num_seqs: int | None = None  # None: each server's own default
    swiftcli_args: tuple[str, ...] = ()  # extra deploy arguments of the measured swiftcli side only

    def config(self) -> object:
        from swiftcli.config import EngineConfig

        return EngineConfig(tensor_parallel_size=self.tensor_parallel_size, max_num_seqs=self.max_num_seqs,
                            engine_kwargs=dict(self.engine_kwargs))

    def engine_args(self) -> dict:
        from swiftcli.engines.vllm import engine_args
        from swiftcli.hub.resolve import resolve_model

        return engine_args(resolve_model(model_id_or_path=self.model_dir), self.config())


def server_command(kind: str, setup: Setup, port: int) -> list[str]:
    if kind.startswith("swiftcli"):
        cmd = [sys.executable, "-m", "swiftcli.cli", "-v", "deploy", "--port", str(port), "--model", setup.model_dir,
               "--served_model_name", setup.served_model_name,
               "--tensor_parallel_size", str(setup.tensor_parallel_size)]
        if setup.max_num_seqs is not None:
            cmd += ["--max_num_seqs", str(setup.max_num_seqs)]
        if setup.engine_kwargs:
            cmd += ["--engine_kwargs", json.dumps(setup.engine_kwargs)]
        return cmd + list(setup.swiftcli_args) if kind == "swiftcli" else cmd
    # vLLM's server gets exactly the engine arguments swiftcli's deploy computes on this platform.
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", setup.model_dir,
            "--served-model-name", setup.served_model_name, "--port", str(port), "--host", "127.0.0.1",
            *vllm_flags(setup.engine_args()), "--disable-log-stats", "--disable-uvicorn-access-log"]


def vllm_flags(args: dict) -> list[str]:
    flags: list[str] = []
    for key, value in args.items():
        if key in ("model", "tokenizer") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, dict | list):
            value = json.dumps(value)
        flags += [flag] if value is True else [flag, str(value)]
    return flags


SCHEDULER_LINE = re.compile(r"max_num_seqs=(\d+) max_num_batched_tokens=(\d+)")


def scheduler_settings(kind: str, setup: Setup, log: Path) -> dict:
    """Each side's effective budgets: swiftcli's from its own log line, vLLM's server's as vLLM resolves them
    for its server (the same resolution its server runs at start-up)."""
    if kind.startswith("swiftcli"):
        found = SCHEDULER_LINE.findall(log.read_text(errors="replace"))
        if not found:
            return {}
        seqs, tokens = found[-1]
        return {"max_num_seqs": int(seqs), "max_num_batched_tokens": int(tokens)}
    from swiftcli.engines.scheduler import SERVER, planned_limits

    limits = planned_limits(setup.engine_args(), SERVER)
    return {"max_num_seqs": limits.max_num_seqs, "max_num_batched_tokens": limits.max_num_batched_tokens}


@dataclass
class Running:
    kind: str
    process: subprocess.Popen
    base_url: str
    log: Path
    scheduler: dict = field(default_factory=dict)


def same_layout(setup: Setup) -> dict[str, str]:
    """The process layout swiftcli's deploy picks, for vLLM's server too: on CPU one worker runs inside the engine
    core (engines.parallel.worker_in_process), so both sides start the same processes."""
    from swiftcli.config.distributed import is_distributed
    from swiftcli.engines.parallel import MULTIPROCESSING_VARIABLE, worker_in_process
    from swiftcli.engines.vllm import platform_defaults

    with worker_in_process(setup.engine_args(), is_cpu=platform_defaults().is_cpu,
                           distributed=is_distributed(setup.config())):
        chosen = os.environ.get(MULTIPROCESSING_VARIABLE)
    return {} if chosen is None else {MULTIPROCESSING_VARIABLE: chosen}


def start(kind: str, setup: Setup, port: int, timeout: float) -> Running:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "VLLM_LOGGING_LEVEL": "WARNING", **(same_layout(setup) if kind == "vllm" else {})}
    log = RESULTS / f"serve-{kind}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(server_command(kind, setup, port), stdout=handle, stderr=subprocess.STDOUT,
                                   env=env, cwd=ROOT)
    server = Running(kind, process, f"http://127.0.0.1:{port}", log)
    t = time.perf_counter()
    try:
        wait_healthy(process, server.base_url, timeout)
    except BaseException:
        stop(process)
        print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    server.scheduler = {**scheduler_settings(kind, setup, log), "startup_s": round(time.perf_counter() - t, 1),
                        "child_processes": sorted(c.name() for c in psutil.Process(process.pid).children(True))}
    print(f"{kind} up in {server.scheduler['startup_s']} s: {server.scheduler}", flush=True)
    return server


def requests_for(concurrency: int, args: argparse.Namespace) -> int:
    return args.num_prompts or max(args.min_requests, concurrency * args.requests_per_client)


def alternate(servers: list[Running], args: argparse.Namespace, levels: list[int]) -> dict:
    """passes x levels x servers, the server order flipped every pass; {kind: {level: [run, ...]}}."""
    runs: dict = {s.kind: {c: [] for c in levels} for s in servers}
    wanted = args.images_per_request * max(requests_for(c, args) for c in levels)
    images = image_uris(wanted, args.image_size) if wanted else []
    for p in range(args.passes):
        for c in levels:
            for server in servers if p % 2 == 0 else servers[::-1]:
                busy = api_cpu_seconds(server.process)
                with client_gc(args.client_gc) as pauses:
                    result = asyncio.run(run_load(server.base_url, args.served_model_name, requests_for(c, args), c,
                                                  args.max_tokens, args.ignore_eos, images,
                                                  args.images_per_request))
                busy = api_cpu_seconds(server.process) - busy
                result["api_cpu_ms_per_1k_tok"] = 1e6 * busy / max(result["output_tokens"], 1)
                result["client_gc_max_pause_ms"] = 1000 * max(pauses, default=0.0)
                runs[server.kind][c].append(result)
                print(f"pass {p + 1} c={c:<4} {server.kind:<9} {result['output_tok_s']:>9.1f} tok/s  "
                      f"{result['requests_s']:6.2f} req/s  "
                      f"TTFT p50 {result['ttft_p50_s'] * 1000:7.1f} p99 {result['ttft_p99_s'] * 1000:7.1f} ms  "
                      f"API CPU {result['api_cpu_ms_per_1k_tok']:6.1f} ms/1k tok  "
                      f"client GC {result['client_gc_max_pause_ms']:5.0f} ms  failed {result['failed']}",
                      flush=True)
    return runs


@contextmanager
def client_gc(enabled: bool) -> Iterator[list[float]]:
    """The load generator's own garbage collector, on or off while one load runs; yields the pauses it made.

    This process imports vLLM (for the scheduler settings), so a full collection here stalls its event loop for
    hundreds of milliseconds, and every stream in flight reads its next token late: a TTFT p99 stall charged to
    whichever server was being measured. Off (the default), collections run between loads instead.
    """
    pauses: list[float] = []
    started: list[float] = []

    def probe(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append(time.perf_counter() - started.pop())

    if not enabled:
        gc.collect()
        gc.disable()
    gc.callbacks.append(probe)  # after that collection: only pauses inside the load are counted
    try:
        yield pauses
    finally:
        gc.enable()
        gc.callbacks.remove(probe)


def api_cpu_seconds(process: subprocess.Popen) -> float:
    """CPU time of the server's API process alone (user + system; its engine-core child is not counted): the
    work on the event loop per token, which decides how fast a busy server answers a new request."""
    times = psutil.Process(process.pid).cpu_times()
    return float(times.user + times.system)


METRICS = [("out tok/s", "output_tok_s", 1), ("requests/s", "requests_s", 1), ("TTFT p50 ms", "ttft_p50_s", 1000),
           ("TTFT p99 ms", "ttft_p99_s", 1000),
           ("TPOT ms", "tpot_mean_s", 1000), ("ITL p50 ms", "itl_p50_s", 1000), ("ITL p99 ms", "itl_p99_s", 1000),
           ("API CPU ms/1k", "api_cpu_ms_per_1k_tok", 1), ("client GC ms", "client_gc_max_pause_ms", 1)]


def medians(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for _, key, _ in METRICS} | {
        "completed": sum(r["completed"] for r in runs), "failed": sum(r["failed"] for r in runs)}


def report(runs: dict, levels: list[int]) -> dict:
    summary = {kind: {c: medians(per_level[c]) for c in levels} for kind, per_level in runs.items()}
    kinds = list(summary)
    reference = kinds[0]
    print(f"\nmedians over the passes ({', '.join(kinds)}"
          + (f"; ratio = swiftcli / {reference})" if len(kinds) == 2 else ")"))
    ratio = "   ratio" if len(kinds) == 2 else ""
    print(f"{'clients':>7} {'metric':<12}" + "".join(f"{k:>11}" for k in kinds) + ratio)
    for c in levels:
        for label, key, scale in METRICS:
            line = f"{c:>7} {label:<12}" + "".join(f"{summary[k][c][key] * scale:>11.1f}" for k in kinds)
            if len(kinds) == 2 and summary[reference][c][key]:
                line += f"{summary['swiftcli'][c][key] / summary[reference][c][key]:>8.2f}"
            print(line)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--served_model_name", default="bench")
    parser.add_argument("--tensor_parallel_size", type=int, default=1)
    parser.add_argument("--engine_kwargs", default="{}", help='extra engine arguments as JSON, both servers')
    parser.add_argument("--max_num_seqs", type=int, default=None, help="default: each server's own default")
    parser.add_argument("--concurrency", default="64", help="comma list of client counts, e.g. 1,16,64,128,256")
    parser.add_argument("--requests_per_client", type=int, default=2)
    parser.add_argument("--min_requests", type=int, default=8)
    parser.add_argument("--num_prompts", type=int, default=None, help="requests per level (overrides the above)")
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--ignore_eos", type=lambda v: v.lower() in ("1", "true", "yes"), default=True)
    parser.add_argument("--passes", type=int, default=2, help="alternations; medians are reported")
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--client_gc", type=lambda v: v.lower() in ("1", "true", "yes", "on"), default=False,
                        help="keep the load generator's garbage collector on while measuring (default: off)")
    parser.add_argument("--images_per_request", type=int, default=0, help="images in each request (default: text)")
    parser.add_argument("--image_size", type=int, default=448, help="side of each square image, in pixels")
    parser.add_argument("--only", choices=["swiftcli", "vllm"], default=None)
    parser.add_argument("--swiftcli_args", default="",
                        help="extra swiftcli deploy arguments, e.g. '--data_parallel_size 1' (the measured side only)")
    parser.add_argument("--reference", choices=["vllm", "swiftcli-plain"], default="vllm",
                        help="swiftcli's reference: vLLM's server, or swiftcli deploy without --swiftcli_args")
    parser.add_argument("--startup_timeout", type=float, default=900)
    parser.add_argument("--output", default=None, help="JSON path (default: benchmarks/results/serve-TIME.json)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    model_dir = args.model
    if model_dir is None:
        from swiftcli.hub.resolve import resolve_model

        model_dir = str(resolve_model().model_dir)
    setup = Setup(model_dir, args.served_model_name, args.tensor_parallel_size, json.loads(args.engine_kwargs),
                  args.max_num_seqs, tuple(shlex.split(args.swiftcli_args)))
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    kinds = [args.only] if args.only else [args.reference, "swiftcli"]
    servers: list[Running] = []
    try:
        for i, kind in enumerate(kinds):  # one after the other: each sizes its KV cache from the memory left
            servers.append(start(kind, setup, args.port + i, args.startup_timeout))
        runs = alternate(servers, args, levels)
    finally:
        for server in servers:
            stop(server.process)
    summary = report(runs, levels)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "settings": {**vars(args), "model": model_dir},
              "engine_args": setup.engine_args(), "scheduler": {s.kind: s.scheduler for s in servers},
              "versions": versions(), "medians": summary, "runs": runs}
    out = Path(args.output) if args.output else RESULTS / f"serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {out}")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("vllm", "vllm-cpu", "torch", "transformers", "swiftcli"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    main()


__all__ = ["asdict", "run_load"]
