"""`swiftcli deploy`'s options reach the server as typed: settings, limits and the listen address, through the
real command and option dataclasses, with the server's start replaced by a recorder (no engine, no socket)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.config.commands import ListenConfig
from swiftcli.server.limits import ServerLimits


@pytest.fixture
def recorded(monkeypatch, embedded_spec):
    calls: list[tuple] = []

    def serve(settings, start, listen, **kwargs):
        calls.append((settings, start, listen))
        return 0

    monkeypatch.setattr("swiftcli.server.run.serve", serve)
    monkeypatch.setattr("swiftcli.cli.deploy.check_listen", lambda *args: None)
    monkeypatch.setattr("swiftcli.cli.output.engine_logs", lambda *args: None)
    monkeypatch.setattr("swiftcli.loading.resolve_spec", lambda *args, **kwargs: embedded_spec)
    return calls


def test_options_reach_the_server(recorded, monkeypatch):
    monkeypatch.setenv("SWIFTCLI_API_KEY", "from-env")
    result = CliRunner().invoke(app, ["deploy", "--host", "127.0.0.2", "--port", "8123", "--max_prompts", "3",
                                      "--served_model_name", "mine", "--shutdown_timeout", "2.5",
                                      "--max_new_tokens", "77", "-v"])
    assert result.exit_code == 0, result.output
    ((settings, _, listen),) = recorded
    assert (listen.host, listen.port, listen.shutdown_timeout, listen.log_level) == ("127.0.0.2", 8123, 2.5, "info")
    assert settings.api_key == "from-env" and settings.served_model_name == "mine"
    assert settings.limits == ServerLimits(max_prompts=3) and settings.default_max_tokens == 77
    assert settings.generation.max_new_tokens == 77


def test_defaults_are_the_dataclasses(recorded):
    result = CliRunner().invoke(app, ["deploy"])
    assert result.exit_code == 0, result.output
    ((settings, _, listen),) = recorded
    assert (listen.host, listen.port, listen.shutdown_timeout) == (ListenConfig.host, ListenConfig.port,
                                                                    ListenConfig.shutdown_timeout)
    assert listen.log_level == "warning" and settings.limits == ServerLimits() and settings.api_key is None
