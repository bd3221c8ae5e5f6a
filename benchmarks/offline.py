"""Offline throughput: the same chat prompts through raw vLLM, swiftcli's inference_vllm, the swiftcli CLI
(`swiftcli infer --val_dataset`), the pt backend and plain transformers `generate`.

Raw vLLM and inference_vllm run on one engine in one process, so the ratio measures only swiftcli's wrapper.
The CLI path runs in a subprocess and reports start-up apart from generation. Prints a table, writes JSON.

    python benchmarks/offline.py                       # 256 prompts x 64 tokens, all paths
    python benchmarks/offline.py --num-prompts 2048 --max-tokens 128 --skip hf,pt   # GPU sizes
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

TOPICS = ["the moon", "volcanoes", "bread", "the French Revolution", "honey bees", "prime numbers", "jazz",
          "glaciers", "the Roman Empire", "photosynthesis", "chess", "coffee", "electric cars", "octopuses",
          "the Internet", "rainbows"]
FORMS = ["Tell me about {}.", "Write a short poem about {}.", "Give three facts about {}.",
         "Explain {} to a child.", "What is the history of {}?", "Why do people like {}?",
         "Write a haiku about {}.", "Summarize what you know about {} in two sentences.",
         "What are common misconceptions about {}?", "Describe {} in one paragraph.",
         "List five words related to {}.", "How would you teach a class about {}?",
         "Write a tweet about {}.", "What questions would a scientist ask about {}?",
         "Compare {} with something similar.", "Tell a joke about {}."]


def chat_prompts(n: int) -> list[str]:
    everything = [form.format(topic) for form in FORMS for topic in TOPICS]
    return [everything[i % len(everything)] for i in range(n)]


def _row(name: str, seconds: float, output_tokens: int, prompts: int, **extra: object) -> dict[str, object]:
    return {"path": name, "seconds": round(seconds, 3), "prompts": prompts, "output_tokens": output_tokens,
            "output_tok_s": round(output_tokens / seconds, 1) if seconds else 0.0, **extra}


class _CountingEngine:
    """Passes an engine through, adding up the output tokens of finished requests."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.generation_config = engine.generation_config
        self.output_tokens = 0

    def stream(self, requests):  # noqa: ANN001, ANN201
        for result in self.engine.stream(requests):
            if result.finished:
                self.output_tokens += result.output_tokens
            yield result


def run_vllm(queries: list[str], max_tokens: int, dtype: str | None, repeats: int) -> list[dict[str, object]]:
    """Raw `LLM.generate` and `inference_vllm` alternate on one engine; the best run of each counts."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from swiftcli import get_template, get_vllm_engine, inference_vllm
    from swiftcli.config import GenerationConfig

    t0 = time.perf_counter()
    engine = get_vllm_engine("smollm2-135m-instruct", dtype)
    startup = time.perf_counter() - t0
    template = get_template(engine.spec.template_type, engine.hf_tokenizer)
    token_prompts = [TokensPrompt(prompt_token_ids=template.encode(q)) for q in queries]
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True,
                            stop=template.stop_words or None, stop_token_ids=template.stop_token_ids or None)
    config = GenerationConfig(max_new_tokens=max_tokens, temperature=0.0, do_sample=False, ignore_eos=True)
    requests = [{"query": q} for q in queries]

    engine.llm.generate(token_prompts[:8], params, use_tqdm=False)  # warm-up
    best: dict[str, tuple[float, int]] = {}
    for _ in range(repeats):
        t = time.perf_counter()
        outputs = engine.llm.generate(token_prompts, params, use_tqdm=False)
        raw = (time.perf_counter() - t, sum(len(o.outputs[0].token_ids) for o in outputs))
        counted = _CountingEngine(engine)
        t = time.perf_counter()
        inference_vllm(counted, template, requests, generation_config=config)
        ours_seconds, ours_tokens = time.perf_counter() - t, counted.output_tokens
        ours = (ours_seconds, ours_tokens)
        for name, value in (("raw vLLM LLM.generate", raw), ("swiftcli inference_vllm", ours)):
            if name not in best or value[0] < best[name][0]:
                best[name] = value
    resolved_dtype = str(engine.engine_args.get("dtype", "auto"))
    engine.close()
    rows = [_row(name, s, tokens, len(queries), startup_s=round(startup, 1), dtype=resolved_dtype)
            for name, (s, tokens) in best.items()]
    return rows


def run_cli(queries: list[str], max_tokens: int, dtype: str | None) -> dict[str, object]:
    """`swiftcli infer --val_dataset` in a subprocess; its JSON summary separates start-up from generation."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.jsonl"
        rows.write_text("".join(json.dumps({"query": q}) + "\n" for q in queries))
        cmd = [sys.executable, "-m", "swiftcli.cli", "--quiet", "infer", "--val_dataset", str(rows),
               "--result_file", str(Path(tmp) / "out.jsonl"), "--output", "json",
               "--max_new_tokens", str(max_tokens), "--ignore_eos", "true", "--temperature", "0"]
        if dtype:
            cmd += ["--dtype", dtype]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"the CLI run failed:\n{proc.stderr[-3000:]}")
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return _row("swiftcli infer --val_dataset (CLI)", summary["seconds"], summary["output_tokens"], len(queries),
                startup_s=round(summary["startup_seconds"], 1), wall_s=round(wall, 1))


