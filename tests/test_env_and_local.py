"""`swiftcli env` and `swiftcli models --local` on converted models, in process (no hub, no engine)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from swiftcli.cli.main import app


def test_env_reports_versions_paths_and_redacts_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("SWIFTCLI_HOME", str(tmp_path))
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("SWIFTCLI_API_KEY", "sk-secret")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done = CliRunner().invoke(app, ["env", "--output", "json"])
    assert done.exit_code == 0, done.output
    info = json.loads(done.stdout)
    assert info["versions"]["swiftcli"] and info["versions"]["python"] and info["versions"]["torch"]
    assert info["paths"]["swiftcli_home"] == str(tmp_path) and info["paths"]["logs"] == str(tmp_path / "logs")
    assert info["environment"]["HF_HUB_OFFLINE"] == "1"
    assert info["environment"]["HF_TOKEN"] == info["environment"]["SWIFTCLI_API_KEY"] == "<redacted>"
    assert "secret" not in done.output
    text = CliRunner().invoke(app, ["env"])
    assert text.exit_code == 0 and "vllm platform:" in text.stdout and "secret" not in text.output
    assert CliRunner().invoke(app, ["env", "--output", "yaml"]).exit_code == 2


def test_models_local_lists_a_converted_model_and_rm_removes_it(monkeypatch, tmp_path):
    monkeypatch.setenv("SWIFTCLI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setattr("swiftcli.hub.local.cache_dirs",
                        lambda: {"huggingface": tmp_path / "hf", "modelscope": tmp_path / "ms"})
    model = tmp_path / "home" / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / ".swiftcli-complete").write_text("{}")
    (tmp_path / "home" / "models" / "unfinished").mkdir()  # no marker: a conversion that never finished
    done = CliRunner().invoke(app, ["models", "--local", "--output", "json"])
    assert done.exit_code == 0, done.output
    [row] = json.loads(done.stdout)
    assert (row["id"], row["hub"], row["path"], row["size"]) == ("tiny", "swiftcli", str(model), 2 + 2)
    removed = CliRunner().invoke(app, ["rm", "tiny", "--yes"])
    assert removed.exit_code == 0 and not model.exists()
    missing = CliRunner().invoke(app, ["rm", "tiny", "--yes"])
    assert missing.exit_code == 1 and "no model tiny on disk" in missing.output
