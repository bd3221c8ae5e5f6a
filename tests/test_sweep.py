"""`swiftcli eval --ckpt_dir GLOB`: every checkpoint of a real peft training run on one vLLM engine (the session
engine, LoRA enabled), with per-checkpoint runs, a table, a learning-curve chart, an HTML report, and resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.errors import CheckpointError, UsageError
from swiftcli.eval.checkpoints import checkpoint_step, expand_checkpoints, is_sweep, resolve_checkpoints

QA = [
    {"query": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"query": "Name a primary colour.", "response": "Red"},
    {"query": "Say hello in French.", "response": "Bonjour"},
]
MC = "question,A,B,C,D,answer\nWhat is 2+2?,3,4,5,6,B\nWhich planet is red?,Venus,Jupiter,Mars,Saturn,C\n"


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, env={"COLUMNS": "160"})


class _Shared:
    """The session engine for the CLI, counted: a sweep must start exactly one engine for all LoRA checkpoints."""

    def __init__(self, engine: Any, starts: list[Any]) -> None:
        self._engine = engine
        self._starts = starts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("sweep-data")
    qa = root / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in QA))
    mc = root / "mc.csv"
    mc.write_text(MC)
    return [qa, mc]


def test_checkpoints_are_found_from_a_glob_a_list_or_the_run_folder(lora_run):
    pattern = str(lora_run / "checkpoint-*")
    assert is_sweep(pattern) and is_sweep(str(lora_run)) and not is_sweep(str(lora_run / "checkpoint-10"))
    assert [p.name for p in expand_checkpoints(pattern)] == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    listed = f"{lora_run / 'checkpoint-30'},{lora_run / 'checkpoint-10'}"
    assert [p.name for p in expand_checkpoints(listed)] == ["checkpoint-30", "checkpoint-10"]
    ckpts = resolve_checkpoints(listed)
    assert [(c.name, c.step, c.is_lora) for c in ckpts] == [("checkpoint-10", 10, True), ("checkpoint-30", 30, True)]
    assert len(expand_checkpoints(str(lora_run))) == 3


def test_step_comes_from_trainer_state_else_the_name(tmp_path, lora_run):
    assert checkpoint_step(lora_run / "checkpoint-20") == 20
    odd = tmp_path / "checkpoint-7"
    odd.mkdir()
    (odd / "trainer_state.json").write_text('{"global_step": 700}')
    assert checkpoint_step(odd) == 700
    assert checkpoint_step(tmp_path / "final") is None


def test_bad_sweeps_fail_before_any_engine(tmp_path, data_files, lora_run):
    with pytest.raises(UsageError, match="matches no folder"):
        expand_checkpoints(str(tmp_path / "nothing-*"))
    with pytest.raises(CheckpointError, match="does not exist"):
        expand_checkpoints(f"{lora_run / 'checkpoint-10'},{tmp_path / 'missing'}")
    result = invoke(["eval", "--eval_dataset", str(data_files[0]), "--ckpt_dir", str(lora_run / "checkpoint-*"),
                     "--merge_lora", "true", "--eval_output_dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--merge-lora true merges one checkpoint" in result.output
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def sweep_run(vllm_engine, lora_run, data_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    starts: list[Any] = []

    def start(spec, config, backend, asynchronous=False):
        starts.append((spec, config, backend))
        return _Shared(vllm_engine, starts)

    args = ["eval", *[a for p in data_files for a in ("--eval_dataset", str(p))], "--max_new_tokens", "24",
            "--ckpt_dir", str(lora_run / "checkpoint-*"), "--eval_output_dir", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("swiftcli.engines.loader.start_engine", start)
        first = invoke(args)
        assert first.exit_code == 0, first.output
        again = invoke(args)
    return out, first, again, starts


@pytest.mark.slow
def test_sweep_runs_all_lora_checkpoints_on_one_engine(sweep_run, lora_run, embedded_spec):
    out, first, _, starts = sweep_run
    spec, config, backend = starts[0]
    # The first invocation started one engine, on the base model, with LoRA on: no restart per checkpoint.
    assert backend == "vllm" and spec.adapters == () and spec.model_dir == embedded_spec.model_dir
    assert config.enable_lora and config.max_lora_rank >= 8 and config.max_loras >= 3
    assert len(starts) == 1 and "1 engine(s) started" in first.output
    sweep = json.loads((out / "sweep.json").read_text())
    rows = sweep["checkpoints"]
    assert [(r["checkpoint"], r["step"]) for r in rows] == [("checkpoint-10", 10), ("checkpoint-20", 20),
                                                           ("checkpoint-30", 30)]
    for row in rows:
        summary = json.loads((out / row["checkpoint"] / "summary.json").read_text())
        assert summary["model"]["ckpt_dir"] == str((lora_run / row["checkpoint"]).resolve())
        assert summary["model"]["shared_engine"] is True and summary["counts"]["ok"] == 5
    samples = {r["checkpoint"]: [json.loads(line)["prediction"]
                                 for line in (out / r["checkpoint"] / "samples.jsonl").read_text().splitlines()]
               for r in rows}
    # Each checkpoint answered with its own adapter: the growing adapter changes the answers.
    assert samples["checkpoint-10"] != samples["checkpoint-30"]
    scores = {r["checkpoint"]: r["score"] for r in rows}
    assert sweep["best"] == max(scores, key=lambda k: (scores[k], -int(k.split("-")[1])))
    assert f"best: {sweep['best']}" in first.output and "checkpoint-20" in first.output


@pytest.mark.slow
def test_sweep_answers_match_single_checkpoint_runs(sweep_run, vllm_engine, embedded_spec, lora_run, data_files):
    """Interleaving three adapters in one batch gives a checkpoint the answers it gets alone (greedy, float32)."""
    from swiftcli.config.spec import GenerationConfig
    from swiftcli.eval.evaluate import load_datasets
    from swiftcli.eval.runner import generate_adapters
    from swiftcli.registry.templates import get_template

    out, *_ = sweep_run
    (qa,) = load_datasets([data_files[0]])
    vllm_engine.add_lora("alone-checkpoint-20", str(lora_run / "checkpoint-20"))
    template = get_template(embedded_spec.template_type, vllm_engine.hf_tokenizer)
    config = GenerationConfig(temperature=0.0, do_sample=False, max_new_tokens=24)
    (alone,) = generate_adapters(vllm_engine, template, qa.items, config, ["alone-checkpoint-20"])
    swept = [json.loads(line) for line in (out / "checkpoint-20" / "samples.jsonl").read_text().splitlines()]
    assert [s["prediction"] for s in swept if s["dataset"] == "qa"] == [p.text for p in alone.predictions]


@pytest.mark.slow
def test_sweep_chart_has_a_point_per_checkpoint(sweep_run):
    from swiftcli.eval.report import load_run
    from swiftcli.eval.sweep import Sweep, SweepPoint
    from swiftcli.eval.sweep_report import learning_curve_figure

    out, *_ = sweep_run
    data = json.loads((out / "sweep.json").read_text())
    points = [SweepPoint(r["checkpoint"], r["path"], r["step"], out / r["checkpoint"],
                         load_run(out / r["checkpoint"]).summary) for r in data["checkpoints"]]
    figure = learning_curve_figure(Sweep(out, points, 1, 0.0, data["best"]))
    panels = figure.get_axes()
    # qa: rouge_l, bleu, exact_match; mc: accuracy, no_answer_found.
    assert len(panels) == 5
    for axes in panels:
        (curve,) = axes.get_lines()
        assert list(curve.get_xdata()) == [10.0, 20.0, 30.0]
    png = (out / "sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and f"<b>{data['best']}</b>" in page
    assert page.count("<tr") == 4  # header + one row per checkpoint


@pytest.mark.slow
def test_sweep_resumes_without_evaluating_again(sweep_run, data_files, lora_run, tmp_path):
    out, first, again, starts = sweep_run
    assert again.exit_code == 0, again.output
    assert len(starts) == 1  # the second invocation reused all three runs: no engine
    assert again.output.count("complete in an earlier run") == 3
    resumed = json.loads((out / "sweep.json").read_text())
    assert all(r["resumed"] for r in resumed["checkpoints"]) and resumed["engines_started"] == 0
    # Other settings in the same folder are refused rather than mixed into one curve.
    result = invoke(["eval", "--eval_dataset", str(data_files[0]), "--max_new_tokens", "24",
                     "--ckpt_dir", str(lora_run / "checkpoint-*"), "--eval_output_dir", str(out)])
    assert result.exit_code == 2 and "holds a run made with other datasets or settings" in result.output


# Twelve questions a 135M model gets partly right, so that scores differ between methods and checkpoints.
MC12 = """question,A,B,C,D,answer
What is the capital of France?,Berlin,Paris,Rome,Madrid,B
Which planet is known as the Red Planet?,Venus,Jupiter,Mars,Saturn,C
What is 2+2?,3,4,5,6,B
Which animal barks?,cat,dog,cow,fish,B
What colour is the sky on a clear day?,green,red,blue,black,C
How many days are in a week?,five,six,seven,eight,C
What do bees make?,milk,honey,silk,wool,B
Which is the largest ocean?,Atlantic,Indian,Arctic,Pacific,D
What is frozen water called?,steam,ice,sand,glass,B
Which season comes after winter?,spring,summer,autumn,night,A
What is the opposite of hot?,warm,cold,wet,loud,B
How many legs does a spider have?,four,six,eight,ten,C
"""


@pytest.mark.slow
def test_sweep_scores_equal_single_eval_runs(lend_session_engine, lora_run, data_files, tmp_path, monkeypatch):
    """A sweep scores each checkpoint exactly as `eval --ckpt_dir CKPT --vllm_enable_lora true` does: multiple
    choice by loglikelihood (recorded as such), the same per-option loglikelihoods, the same metrics."""
    vllm_engine = lend_session_engine
    mc12 = tmp_path / "mc12.csv"
    mc12.write_text(MC12)
    data = ["--eval_dataset", str(mc12), "--eval_dataset", str(data_files[0]), "--max_new_tokens", "24"]
    swept = invoke(["eval", *data, "--ckpt_dir", str(lora_run / "checkpoint-*"), "--eval_output_dir",
                    str(tmp_path / "sweep")])
    assert swept.exit_code == 0, swept.output
    scores: dict[str, tuple[float, float]] = {}
    for step in (10, 20):  # two single runs against the three-checkpoint sweep: the first, and the case
        name = f"checkpoint-{step}"
        # What a VllmEngine started for this one checkpoint does: the adapter loaded, and the default for requests.
        vllm_engine.add_lora(f"single-{name}", str(lora_run / name))
        monkeypatch.setattr(vllm_engine, "default_adapter", f"single-{name}")
        single = invoke(["eval", *data, "--ckpt_dir", str(lora_run / name), "--vllm_enable_lora", "true",
                         "--eval_output_dir", str(tmp_path / name)])
        assert single.exit_code == 0, single.output
        a, b = (json.loads((path / "summary.json").read_text()) for path in (tmp_path / "sweep" / name,
                                                                              tmp_path / name))
        assert [d["metrics"] for d in a["datasets"]] == [d["metrics"] for d in b["datasets"]], name
        assert [d["method"] for d in a["datasets"]] == [d["method"] for d in b["datasets"]]
        mc = a["datasets"][0]
        assert set(mc["metrics"]) == {"accuracy", "accuracy_norm"} and "loglikelihood" in mc["method"]["accuracy"]
        assert a["settings"]["mc_method"] == b["settings"]["mc_method"] == "loglikelihood"
        rows = [[json.loads(line) for line in (path / "samples.jsonl").read_text().splitlines()]
                for path in (tmp_path / "sweep" / name, tmp_path / name)]
        for x, y in zip(*rows, strict=True):
            assert x["prediction"] == y["prediction"] and x["correct"] == y["correct"]
            if x["dataset"] == "mc12":
                assert x["loglikelihoods"] == pytest.approx(y["loglikelihoods"], abs=1e-4)
        scores[name] = (mc["metrics"]["accuracy"], mc["metrics"]["accuracy_norm"])
    # The sweep's table and best checkpoint rest on those same numbers.
    table = {r["checkpoint"]: r for r in json.loads((tmp_path / "sweep" / "sweep.json").read_text())["checkpoints"]}
    for name, (accuracy, _) in scores.items():
        single = json.loads((tmp_path / name / "summary.json").read_text())
        mains = [d["metrics"][d["main_metric"]] for d in single["datasets"]]
        assert table[name]["score"] == pytest.approx(sum(mains) / len(mains), abs=1e-4) and mains[0] == accuracy
    print("sweep == single eval; mc12 (accuracy, accuracy_norm) per checkpoint:", scores)
