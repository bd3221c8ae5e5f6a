"""Downloads for real without the internet: `swiftcli download`, `models --local`, `rm` and `infer` in subprocesses,
with the real huggingface_hub client against a local endpoint (tests/hub_endpoint.py) that serves the embedded
model's files as the hub does. Each test has its own HF_HOME and SWIFTCLI_HOME."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
from hub_endpoint import GRANTED_TOKEN, HubEndpoint, repo_from_folder, repo_with_sizes

ROOT = Path(__file__).resolve().parents[1]
MODEL = "swiftcli-test/SmolLM2-135M-Instruct"
GATED = "swiftcli-test/SmolLM2-gated"
HUGE = "swiftcli-test/huge"
# huggingface_hub writes 10 MiB chunks: the endpoint stops after two and a half, the test waits for the first.
WRITTEN = 10 * 1024 * 1024
STALL_AFTER = 25 * 1024 * 1024


@pytest.fixture(scope="module")
def hub(embedded_spec):
    files = embedded_spec.model_dir
    endpoint = HubEndpoint({
        MODEL: repo_from_folder(MODEL, files),
        GATED: repo_from_folder(GATED, files, gated=True, names=("config.json", "generation_config.json")),
        HUGE: repo_with_sizes(HUGE, {"config.json": 10, "model.safetensors": 10**16}),
    }).start()
    yield endpoint
    endpoint.stop()


def hub_env(hub: HubEndpoint, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_", "MODELSCOPE_")) and k not in ("USE_HF", "SWIFTCLI_HOME")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home / "hf"), SWIFTCLI_HOME=str(home / "swiftcli"), USE_HF="1",
               MODELSCOPE_CACHE=str(home / "modelscope"),
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT), COLUMNS="200", **extra)
    return env


def swiftcli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swiftcli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def local_models(env: dict[str, str]) -> list[dict]:
    done = swiftcli(env, "models", "--local", "--output", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def same_files(snapshot: Path, source: Path) -> None:
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        assert (snapshot / name).read_bytes() == (source / name).read_bytes(), name


def test_download_shows_progress_lists_and_reuses_the_cache_offline(hub, embedded_spec, tmp_path):
    env = hub_env(hub, tmp_path)
    done = swiftcli(env, "download", MODEL)
    assert done.returncode == 0, done.stderr
    snapshot = Path(done.stdout.strip())
    same_files(snapshot, embedded_spec.model_dir)
    size = sum(f.stat().st_size for f in embedded_spec.model_dir.iterdir() if not f.name.startswith("."))
    mb = f"{size / 1e6:.1f} MB"
    assert f"Downloading {MODEL} ({mb})" in done.stderr  # the size is known before the first byte
    assert f"Downloaded {MODEL}: {mb} in " in done.stderr

    [row] = local_models(env)
    assert (row["id"], row["hub"], row["revision"], row["path"]) == (MODEL, "huggingface", "main", str(snapshot))
    assert row["size"] == size and row["partial"] == 0 and row["last_used"] > time.time() - 300

    asked = len(hub.requests)
    again = swiftcli({**env, "HF_HUB_OFFLINE": "1"}, "pull", MODEL)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(snapshot) and "Downloading" not in again.stderr
    online = swiftcli(env, "download", MODEL)  # cached: used without asking the endpoint, even when online
    assert online.returncode == 0 and online.stdout.strip() == str(snapshot)
    assert len(hub.requests) == asked


def test_local_dir_gets_the_files_and_loses_stale_partials(hub, embedded_spec, tmp_path):
    env = hub_env(hub, tmp_path)
    target = tmp_path / "models" / "smollm2"
    stale = target / ".cache" / "huggingface" / "download" / "abc.def.0123abcd.incomplete"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x" * 1000)  # what a killed download into this folder leaves
    done = swiftcli(env, "download", MODEL, "--local_dir", str(target))
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == target
    same_files(target, embedded_spec.model_dir)
    assert not stale.exists()


def size_or_zero(path: Path) -> int:
    """A small file's temporary copy is renamed between the listing and the stat: it counts as not written yet."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_rerun_after_an_interrupt_completes_and_leaves_no_partial_file(hub, embedded_spec, tmp_path, stop):
    env = hub_env(hub, tmp_path)
    blobs = tmp_path / "hf" / "hub" / "models--swiftcli-test--SmolLM2-135M-Instruct" / "blobs"
    hub.release.clear()
    hub.stall_after = STALL_AFTER
    try:
        proc = subprocess.Popen([sys.executable, "-m", "swiftcli", "download", MODEL], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        partial: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for p in blobs.glob("*.incomplete") if size_or_zero(p) >= WRITTEN]
            if partial:
                break
            time.sleep(0.05)
        assert partial, "the download never reached the stall point"
        os.kill(proc.pid, stop)
        _, stderr = proc.communicate(timeout=30)  # Ctrl-C too: at once, not when the stalled file ends
    finally:
        hub.stall_after = None
        hub.release.set()
    if stop == signal.SIGINT:
        assert proc.returncode == 130 and "Interrupted." in stderr and "Traceback" not in stderr
    assert partial[0].is_file()  # huggingface_hub's temporary file stays behind
    [row] = local_models(env)
    assert row["partial"] >= WRITTEN

    sent_before = dict(hub.sent)
    done = swiftcli(env, "download", MODEL)
    assert done.returncode == 0, done.stderr
    same_files(Path(done.stdout.strip()), embedded_spec.model_dir)
    assert not list(blobs.glob("*.incomplete"))  # the orphan was removed after the rerun
    [row] = local_models(env)
    assert row["partial"] == 0
    # What resuming costs with huggingface_hub 2.x: the killed file starts over (recorded, not a promise).
    refetched = hub.sent["model.safetensors"] - sent_before.get("model.safetensors", 0)
    weights = (embedded_spec.model_dir / "model.safetensors").stat().st_size
    assert weights <= refetched + STALL_AFTER

    refused = swiftcli(env, "rm", MODEL)  # not a terminal: no question, so --yes is needed
    assert refused.returncode == 2 and "--yes" in refused.stderr
    removed = swiftcli(env, "rm", MODEL, "--yes")
    assert removed.returncode == 0, removed.stderr
    assert local_models(env) == [] and not blobs.exists()


