"""First answers: how often a fresh conversation gets simple factual questions right, per sampling setting.

Every conversation is a new single-turn request with no seed, as a new user's first message in `swiftcli chat`
or `app-ui` is. For each setting and question, N such conversations run (as one engine batch: requests without a
seed draw their own random numbers); an answer is right when it contains the expected word, and a loop when a
word n-gram repeats (the "la femme, la femme, la femme" failure). Prints a table, writes JSON.

    python benchmarks/first_answers.py --conversations 20 --json benchmarks/results/first-answers-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    ("What is the capital of France?", ("paris",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("What is the capital of Italy?", ("rome",)),
    ("How many days are there in a week?", ("seven", "7")),
    ("What color is the sky on a clear day?", ("blue",)),
]

# name -> GenerationConfig fields. The first is ms-swift's fallback, the interactive default before this choice.
SETTINGS: dict[str, dict[str, Any]] = {
    "ms-swift fallback (t=0.3, top_p=0.7, top_k=20)": {"temperature": 0.3, "top_p": 0.7, "top_k": 20},
    "fallback + repetition_penalty 1.1": {"temperature": 0.3, "top_p": 0.7, "top_k": 20,
                                          "repetition_penalty": 1.1},
    "t=0.7, top_p=0.8, top_k=20, rep 1.05 (Qwen2.5 card)": {"temperature": 0.7, "top_p": 0.8, "top_k": 20,
                                                           "repetition_penalty": 1.05},
    "t=0.2, top_k=1": {"temperature": 0.2, "top_p": 1.0, "top_k": 1},
    "greedy": {"temperature": 0.0, "do_sample": False},
    "greedy + repetition_penalty 1.1": {"temperature": 0.0, "do_sample": False, "repetition_penalty": 1.1},
    "greedy + repetition_penalty 1.2": {"temperature": 0.0, "do_sample": False, "repetition_penalty": 1.2},
}

WORD = re.compile(r"\w+", re.UNICODE)


def is_loop(text: str, n: int = 3, times: int = 4) -> bool:
    """A degenerate loop: some word n-gram occurs `times` times or more."""
    words = [w.lower() for w in WORD.findall(text)]
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= times


def is_right(text: str, expected: tuple[str, ...]) -> bool:
    words = {w.lower() for w in WORD.findall(text)}
    return any(e in words for e in expected)


@dataclass
class Tally:
    right: int = 0
    loops: int = 0
    cut: int = 0
    total: int = 0


def run_setting(engine: Any, template: Any, fields: dict[str, Any], conversations: int,
                max_new_tokens: int) -> tuple[dict[str, Tally], dict[str, list[str]]]:
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.generation.core import infer

    # From the class defaults, not the engine's: each setting is measured on its own terms.
    config = GenerationConfig(**fields, max_new_tokens=max_new_tokens, seed=None)
    requests = [{"query": q} for q, _ in QUESTIONS for _ in range(conversations)]
    results = infer(engine, template, requests, config)
    tallies: dict[str, Tally] = {q: Tally() for q, _ in QUESTIONS}
    samples: dict[str, list[str]] = {q: [] for q, _ in QUESTIONS}
    expected = dict(QUESTIONS)
    for result in results:
        tally = tallies[result.query]
        tally.total += 1
        tally.right += is_right(result.response, expected[result.query])
        tally.loops += is_loop(result.response)
        tally.cut += result.finish_reason == "length"
        if len(samples[result.query]) < 3 and result.response not in samples[result.query]:
            samples[result.query].append(result.response[:160])
    return tallies, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20, help="fresh conversations per setting and question")
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--dtype", default=None, help="engine dtype; default the platform's (float32 on CPU)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    from swiftcli.config import EngineConfig
    from swiftcli.engines import create_engine
    from swiftcli.hub.resolve import resolve_model
    from swiftcli.registry.templates import get_template

    spec = resolve_model()
    engine = create_engine(spec, EngineConfig(dtype=args.dtype), "vllm")
    template = get_template(spec.template_type, engine.hf_tokenizer, spec.default_system)
    # A run on a busy machine may die (out of memory); rerun the same command to measure the settings left.
    rows: list[dict[str, Any]] = []
    if args.json and args.json.is_file():
        rows = [r for r in json.loads(args.json.read_text())["rows"] if r["setting"] in SETTINGS]
    done = {r["setting"] for r in rows}
    meta = {"machine": platform.platform(), "processor": platform.processor(), "model": spec.name,
            "dtype": getattr(engine, "engine_args", {}).get("dtype", args.dtype), "conversations": args.conversations,
            "max_new_tokens": args.max_new_tokens,
            "questions": [{"query": q, "expected": list(e)} for q, e in QUESTIONS]}
    try:
        for name, fields in SETTINGS.items():
            if name in done:
                continue
            t0 = time.perf_counter()
            tallies, samples = run_setting(engine, template, fields, args.conversations, args.max_new_tokens)
            total = sum(t.total for t in tallies.values())
            rows.append({
                "setting": name, "fields": fields, "conversations": total,
                "right": sum(t.right for t in tallies.values()), "loops": sum(t.loops for t in tallies.values()),
                "cut_at_max_new_tokens": sum(t.cut for t in tallies.values()),
                "france_right": tallies[QUESTIONS[0][0]].right, "france_loops": tallies[QUESTIONS[0][0]].loops,
                "per_question": {q: vars(t) for q, t in tallies.items()}, "samples": samples,
                "seconds": round(time.perf_counter() - t0, 1),
            })
            last = rows[-1]
            print(f"{name}: {last['right']} right, {last['loops']} loops, {last['seconds']} s", flush=True)
            if args.json:  # after each setting: a long run that dies keeps what it measured
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, ensure_ascii=False) + "\n")
    finally:
        engine.close()

    n = args.conversations
    print(f"{n} fresh conversations per question, {len(QUESTIONS)} questions, max_new_tokens {args.max_new_tokens}")
    print(f"| setting | right (of {n * len(QUESTIONS)}) | loops | cut at limit | France right (of {n}) "
          "| France loops |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['setting']} | {row['right']} | {row['loops']} | {row['cut_at_max_new_tokens']} | "
              f"{row['france_right']} | {row['france_loops']} |")
    if args.json:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
