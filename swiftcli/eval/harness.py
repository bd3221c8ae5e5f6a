"""lm-evaluation-harness tasks through swiftcli: the engine behind a local server, lm-eval's `local-completions`
against it, and its scores folded into a swiftcli run (summary.json, samples.jsonl, `eval compare`).

lm-eval runs in a subprocess (`python -m lm_eval`), from the include directory when one is given, so task YAMLs
there can name their data files relative to it. The tasks are checked in a subprocess too, before the model
loads: an unknown name, or a task whose data must come from the hub while offline, fails in seconds.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from swiftcli.errors import InputError, MissingDependencyError, UsageError

# Hub and network failures, by exception class name (datasets, huggingface_hub, requests, urllib3).
_DOWNLOAD_ERRORS = ("ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "MaxRetryError",
                    "DatasetNotFoundError", "HfHubHTTPError", "Timeout", "ConnectTimeout", "NameResolutionError")


def require_lm_eval() -> None:
    if importlib.util.find_spec("lm_eval") is None:
        raise MissingDependencyError("--lm-eval-tasks needs lm-evaluation-harness",
                                     "pip install 'lm-eval[api]' (or swiftcli[eval])")


def parse_tasks(value: str) -> list[str]:
    tasks = [t.strip() for t in value.split(",") if t.strip()]
    if not tasks:
        raise UsageError("--lm-eval-tasks needs task names, comma-separated, e.g. arc_easy,hellaswag")
    return tasks


def check_tasks(tasks: list[str], include_path: Path | None) -> None:
    """Every task is known to lm-eval and its data loads; raises a one-line error otherwise."""
    require_lm_eval()
    if include_path is not None and not include_path.is_dir():
        raise UsageError(f"--lm-eval-include-path {include_path} is not a directory")
    request = json.dumps({"tasks": tasks, "include_path": _str(include_path)})
    proc = subprocess.run([sys.executable, "-m", "swiftcli.eval.harness", request], cwd=include_path,
                          capture_output=True, text=True, env=_env())
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise InputError(f"lm-eval could not list its tasks: {_last_line(proc.stderr)}") from None
    if report.get("unknown"):
        name = report["unknown"][0]
        close = report.get("close") or []
        hint = f"did you mean {close[0]}?" if close else "list them with `lm_eval ls tasks`; add local YAMLs with " \
                                                          "--lm-eval-include-path DIR"
        raise UsageError(f"lm-eval has no task or group named {name!r}", hint)
    if report.get("error"):
        if report.get("download"):
            raise InputError(f"lm-eval task(s) {', '.join(tasks)} need data from the Hugging Face hub, which could "
                             f"not be downloaded ({report['error']})",
                             "run once online to fill the datasets cache, or use local task YAMLs with "
                             "--lm-eval-include-path DIR")
        raise InputError(f"lm-eval could not load task(s) {', '.join(tasks)}: {report['error']}")


def run_harness(base_url: str, model: str, tasks: list[str], include_path: Path | None, limit: int | None,
                few_shot: int | None, concurrency: int, api_key: str | None = None) -> dict[str, Any]:
    """Run lm-eval's local-completions against `base_url` (ending in /v1); returns its results file and samples."""
    with tempfile.TemporaryDirectory(prefix="swiftcli-lm-eval-") as out:
        # lm-eval finds the server's /tokenize and /tokenizer_info itself (swiftcli and vLLM servers have them).
        model_args = f"base_url={base_url}/completions,model={model},num_concurrent={concurrency},max_retries=1"
        args = [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args", model_args,
                "--tasks", ",".join(tasks), "--output_path", out, "--log_samples"]
        if include_path is not None:
            args += ["--include_path", str(include_path.resolve())]
        if limit is not None:
            args += ["--limit", str(limit)]
        if few_shot is not None:
            args += ["--num_fewshot", str(few_shot)]
        env = _env()
        started = time.perf_counter()
        if api_key:
            env["OPENAI_API_KEY"] = api_key
        # lm-eval's log and table go to our stderr as they come: stdout is for swiftcli's own results.
        proc = subprocess.run(args, cwd=include_path, stdout=_stderr_fd(), env=env)
        if proc.returncode != 0:
            raise InputError(f"lm-eval exited with {proc.returncode}", "see its log above")
        results_path = next(Path(out).rglob("results_*.json"), None)
        if results_path is None:
            raise InputError("lm-eval wrote no results")
        samples: dict[str, list[dict[str, Any]]] = {}
        for path in Path(out).rglob("samples_*.jsonl"):
            task = path.name.removeprefix("samples_").rsplit("_", 1)[0]
            samples[task] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        return {"results": json.loads(results_path.read_text(encoding="utf-8")), "samples": samples,
                "seconds": time.perf_counter() - started}


