"""Data parallel on the real CPU engine (vLLM's data-parallel AsyncLLM, one core per replica): a dataset run with
two replicas equals one engine's, in input order, through kill -9 and resume; `deploy --data_parallel_size 2`
shows each rank on /metrics and names a dead rank on /health; a Ray Data run equals a local run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from engine_lending import lend, start_with
from server_utils import free_port, start_server
from typer.testing import CliRunner

from swiftcli.cli.main import app

pytestmark = [pytest.mark.slow, pytest.mark.alone]

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["What is the capital of France?", "What is 2+2?", "Name a colour."]
LONG = [f"Write a long story about a {animal} who learns to {skill}."
        for animal in ("dragon", "cat", "fox") for skill in ("read", "sing", "fly")]
QUERIES = SHORT + LONG
ENV = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_LOGGING_LEVEL="ERROR", PYTHONPATH=str(ROOT))


def lines(path):
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.fixture
def rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"query": q, "response": str(i)}) + "\n" for i, q in enumerate(QUERIES)),
                    encoding="utf-8")
    return path


def one_engine_results(rows, out, monkeypatch, vllm_engine, args):
    """The same dataset on the session engine (one replica), through the same command."""
    lend(monkeypatch, vllm_engine)
    result = CliRunner().invoke(app, ["infer", "--val_dataset", str(rows), "--result_file", str(out), *args])
    assert result.exit_code == 0, result.output
    monkeypatch.undo()
    return lines(out)


def refuse_to_start(*args, **kwargs):
    raise AssertionError("an engine was started before the run's settings were checked")


def run_cli(args, timeout=600):
    return subprocess.run([sys.executable, "-m", "swiftcli.cli", *args], env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_dp2_dataset_equals_one_engine_through_kill_9_and_resume(rows, tmp_path, monkeypatch, vllm_engine):
    args = ["--max_new_tokens", "48"]
    reference = one_engine_results(rows, tmp_path / "one.jsonl", monkeypatch, vllm_engine, args)
    assert len(reference) == len(QUERIES)

    out = tmp_path / "dp2.jsonl"
    command = ["infer", "--val_dataset", str(rows), "--result_file", str(out), "--data_parallel_size", "2", *args]
    proc = subprocess.Popen([sys.executable, "-m", "swiftcli.cli", *command], env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 500
        while time.monotonic() < deadline and proc.poll() is None and len(lines(out)) < len(SHORT):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)  # the command only: its engine cores must notice and stop
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of its group (vLLM's data-parallel coordinator)
        proc.wait(30)
        proc.stderr.close()
    before = lines(out)
    assert len(SHORT) <= len(before) < len(QUERIES)
    assert before == reference[: len(before)]  # a valid prefix, in input order, equal to one engine's

    result = run_cli(command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming {out}: {len(before)} of {len(QUERIES)} rows" in result.stderr
    assert lines(out) == reference  # no duplicate, no gap, the same answers as one engine

    # Other settings must not mix into this file, and the command says so before it starts any engine.
    start_with(monkeypatch, refuse_to_start)
    changed = CliRunner().invoke(app, ["infer", *command[1:-1], "64"])
    assert changed.exit_code != 0 and "holds the results of another run" in changed.output, changed.output
    assert lines(out) == reference


def test_deploy_dp2_ranks_on_metrics_and_a_dead_rank_on_health():
    from openai import OpenAI

    server = start_server(["--data_parallel_size", "2", "--max_new_tokens", "32"], env={"PYTHONPATH": str(ROOT)},
                          timeout=600, one_process=False)
    try:
        client = OpenAI(base_url=server.base_url, api_key="none")
        model = client.models.list().data[0].id
        for question in ("What is 2+2?", "What is the capital of France?"):
            answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                    max_tokens=16, temperature=0)
            assert answer.choices[0].message.content
        metrics = httpx.get(f"{server.root_url}/metrics").text
        ranks = {}
        for line in metrics.splitlines():
            if line.startswith("swiftcli_engine_rank_up{"):
                labels = dict(part.split("=") for part in line[line.index("{") + 1:line.index("}")].split(","))
                ranks[labels["rank"].strip('"')] = (int(labels["pid"].strip('"')), float(line.split()[-1]))
        assert set(ranks) == {"0", "1"} and all(up == 1.0 for _, up in ranks.values()), metrics
        assert 'swiftcli_engine_rank_unfinished_requests{rank="1"}' in metrics

        os.kill(ranks["1"][0], signal.SIGKILL)
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"{server.root_url}/health", timeout=5)
            except httpx.HTTPError:
                break  # already exited
            if health.status_code == 503:
                break
            time.sleep(0.2)
        assert health is not None and health.status_code == 503
        message = health.json()["message"]
        assert f"data-parallel rank 1 (pid {ranks['1'][0]}, exit code -9)" in message
        assert "its log: deploy-" in message and "/" not in message.split("its log: ")[1].split(" under")[0]
        assert server.process.wait(60) != 0  # then it exits, so that a supervisor restarts it
    finally:
        server.stop()


@pytest.fixture
def ray_cluster(tmp_path):
    """A local Ray cluster with 2 CPUs (`ray start --head --block`), stopped by its process group at the end."""
    pytest.importorskip("ray.data.llm")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray is None:
        pytest.skip("the ray command is not installed")
    port = free_port()
    temp = Path("/tmp") / f"swiftcli-ray-{port}"  # Ray's socket paths must stay short
    head = subprocess.Popen([ray, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert head.poll() is None, "ray start exited"
            if any(temp.glob("session_*/sockets/raylet*")):
                break
            time.sleep(0.5)
        yield address
    finally:
        stop_ray_cluster(head, temp)


def stop_ray_cluster(head, temp):
    """SIGTERM to the cluster's process group, then SIGKILL to whatever of it is left after a few seconds:
    `ray start --block` otherwise spends about 30 s stopping the processes of a cluster a test is done with."""
    os.killpg(head.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(10)
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_data_run_equals_a_local_run_and_resumes_one(rows, tmp_path, monkeypatch, vllm_engine, ray_cluster):
    args = ["--max_new_tokens", "32"]
    reference = one_engine_results(rows, tmp_path / "local.jsonl", monkeypatch, vllm_engine, args)
    out = tmp_path / "ray.jsonl"
    shutil.copy(tmp_path / "local.jsonl", out)
    shutil.copy(tmp_path / "local.jsonl.run.json", tmp_path / "ray.jsonl.run.json")
    out.write_text("".join(line + "\n" for line in reference[:2]), encoding="utf-8")  # a local run cut short

    result = run_cli(["infer", "--val_dataset", str(rows), "--result_file", str(out), "--ray_address", ray_cluster,
                      *args])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming {out}: 2 of {len(QUERIES)} rows" in result.stderr
    assert lines(out) == reference
