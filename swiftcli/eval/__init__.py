"""Dataset evaluation: task kinds, prompts, answer extraction, metrics, runs on a local engine or a server, reports.

Light to import: sacrebleu, rouge-score, jieba, openai and the engines load when a run needs them.
"""

from swiftcli.eval.compare import Comparison, compare_runs, render_html
from swiftcli.eval.datasets import GENERATION, GSM8K, KINDS, MULTIPLE_CHOICE, EvalDataset, EvalItem, load_dataset
from swiftcli.eval.evaluate import EvalOutcome, build_summary, evaluate, load_datasets
from swiftcli.eval.extract import extract_choice, extract_number
from swiftcli.eval.report import Run, load_run, write_run
from swiftcli.eval.runner import Generated, Prediction, RemoteTarget, generate_local, generate_remote

__all__ = [
    "GENERATION",
    "GSM8K",
    "KINDS",
    "MULTIPLE_CHOICE",
    "Comparison",
    "EvalDataset",
    "EvalItem",
    "EvalOutcome",
    "Generated",
    "Prediction",
    "RemoteTarget",
    "Run",
    "build_summary",
    "compare_runs",
    "evaluate",
    "extract_choice",
    "extract_number",
    "generate_local",
    "generate_remote",
    "load_dataset",
    "load_datasets",
    "load_run",
    "render_html",
    "write_run",
]