def fold_results(harness: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """lm-eval's results -> (samples.jsonl rows, summary.json dataset entries); scores on swiftcli's 0-100 scale."""
    results = harness["results"]
    version = results.get("lm_eval_version") or _lm_eval_version()
    rows: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for task, values in results.get("results", {}).items():
        metrics: dict[str, float] = {}
        for key, value in values.items():
            name, _, filt = key.partition(",")
            if not filt or "stderr" in name or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            label = name if filt == "none" else f"{name}[{filt}]"
            metrics[label] = round(100.0 * value, 4) if name.startswith(("acc", "exact_match")) else round(value, 4)
        task_rows = [_row(task, s) for s in harness["samples"].get(task, [])]
        rows += task_rows
        config = results.get("configs", {}).get(task, {})
        entries.append({
            "name": task, "path": None, "sha256": None, "kind": "lm_eval", "rows": len(task_rows),
            "few_shot": results.get("n-shot", {}).get(task), "few_shot_lines": [],
            "scored": len(task_rows), "ok": len(task_rows), "failed": 0,
            "main_metric": next(iter(metrics), None), "metrics": metrics,
            "method": {m: f"lm-evaluation-harness {version}, {config.get('output_type', 'task')} via "
                          "local-completions against swiftcli's server" for m in metrics},
        })
    return rows, entries


def _row(task: str, sample: dict[str, Any]) -> dict[str, Any]:
    scores = {k: v for k, v in sample.items() if k in sample.get("metrics", []) and isinstance(v, (int, float))}
    correct = next(iter(scores.values()), None)
    return {"dataset": task, "index": sample.get("doc_id"), "line": sample.get("doc_id"), "kind": "lm_eval",
            "status": "ok", "target": sample.get("target"), "prediction": sample.get("filtered_resps"),
            "correct": None if correct is None else bool(correct), "scores": scores}


def _lm_eval_version() -> str:
    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return "?"


def _stderr_fd() -> Any:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr without a file descriptor
        return 2


def _env() -> dict[str, str]:
    return {**os.environ, "TOKENIZERS_PARALLELISM": "false"}


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path.resolve())


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _check_in_process(tasks: list[str], include_path: str | None) -> dict[str, Any]:
    """What check_tasks runs in its subprocess (lm-eval's task index is slow to build and logs a lot)."""
    from lm_eval.tasks import TaskManager, get_task_dict  # deferred: lm_eval loads only when needed (a light start-up)

    manager = TaskManager(include_path=include_path)
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        return {"unknown": unknown, "close": difflib.get_close_matches(unknown[0], sorted(known), n=1)}
    try:
        get_task_dict(tasks, manager)
    except Exception as exc:  # noqa: BLE001 - reported to the caller as one line
        chain = [exc, *(e for e in (exc.__cause__, exc.__context__) if e is not None)]
        download = any(type(e).__name__ in _DOWNLOAD_ERRORS or "offline" in str(e).lower() for e in chain)
        return {"error": f"{type(exc).__name__}: {_last_line(str(exc))}", "download": download}
    return {"ok": True}


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(_check_in_process(request["tasks"], request["include_path"])))
