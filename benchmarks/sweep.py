"""Checkpoint sweep: `swiftcli eval --ckpt_dir 'run/checkpoint-*'` (LoRA checkpoints as adapters on one engine)
against evaluating the same checkpoints one by one (`swiftcli eval --ckpt_dir run/checkpoint-N
--vllm_enable_lora true`, one process and one engine each), both through the CLI, wall time included start-up.

The checkpoints are made here: one rank-8 peft adapter of the embedded model saved at several "steps". The
script also checks that both ways give every checkpoint the same answers. Prints a table, writes JSON.

    python benchmarks/sweep.py                                  # 3 checkpoints x 16 rows x 32 tokens
    python benchmarks/sweep.py --checkpoints 5 --rows 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test helper that saves real peft adapters

TOPICS = ["the moon", "volcanoes", "bread", "honey bees", "prime numbers", "jazz", "glaciers", "chess"]
FORMS = ["Tell me about {}.", "Give one fact about {}.", "Write a haiku about {}.", "Explain {} to a child."]


def make_inputs(folder: Path, checkpoints: int, rows: int) -> tuple[Path, Path]:
    from checkpoints import make_training_run

    from swiftcli.hub.resolve import resolve_model

    run = folder / "output" / "v0-bench"
    make_training_run(resolve_model().model_dir, run, tuple(10 * (i + 1) for i in range(checkpoints)),
                      scale_per_step=0.002)
    prompts = [form.format(topic) for form in FORMS for topic in TOPICS]
    data = folder / "qa.jsonl"
    data.write_text("".join(json.dumps({"query": prompts[i % len(prompts)], "response": "-"}) + "\n"
                            for i in range(rows)))
    return run, data


def cli(args: list[str]) -> float:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "swiftcli.cli", "--quiet", "eval", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def answers(run_dir: Path) -> list[str]:
    return [json.loads(line)["prediction"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep-cpu.json")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swiftcli-sweep-bench-") as tmp:
        folder = Path(tmp)
        run, data = make_inputs(folder, opts.checkpoints, opts.rows)
        common = ["--eval_dataset", str(data), "--max_new_tokens", str(opts.max_tokens)]
        swept_s = cli([*common, "--ckpt_dir", str(run / "checkpoint-*"), "--eval_output_dir", str(folder / "sweep")])
        ckpts = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        single: list[float] = []
        same = True
        for ckpt in ckpts:
            out = folder / f"single-{ckpt.name}"
            single.append(cli([*common, "--ckpt_dir", str(ckpt), "--vllm_enable_lora", "true",
                               "--eval_output_dir", str(out)]))
            same = same and answers(out) == answers(folder / "sweep" / ckpt.name)
    one_by_one = sum(single)
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "checkpoints": opts.checkpoints, "rows": opts.rows, "max_tokens": opts.max_tokens,
        "sweep_s": round(swept_s, 1), "one_by_one_s": round(one_by_one, 1),
        "one_by_one_each_s": [round(s, 1) for s in single], "speedup": round(one_by_one / swept_s, 2),
        "same_answers": same,
    }
    print(f"| checkpoints x rows x tokens | sweep (1 engine) | one by one ({opts.checkpoints} engines) | speed-up "
          f"| same answers |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {opts.checkpoints} x {opts.rows} x {opts.max_tokens} | {swept_s:.1f} s | {one_by_one:.1f} s | "
          f"{result['speedup']:.2f}x | {same} |")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {opts.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