def test_gated_needs_a_login_and_a_granted_token_downloads(hub, embedded_spec, tmp_path):
    files = embedded_spec.model_dir
    env = hub_env(hub, tmp_path)
    anonymous = swiftcli(env, "download", GATED)
    assert anonymous.returncode == 1
    assert error_line(anonymous) == (f"Error: {GATED} is gated on Hugging Face ({hub.url}): its files need an "
                                     "account that accepted its terms")
    assert "hf auth login" in anonymous.stderr and "HF_TOKEN" in anonymous.stderr
    refused = swiftcli({**env, "HF_TOKEN": "hf_not_granted"}, "download", GATED)
    assert refused.returncode == 1 and "is gated" in error_line(refused)
    granted = swiftcli({**env, "HF_TOKEN": GRANTED_TOKEN}, "download", GATED, "--revision", "main")
    assert granted.returncode == 0, granted.stderr
    assert (Path(granted.stdout.strip()) / "config.json").read_bytes() == (files / "config.json").read_bytes()


def test_not_found_offline_miss_and_disk_space_name_their_cause(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    missing = swiftcli(env, "download", "swiftcli-test/no-such-model")
    assert missing.returncode == 1
    assert error_line(missing) == f"Error: no model swiftcli-test/no-such-model on Hugging Face ({hub.url})"

    revision = swiftcli(env, "download", MODEL, "--revision", "v9")
    assert error_line(revision) == f"Error: {MODEL} on Hugging Face has no revision 'v9'"

    offline = swiftcli({**env, "HF_HUB_OFFLINE": "1"}, "download", MODEL)
    assert error_line(offline) == (f"Error: {MODEL} is not in the Hugging Face cache ({tmp_path / 'hf' / 'hub'}) "
                                   "and HF_HUB_OFFLINE=1 forbids downloading it")

    huge = swiftcli(env, "download", HUGE)
    line = error_line(huge)
    assert line.startswith(f"Error: {HUGE} needs 10000.0 TB but ") and line.endswith(" free")
    assert not any("/resolve/" in r and HUGE in r for r in hub.requests)  # refused before any file

    as_model = swiftcli(env, "infer", "--model", "swiftcli-test/no-such-model", "--query", "hi")
    assert error_line(as_model) == (f"Error: no model swiftcli-test/no-such-model on Hugging Face ({hub.url}), "
                                    "and there is no local folder swiftcli-test/no-such-model")


def test_a_missing_local_folder_is_named_without_asking_a_hub(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    (tmp_path / "output").mkdir()
    asked = len(hub.requests)
    for model, expected in [
        ("output/checkpoint-100", "Error: no such folder: output/checkpoint-100 (output exists, but has no "
                                  "checkpoint-100)"),
        ("./weights", f"Error: no such folder: ./weights (from {tmp_path})"),
    ]:
        done = subprocess.run([sys.executable, "-m", "swiftcli", "infer", "--model", model, "--query", "hi"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1 and error_line(done) == expected
    assert len(hub.requests) == asked


@pytest.mark.slow
def test_infer_answers_offline_from_the_hub_cache(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    assert swiftcli(env, "download", MODEL).returncode == 0
    asked = len(hub.requests)
    done = swiftcli({**env, "HF_HUB_OFFLINE": "1"}, "infer", "--model", MODEL, "--infer_backend", "pt",
                    "--dtype", "fp32", "What is the capital of France?", timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout  # greedy float32: "The capital of France is Paris."
    assert len(hub.requests) == asked


def test_a_terminal_shows_a_progress_bar_with_bytes_rate_and_eta(hub, embedded_spec, tmp_path):
    env = hub_env(hub, tmp_path)
    size = sum(f.stat().st_size for f in embedded_spec.model_dir.iterdir() if not f.name.startswith("."))
    mb = re.escape(f"{size / 1e6:.1f} MB")
    child = pexpect.spawn(sys.executable, ["-m", "swiftcli", "download", MODEL], env=env, dimensions=(24, 160),
                          encoding="utf-8", timeout=120)
    # The bar: bytes done / total, rate, time left (Rich colours each part).
    child.expect(rf"Downloading {MODEL} .*\d+\.\d/{mb}.*B/s.*\d:\d\d:\d\d")
    child.expect(rf"Downloaded {MODEL}: {mb} in ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_modelscope_is_the_default_hub_and_an_unreachable_one_is_named(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELSCOPE_")) and k != "USE_HF"}
    env.update(MODELSCOPE_ENDPOINT="http://127.0.0.1:9", MODELSCOPE_CACHE=str(tmp_path / "ms"),
               MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS="1", MODELSCOPE_API_MAX_RETRIES="1",
               SWIFTCLI_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    done = swiftcli(env, "download", "Qwen/Qwen2.5-0.5B-Instruct")
    assert done.returncode == 1
    assert error_line(done) == ("Error: cannot reach ModelScope (http://127.0.0.1:9) to download "
                                "Qwen/Qwen2.5-0.5B-Instruct: the connection failed")
    assert "USE_HF=1" in done.stderr
    assert not list((tmp_path / "ms").rglob("*Qwen*"))  # no empty folder left to look like a model
