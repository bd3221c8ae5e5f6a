"""`swiftcli eval`: task kinds, answer extraction, metrics against hand-computed values, runs on the real engine,
on a live `swiftcli deploy` and on a small OpenAI-style server, and `eval compare`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import SharedEngine
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.errors import InputError, UsageError
from swiftcli.eval import compare_runs, extract_choice, extract_number, load_dataset, load_run, write_run
from swiftcli.eval.datasets import GENERATION, GSM8K, MULTIPLE_CHOICE, detect_kind
from swiftcli.eval.metrics import RougeTokenizer, TextScorer
from swiftcli.eval.runner import Prediction
from swiftcli.eval.scoring import score_dataset

QA_ROWS = [
    {"query": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "2+2 is 4."}]},
    {"instruction": "Translate to French", "input": "Hello", "output": "Bonjour"},
    {"query": "Name a colour."},
    # Longer than the model's context: fails on its own, the run goes on.
    {"query": "word " * 10000, "response": "x"},
]
MC_CSV = (
    "question,A,B,C,D,answer\n"
    "What is the capital of France?,Berlin,Paris,Rome,Madrid,B\n"
    "Which planet is known as the Red Planet?,Venus,Jupiter,Mars,Saturn,C\n"
    "What is 2+2?,3,4,5,6,B\n"
)
GSM_ROWS = [
    {"question": "Tom has 3 apples and buys 2 more. How many apples has he?", "answer": "3 + 2 = <<3+2=5>>5\n#### 5"},
    {"question": "A box holds 4 pens. How many pens are in 3 boxes?", "answer": "4 * 3 = <<4*3=12>>12\n#### 12"},
    {"question": "Sara had 10 dollars and spent 4. How much is left?", "answer": "10 - 4 = 6\n#### 6"},
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("eval-data")
    mc = root / "mc.csv"
    mc.write_text(MC_CSV, encoding="utf-8")
    return [write_jsonl(root / "qa.jsonl", QA_ROWS), mc, write_jsonl(root / "gsm.jsonl", GSM_ROWS)]


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, env={"COLUMNS": "120"})


# --- datasets and prompts -------------------------------------------------------------------------------------


def test_kinds_are_detected_from_columns():
    assert detect_kind(QA_ROWS[0]) == GENERATION
    assert detect_kind(QA_ROWS[1]) == GENERATION
    assert detect_kind(QA_ROWS[2]) == GENERATION
    assert detect_kind({"question": "q", "choices": ["x", "y"], "answer": 0}) == MULTIPLE_CHOICE
    assert detect_kind({"question": "q", "A": "x", "B": "y", "answer": "A"}) == MULTIPLE_CHOICE
    assert detect_kind(GSM_ROWS[0]) == GSM8K
    assert detect_kind({"question": "q", "answer": "plain"}) == GENERATION
    assert detect_kind({"query": "no reference"}) is None
    assert detect_kind({"text": "x"}) is None


def test_multiple_choice_prompt_lists_options_and_answers_in_any_form(tmp_path):
    rows = [
        {"question": "Capital of France?", "choices": ["Berlin", "Paris"], "answer": 1},
        {"question": "Capital of Italy?", "choices": {"A": "Rome", "B": "Oslo"}, "answer": "Rome"},
        {"question": "Largest?", "choices": ["a", "b", "c"], "answer": "(c)"},
        {"question": "Broken", "choices": ["x", "y"], "answer": "Z"},
    ]
    ds = load_dataset(write_jsonl(tmp_path / "mc.jsonl", rows), "mc")
    assert ds.kind == MULTIPLE_CHOICE
    first = ds.items[0]
    assert "A. Berlin\nB. Paris" in first.query and first.reference == "B" and first.letters == "AB"
    assert [i.reference for i in ds.items[:3]] == ["B", "A", "C"]
    assert ds.items[3].error is not None and "not one of the options" in ds.items[3].error


def test_few_shot_rows_are_excluded_and_prepended(datasets):
    ds = load_dataset(datasets[2], "gsm", few_shot=1, seed=3)
    assert len(ds.few_shot_lines) == 1 and ds.rows == 3
    assert ds.few_shot_lines[0] not in [i.line for i in ds.items] and len(ds.items) == 2
    for item in ds.items:
        ((shot_query, shot_answer),) = item.history
        assert shot_answer.endswith("#### " + shot_answer.split("#### ")[-1]) and "<<" not in shot_answer
        assert "Solve the problem step by step" in shot_query
    again = load_dataset(datasets[2], "gsm", few_shot=1, seed=3)
    assert again.few_shot_lines == ds.few_shot_lines
    assert len(load_dataset(datasets[2], "gsm", limit=2).items) == 2


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="cannot tell what to evaluate.*'text'") as info:
        load_dataset(write_jsonl(tmp_path / "odd.jsonl", [{"text": "x"}]), "odd")
    assert "multiple_choice: question, choices" in (info.value.hint or "")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(InputError, match="has no rows"):
        load_dataset(empty, "empty")
    with pytest.raises(InputError, match="no 'question'"):
        load_dataset(write_jsonl(tmp_path / "g.jsonl", [{"query": "q", "response": "r"}]), "g", kind=GSM8K)
    with pytest.raises(UsageError, match="leaves no row"):
        load_dataset(write_jsonl(tmp_path / "one.jsonl", [QA_ROWS[0]]), "one", few_shot=1)


# --- answer extraction ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("(C)", "C"),
        ("B. Paris", "B"),
        ("The answer is C.", "C"),
        ("Answer: d.", "D"),
        ("option A is wrong, so the answer is B", "B"),
        ("I would say D", "D"),
        ("The capital is Berlin", "A"),
        ("A cat sat on the mat.", None),
        ("answer is a good one", None),
        ("none of these", None),
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text, "ABCD", ["Berlin", "Paris", "Rome", "Madrid"]) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 3 + 2 = 5\n#### 5", "5"),
        ("#### 1,234", "1234"),
        ("The answer is $18.00.", "18"),
        ("first 2, then 7", "7"),
        ("\\boxed{42}", "42"),
        ("answer is: -3.5", "-3.5"),
        ("no digits", None),
    ],
)
def test_extract_number(text, expected):
    value = extract_number(text)
    assert (None if value is None else format(value.normalize(), "f")) == expected


# --- metrics, against values worked out by hand ---------------------------------------------------------------


def test_bleu_and_rouge_english_by_hand():
    scorer = TextScorer(["the cat is on the mat"])
    scores = scorer.sample("the cat sat on the mat", "the cat is on the mat")
    # n-gram matches: 5/6 unigrams, 3/5 bigrams, 1/4 trigrams, 0/3 4-grams (exp smoothing: 1/(2*3)); BP = 1.
    assert scores["bleu"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25, abs=1e-6)
    # LCS "the cat on the mat" = 5 of 6 tokens on both sides.
    assert scores["rouge_l"] == pytest.approx(100 * 5 / 6, abs=1e-9)
    assert scores["exact_match"] == 0.0
    assert scorer.sample("  Paris. ", "Paris.")["exact_match"] == 100.0
    assert scorer.sample("paris", "Paris.")["rouge_l"] == 100.0
    assert scorer.corpus_bleu(["the cat is on the mat"], ["the cat is on the mat"]) == pytest.approx(100.0)


def test_bleu_and_rouge_chinese_by_hand():
    scorer = TextScorer(["我爱北京天安门"])
    assert scorer.bleu_tokenizer == "zh"
    scores = scorer.sample("我爱北京", "我爱北京天安门")
    # Characters: every n-gram of the 4-character hypothesis matches; brevity penalty exp(1 - 7/4).
    assert scores["bleu"] == pytest.approx(100 * 2.718281828459045 ** (1 - 7 / 4), abs=1e-6)
    # ROUGE-L on characters: LCS 4, P = 4/4, R = 4/7, F = 8/11.
    assert scores["rouge_l"] == pytest.approx(100 * 8 / 11, abs=1e-9)
    # With jieba words: 我/爱/北京 against 我/爱/北京/天安门: P = 1, R = 3/4, F = 6/7.
    assert RougeTokenizer("jieba").tokenize("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    jieba_scores = TextScorer(["我爱北京天安门"], "jieba").sample("我爱北京", "我爱北京天安门")
    assert jieba_scores["rouge_l"] == pytest.approx(100 * 6 / 7, abs=1e-9)
    assert RougeTokenizer().tokenize("Hello, 世界! 2024") == ["hello", "世", "界", "2024"]


def test_scores_count_failed_rows_and_unfound_answers(datasets, tmp_path):
    mc = load_dataset(datasets[1], "mc")
    predictions = [Prediction("The answer is B."), Prediction("Not sure."), Prediction(error="server answered 500")]
    rows, entry = score_dataset(mc, predictions)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert entry["metrics"] == {"accuracy": 50.0, "no_answer_found": 1.0}
    assert (entry["ok"], entry["failed"]) == (2, 1)
    assert rows[1]["extracted"] is None and rows[2]["error"] == "server answered 500"
    qa = load_dataset(datasets[0], "qa")
    rows, entry = score_dataset(
        qa,
        [
            Prediction("The capital of France is Paris."),
            Prediction("4"),
            Prediction("Bonjour"),
            Prediction(error=qa.items[3].error),
            Prediction(error="too long"),
        ],
    )
    assert entry["metrics"]["exact_match"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert entry["failed"] == 2 and "no reference answer" in rows[3]["error"]


# --- runs on disk and compare ---------------------------------------------------------------------------------


def fake_run(root: Path, name: str, answers: list[str], datasets: list[Path]) -> Path:
    mc = load_dataset(datasets[1], "mc")
    rows, entry = score_dataset(mc, [Prediction(a) for a in answers])
    return write_run(root / name, rows, {"model": {"name": name}, "datasets": [entry]})


def test_compare_counts_flips_and_writes_html(datasets, tmp_path):
    a = fake_run(tmp_path, "a", ["B", "C", "A"], datasets)  # right, right, wrong
    b = fake_run(tmp_path, "b", ["B", "A", "B"], datasets)  # right, wrong, right
    comparison = compare_runs(load_run(a), load_run(b))
    (flips,) = comparison.flips
    assert (flips.matched, flips.both_right, flips.right_to_wrong, flips.wrong_to_right) == (3, 1, 1, 1)
    accuracy = next(r for r in comparison.metrics if r.metric == "accuracy")
    assert (accuracy.a, accuracy.b, accuracy.delta) == pytest.approx((200 / 3, 200 / 3, 0.0))
    page = tmp_path / "out" / "report.html"
    result = invoke(["eval", "compare", str(a), str(b / "summary.json"), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "66.67" in result.stdout and "+0.00" in result.stdout
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and 'style="width:66.67%"' in html
    assert "<script" not in html and "http" not in html.split("<body>")[1]
    as_json = invoke(["eval", "compare", str(a), str(b), "--output", "json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["flips"] == [{"dataset": "mc", "matched": 3, "wrong_to_right": 1, "right_to_wrong": 1,
                              "both_right": 1, "both_wrong": 0, "unmatched": 0}]
    (tmp_path / "plain").write_text("x")
    unwritable = invoke(["eval", "compare", str(a), str(b), "--html", str(tmp_path / "plain" / "r.html")])
    assert unwritable.exit_code == 1 and "--html" in unwritable.output and "cannot be written" in unwritable.output
    assert "Traceback" not in unwritable.output
    row = next(r for r in data["metrics"] if r["metric"] == "accuracy")
    assert row["a"] == row["b"] == pytest.approx(200 / 3, abs=1e-3) and row["delta"] == pytest.approx(0.0)


def test_output_dir_with_a_run_is_refused_and_nothing_is_half_written(datasets, tmp_path):
    run = fake_run(tmp_path, "a", ["B", "C", "A"], datasets)
    assert sorted(p.name for p in run.iterdir()) == ["samples.jsonl", "summary.json"]
    result = invoke(["eval", "--eval_dataset", str(datasets[1]), "--eval_output_dir", str(run)])
    assert result.exit_code == 2 and "already holds a run" in result.output
    result = invoke(["eval", "compare", str(tmp_path / "missing"), str(run)])
    assert result.exit_code == 1 and "not a run directory" in result.output and "Traceback" not in result.output


def test_cli_usage_errors_are_one_line(tmp_path, datasets):
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"text": "x", "label": 1}])
    out = tmp_path / "never"
    result = invoke(["eval", "--eval_dataset", str(odd), "--eval_output_dir", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot tell what to evaluate" in result.output and "expected generation:" in result.output
    assert not out.exists()
    assert invoke(["eval"]).exit_code == 2
    result = invoke(["eval", "--eval_dataset", str(datasets[0]), "--eval_type", "essay"])
    assert result.exit_code == 2 and "'--eval-type': 'essay' is not one of" in result.output


def test_missing_dataset_and_unwritable_output_are_refused_before_loading(tmp_path, datasets, monkeypatch):
    def no_engine(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model must not load")

    monkeypatch.setattr("swiftcli.engines.loader.start_engine", no_engine)
    monkeypatch.chdir(tmp_path)
    result = invoke(["eval", "--eval_dataset", "nope", "--eval_output_dir", str(tmp_path / "out")])
    assert result.exit_code == 1 and "--eval-dataset nope does not exist" in result.output
    assert "format" not in result.output and not (tmp_path / "out").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke(["eval", "--eval_dataset", str(datasets[1]), "--eval_output_dir", str(blocker / "run")])
    assert result.exit_code == 1 and f"--eval-output-dir {blocker / 'run'} cannot be written" in result.output
    assert "Traceback" not in result.output
    # The folders created to try writing are gone again.
    result = invoke(["eval", "--eval_dataset", "nope", "--eval_output_dir", str(tmp_path / "new" / "deep")])
    assert result.exit_code == 1 and not (tmp_path / "new").exists()
    for args, said in ((["--eval_few_shot", "-1"], "--eval-few-shot must be 0 or more"),
                       (["--eval_concurrency", "0"], "--eval-concurrency must be at least 1"),
                       (["--lm_eval_include_path", str(tmp_path)], "--lm-eval-include-path needs --lm-eval-tasks"),
                       (["--output", "yaml"], "--output must be text or json")):
        result = invoke(["eval", "--eval_dataset", str(datasets[1]), *args])
        assert result.exit_code == 2 and said in result.output, result.output


def test_eval_help_imports_nothing_heavy():
    code = (
        "import sys; from typer.testing import CliRunner; from swiftcli.cli.main import app; "
        "r = CliRunner().invoke(app, ['eval', '--help']); assert 'Examples' in r.output, r.output; "
        "print([m for m in ('torch', 'vllm', 'transformers', 'openai', 'sacrebleu') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- remote mode against a small OpenAI-style server over real HTTP -------------------------------------------


class _OpenAIStyle(BaseHTTPRequestHandler):
    """Answers "The answer is B." to option lists and echoes anything else; wants key "sekret"."""

    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == "Bearer sekret":
            return True
        self._send(401, {"error": {"message": "invalid api key", "type": "authentication_error", "code": 401}})
        return False

    def do_GET(self) -> None:
        if self._authorized():
            self._send(
                200, {"object": "list", "data": [{"id": "echo", "object": "model", "created": 0, "owned_by": "test"}]}
            )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self._authorized():
            return
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        time.sleep(0.05)
        with cls.lock:
            cls.in_flight -= 1
        query = body["messages"][-1]["content"]
        if "Red Planet" in query:
            self._send(400, {"error": {"message": "this row is refused", "type": "invalid_request_error"}})
            return
        text = "The answer is B." if "\nA. " in query else query
        self._send(
            200,
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            },
        )


@pytest.fixture
def openai_style_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIStyle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_remote_run_with_key_concurrency_and_a_failing_row(openai_style_server, datasets, tmp_path):
    echo = write_jsonl(
        tmp_path / "echo.jsonl", [{"query": "same", "response": "same"}, {"query": "one two", "response": "three"}]
    )
    out = tmp_path / "remote"
    result = invoke(
        [
            "eval",
            "--eval_url",
            openai_style_server,
            "--eval_token",
            "sekret",
            "--eval_dataset",
            str(datasets[1]),
            "--eval_dataset",
            str(echo),
            "--eval_concurrency",
            "2",
            "--eval_mc_method",
            "generate",
            "--eval_output_dir",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    run = load_run(out)
    mc, gen = run.summary["datasets"]
    # "B" for every row: right on rows 1 and 3; row 2 refused by the server, recorded and counted.
    assert mc["metrics"]["accuracy"] == 100.0 and (mc["ok"], mc["failed"]) == (2, 1)
    failed = [s for s in run.samples if s["status"] == "failed"]
    assert len(failed) == 1 and "400" in failed[0]["error"] and "refused" in failed[0]["error"]
    assert gen["metrics"]["exact_match"] == 50.0 and gen["metrics"]["rouge_l"] == 50.0
    assert run.summary["model"] == {"name": "echo", "url": openai_style_server, "backend": "remote"}
    assert 1 < _OpenAIStyle.most_in_flight <= 2


def test_api_url_and_key_from_the_shared_options_and_json_output(openai_style_server, datasets, tmp_path,
                                                                 monkeypatch):
    """--api-url/--api-key as infer and chat spell them, SWIFTCLI_API_URL/SWIFTCLI_API_KEY from the environment,
    and --output json prints summary.json itself on stdout."""
    args = ["--eval_dataset", str(datasets[1]), "--eval_mc_method", "generate"]
    typed = invoke(["eval", "--api_url", openai_style_server, "--api_key", "sekret", *args, "--eval_output_dir",
                    str(tmp_path / "typed"), "--output", "json"])
    assert typed.exit_code == 0, typed.output
    printed = json.loads(typed.stdout)
    assert printed == load_run(tmp_path / "typed").summary and printed["settings"]["eval_url"] == openai_style_server
    assert "sekret" not in (tmp_path / "typed" / "summary.json").read_text()
    monkeypatch.setenv("SWIFTCLI_API_URL", openai_style_server)
    monkeypatch.setenv("SWIFTCLI_API_KEY", "sekret")
    result = CliRunner().invoke(app, ["eval", *args, "--eval_output_dir", str(tmp_path / "env")],
                                env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert load_run(tmp_path / "env").summary["model"]["backend"] == "remote" and "accuracy" in result.stdout


def test_remote_errors_are_clear(openai_style_server, datasets, tmp_path):
    result = invoke(
        [
            "eval",
            "--eval_url",
            openai_style_server,
            "--eval_dataset",
            str(datasets[1]),
            "--eval_output_dir",
            str(tmp_path / "a"),
        ]
    )
    assert result.exit_code == 1 and "needs a valid API key" in result.output and "--api-key" in result.output
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = invoke(
        [
            "eval",
            "--eval_url",
            f"http://127.0.0.1:{port}/v1",
            "--eval_dataset",
            str(datasets[1]),
            "--eval_output_dir",
            str(tmp_path / "b"),
        ]
    )
    assert result.exit_code == 1 and f"cannot reach http://127.0.0.1:{port}/v1" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- real runs on the embedded model ---------------------------------------------------------------------------


# These runs check the generated-letter method for multiple choice (loglikelihood: test_eval_loglikelihood.py).
ENGINE_ARGS = ["--max_new_tokens", "48", "--eval_mc_method", "generate"]


@pytest.fixture(scope="module")
def engine_runs(vllm_engine, datasets, tmp_path_factory):
    """Two runs through the session engine (zero-shot and one-shot), made by the CLI in process."""
    root = tmp_path_factory.mktemp("eval-runs")
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("swiftcli.engines.loader.start_engine", lambda *a, **k: SharedEngine(vllm_engine))
        for name, extra in (("zero", []), ("one", ["--eval_few_shot", "1", "--seed", "1"])):
            args = [
                "eval",
                *[a for p in datasets for a in ("--eval_dataset", str(p))],
                *ENGINE_ARGS,
                *extra,
                "--eval_output_dir",
                str(root / name),
            ]
            result = invoke(args)
            assert result.exit_code == 0, result.output
            runs[name] = (root / name, result)
    return runs


@pytest.mark.slow
def test_engine_run_writes_samples_summary_and_table(engine_runs):
    path, result = engine_runs["zero"]
    run = load_run(path)
    qa, mc, gsm = run.summary["datasets"]
    assert [d["kind"] for d in (qa, mc, gsm)] == [GENERATION, MULTIPLE_CHOICE, GSM8K]
    assert (qa["scored"], qa["ok"], qa["failed"]) == (5, 3, 2)
    assert run.summary["counts"] == {"scored": 11, "ok": 9, "failed": 2}
    too_long = next(s for s in run.samples if s["dataset"] == "qa" and s["line"] == 5)
    assert too_long["status"] == "failed" and "context" in too_long["error"]
    assert run.summary["generation"]["temperature"] == 0.0 and run.summary["generation"]["max_new_tokens"] == 48
    assert run.summary["model"]["name"] == "smollm2-135m-instruct" and run.summary["timings"]["generate_s"] > 0
    assert all(len(d["sha256"]) == 64 for d in (qa, mc, gsm))
    france = next(s for s in run.samples if s["dataset"] == "qa" and s["line"] == 1)
    # The embedded model answers this one exactly, greedily.
    assert france["prediction"] == "The capital of France is Paris."
    assert france["scores"] == {"exact_match": 100.0, "rouge_l": 100.0, "bleu": 100.0}
    for entry in (mc, gsm):
        rows = [s for s in run.samples if s["dataset"] == entry["name"] and s["status"] == "ok"]
        assert entry["metrics"]["accuracy"] == pytest.approx(
            100 * sum(s["correct"] for s in rows) / len(rows), abs=1e-3
        )
        assert all(s["prompt_tokens"] > 0 and s["output_tokens"] > 0 for s in rows)
    assert "rouge_l" in result.stdout and "accuracy" in result.stdout and "gsm8k" in result.stdout


@pytest.mark.slow
def test_compare_two_engine_runs(engine_runs):
    zero, one = engine_runs["zero"][0], engine_runs["one"][0]
    result = invoke(["eval", "compare", str(zero), str(one)])
    assert result.exit_code == 0, result.output
    comparison = compare_runs(load_run(zero), load_run(one))
    assert len(comparison.metrics) == 7
    for row in comparison.metrics:
        assert f"{row.a:.2f}" in result.stdout and f"{row.b:.2f}" in result.stdout
    for flips in comparison.flips:
        # One row of each file became the few-shot example of the second run (with --seed 1: not the long one).
        assert flips.unmatched == 1 and flips.matched == {"qa": 4, "mc": 2, "gsm": 2}[flips.dataset]
        assert flips.matched == flips.both_right + flips.both_wrong + flips.right_to_wrong + flips.wrong_to_right


@pytest.mark.slow
def test_deploy_server_gives_the_same_scores(deploy_server, engine_runs, datasets, tmp_path):
    out = tmp_path / "served"
    args = [
        "eval",
        "--eval_url",
        deploy_server.base_url,
        *[a for p in datasets for a in ("--eval_dataset", str(p))],
        *ENGINE_ARGS,
        "--eval_output_dir",
        str(out),
    ]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    served, local = load_run(out), load_run(engine_runs["zero"][0])
    assert [d["metrics"] for d in served.summary["datasets"]] == [d["metrics"] for d in local.summary["datasets"]]
    assert [s["prediction"] for s in served.samples] == [s["prediction"] for s in local.samples]