def run_pt(queries: list[str], max_tokens: int, dtype: str) -> dict[str, object]:
    from swiftcli import get_template
    from swiftcli.config import EngineConfig, GenerationConfig, resolve_model
    from swiftcli.engines import create_engine
    from swiftcli.engines.base import EngineRequest, generate_all

    spec = resolve_model()
    t0 = time.perf_counter()
    engine = create_engine(spec, EngineConfig(dtype=dtype), backend="pt")
    startup = time.perf_counter() - t0
    template = get_template(spec.template_type, engine.hf_tokenizer)
    config = GenerationConfig(max_new_tokens=max_tokens, temperature=0.0, do_sample=False)
    t = time.perf_counter()
    results = generate_all(engine, [EngineRequest(template.encode(q), config) for q in queries])
    seconds = time.perf_counter() - t
    engine.close()
    return _row("swiftcli pt backend", seconds, sum(r.output_tokens for r in results), len(queries),
                startup_s=round(startup, 1), dtype=dtype)


def run_hf(queries: list[str], max_tokens: int, dtype: str) -> dict[str, object]:
    """Plain transformers: chat template, one left-padded batch, greedy `generate`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftcli.config import resolve_model

    model_dir = resolve_model().model_dir
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                           add_generation_prompt=True) for q in queries]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    t = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    seconds = time.perf_counter() - t
    tokens = int((out.shape[1] - batch["input_ids"].shape[1]) * out.shape[0])
    return _row("transformers generate", seconds, tokens, len(queries), dtype=dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--dtype", default=None, help="engine dtype (default: swiftcli's platform default)")
    parser.add_argument("--repeats", type=int, default=2, help="raw/inference_vllm alternations (best counts)")
    parser.add_argument("--skip", default="", help="comma list of: vllm, cli, pt, hf")
    parser.add_argument("--output", default="benchmarks/results/offline.json")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    queries = chat_prompts(args.num_prompts)
    rows: list[dict[str, object]] = []
    if "vllm" not in skip:  # first, before this process touches CUDA (vLLM forks its engine process)
        rows += run_vllm(queries, args.max_tokens, args.dtype, args.repeats)
    import torch

    hf_dtype = args.dtype or ("bfloat16" if torch.cuda.is_available() else "float32")
    if "cli" not in skip:
        rows.append(run_cli(queries, args.max_tokens, args.dtype))
    if "pt" not in skip:
        rows.append(run_pt(queries, args.max_tokens, hf_dtype))
    if "hf" not in skip:
        rows.append(run_hf(queries, args.max_tokens, hf_dtype))

    raw = next((r for r in rows if r["path"] == "raw vLLM LLM.generate"), None)
    for row in rows:
        row["vs_raw_vllm"] = round(row["output_tok_s"] / raw["output_tok_s"], 3) if raw else None
    print(f"\n{args.num_prompts} chat prompts x {args.max_tokens} new tokens (greedy, EOS ignored)\n")
    print(f"{'path':<38} {'out tok/s':>10} {'seconds':>9} {'vs raw':>7} {'start-up s':>11}")
    for row in rows:
        ratio = f"{row['vs_raw_vllm']:.3f}" if row["vs_raw_vllm"] is not None else "-"
        print(f"{row['path']:<38} {row['output_tok_s']:>10.1f} {row['seconds']:>9.2f} {ratio:>7} "
              f"{row.get('startup_s', '-')!s:>11}")
    ours = next((r for r in rows if r["path"] == "swiftcli inference_vllm"), None)
    if ours and raw:
        verdict = "meets" if ours["vs_raw_vllm"] >= 0.97 else "MISSES"
        print(f"\ninference_vllm / raw vLLM = {ours['vs_raw_vllm']:.3f} ({verdict} the 0.97 target)")

    import vllm

    report = {
        "benchmark": "offline", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "versions": {"vllm": getattr(vllm, "__version__", "?"), "torch": torch.__version__},
        "num_prompts": args.num_prompts, "max_tokens": args.max_tokens, "rows": rows,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
