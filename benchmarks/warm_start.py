"""Warm start: wall time of a one-shot `swiftcli infer --query` that starts its own engine (cold) against the same
question sent to a running `swiftcli deploy` with `--api_url` (warm). Whole processes, as a user runs them.

Cold runs go first, then the server starts and the warm runs follow: one engine at a time.

    python benchmarks/warm_start.py --cold 3 --warm 10 --json benchmarks/results/warm-start-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

QUESTION = "What is the capital of France?"
SWIFTCLI = [sys.executable, "-m", "swiftcli.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([*SWIFTCLI, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"swiftcli {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout.strip()


def start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen([*SWIFTCLI, "deploy", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"deploy exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise SystemExit("deploy did not become ready within 600 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def summary(times: list[float]) -> dict[str, Any]:
    return {"runs": len(times), "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "all_s": [round(t, 3) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=3, help="cold runs (each starts an engine)")
    parser.add_argument("--warm", type=int, default=10, help="warm runs against the server")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    ask = ["infer", "--query", QUESTION, "--max_new_tokens", str(args.max_new_tokens)]

    cold = [timed(ask) for _ in range(args.cold)]
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="warm-start-deploy-", suffix=".log")[1])
    t0 = time.perf_counter()
    server = start_server(port, log)
    server_start = time.perf_counter() - t0
    try:
        warm = [timed([*ask, "--api_url", f"http://127.0.0.1:{port}/v1"]) for _ in range(args.warm)]
    finally:
        stop(server)

    answers = {answer for _, answer in cold + warm}
    result = {"cold": summary([t for t, _ in cold]), "warm": summary([t for t, _ in warm]),
              "server_start_s": round(server_start, 1), "same_answer": len(answers) == 1, "answers": sorted(answers),
              "machine": platform.platform(), "cpus": os.cpu_count(), "question": QUESTION,
              "max_new_tokens": args.max_new_tokens}
    print("| one-shot `swiftcli infer --query` | runs | median | min | max |")
    print("| --- | --- | --- | --- | --- |")
    for name, key in (("cold (starts an engine)", "cold"), ("warm (`--api_url`, running deploy)", "warm")):
        row = result[key]
        print(f"| {name} | {row['runs']} | {row['median_s']:.2f} s | {row['min_s']:.2f} s | {row['max_s']:.2f} s |")
    print(f"server start (once): {server_start:.1f} s; same answer cold and warm: {result['same_answer']} "
          f"({' | '.join(result['answers'])})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
