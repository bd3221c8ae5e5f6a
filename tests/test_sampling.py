"""The one sampling rule (`swiftcli.config.sampling`): a table of what the user typed over a command's defaults
and a base, and proof that `--api_url` sends exactly what a local run would use."""

from __future__ import annotations

from typing import Any

import pytest
from recording_server import RecordingServer
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.config.sampling import layer_sampling, merge_generation, sampling_to_send
from swiftcli.config.spec import GenerationConfig
from swiftcli.errors import UsageError

GREEDY = {"temperature": 0.0, "do_sample": False}  # infer's and eval's own defaults
# A checkpoint's generation_config.json that samples: what the engine (and a deploy of it) starts from.
BASE = GenerationConfig(temperature=0.6, top_p=0.9, top_k=30, repetition_penalty=1.05, max_new_tokens=100)

# (what the user typed, the command's defaults, what the merged config must say)
CASES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ({}, GREEDY, {"greedy": True, "temperature": 0.0}),
    ({"temperature": 0.7}, GREEDY, {"greedy": False, "temperature": 0.7, "top_p": 0.9}),
    ({"temperature": 0.9, "top_p": 0.5}, GREEDY, {"greedy": False, "temperature": 0.9, "top_p": 0.5}),
    ({"do_sample": True}, GREEDY, {"greedy": False, "temperature": 0.6}),
    ({"do_sample": False, "temperature": 0.7}, GREEDY, {"greedy": True, "temperature": 0.0}),
    ({"do_sample": True, "temperature": 0.0}, GREEDY, {"greedy": True, "do_sample": False}),
    ({"top_k": 5}, GREEDY, {"greedy": True, "top_k": 5}),
    ({"seed": 3, "stop": ["x"], "max_new_tokens": 9, "repetition_penalty": 1.2}, GREEDY,
     {"greedy": True, "seed": 3, "stop": ["x"], "max_new_tokens": 9, "repetition_penalty": 1.2}),
    ({}, {}, {"greedy": False, "temperature": 0.6, "top_k": 30}),
    ({"temperature": 0}, {}, {"greedy": True, "do_sample": False}),
    ({"temperature": None, "top_p": None}, {}, {"temperature": 0.6, "top_p": 0.9}),
    # A server's listed chat sampling (greedy with a repetition guard) is a command default like infer's.
    ({"do_sample": True}, {"temperature": 0.0, "repetition_penalty": 1.1},
     {"greedy": False, "temperature": 0.6, "repetition_penalty": 1.1}),
    ({"temperature": 0.8}, {"temperature": 0.0, "repetition_penalty": 1.1},
     {"greedy": False, "temperature": 0.8, "repetition_penalty": 1.1}),
]


@pytest.mark.parametrize(("given", "defaults", "expected"), CASES)
def test_the_one_rule(given, defaults, expected):
    typed = dict(given)
    config = merge_generation(BASE, given, **defaults)
    for name, value in expected.items():
        assert getattr(config, name) == value, (name, config)
    assert given == typed, "the rule is pure: what the user typed is left as it was"
    # A remote run sends the same layer; over the server's same base it is the same config.
    assert BASE.copy(**sampling_to_send(given, **defaults)) == config
    assert layer_sampling(given, **defaults) == sampling_to_send(given, **defaults)


@pytest.mark.parametrize(("given", "message"), [
    ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"nucleus": 0.5}, "nucleus"),
])
def test_bad_settings_are_refused_before_anything_is_sent(given, message):
    with pytest.raises((UsageError, TypeError), match=message):
        sampling_to_send(given)


# ---- every sampling option through `swiftcli infer --api_url`, to a server that records what it receives ----

# (command-line options, the same settings as the local path receives them)
SENT: list[tuple[list[str], dict[str, Any]]] = [
    ([], {}),
    (["--temperature", "0.7"], {"temperature": 0.7}),
    (["--temperature", "0.9", "--top_p", "0.5"], {"temperature": 0.9, "top_p": 0.5}),
    (["--do_sample", "true"], {"do_sample": True}),
    (["--do_sample", "false", "--temperature", "0.7"], {"do_sample": False, "temperature": 0.7}),
    (["--do_sample", "true", "--temperature", "0.5", "--top_p", "0.8", "--top_k", "7", "--seed", "11",
      "--stop", "Rome", "--stop", "Berlin", "--max_new_tokens", "33", "--repetition_penalty", "1.3"],
     {"do_sample": True, "temperature": 0.5, "top_p": 0.8, "top_k": 7, "seed": 11, "stop": ["Rome", "Berlin"],
      "max_new_tokens": 33, "repetition_penalty": 1.3}),
    (["--top_k", "4", "--repetition_penalty", "1.1"], {"top_k": 4, "repetition_penalty": 1.1}),
]
# The request's name for each GenerationConfig field.
WIRE = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "seed": "seed", "stop": "stop",
        "max_new_tokens": "max_tokens", "repetition_penalty": "repetition_penalty"}


@pytest.mark.slow
def test_api_url_sends_what_a_local_run_would_use():
    from swiftcli.cli.infer import INFER_DEFAULTS

    with RecordingServer() as server:
        for args, given in SENT:
            result = CliRunner().invoke(app, ["infer", "--api_url", server.url, "--query", "Capital of France?",
                                              *args], env={"COLUMNS": "200"})
            assert result.exit_code == 0, result.output
            assert "Paris." in result.stdout
            body = server.bodies.pop()
            local = merge_generation(BASE, given, **INFER_DEFAULTS)  # what `infer` without --api_url uses
            assert body["model"] == "recorder" and body["messages"][-1]["content"] == "Capital of France?"
            # Greedy locally is temperature 0 on the wire, whatever else was typed.
            if local.greedy:
                assert body["temperature"] == 0.0, (args, body)
            elif "temperature" in body:
                assert body["temperature"] == local.temperature, (args, body)
            else:  # sampling at the model's temperature: the server's default is the same base
                assert local.temperature == BASE.temperature, (args, body)
            for name, wire in WIRE.items():
                if name == "temperature":
                    continue
                if wire in body:
                    assert body[wire] == getattr(local, name), (args, name, body)
                else:  # left to the server, whose default is the base the local run starts from too
                    assert getattr(local, name) == getattr(BASE, name), (args, name, body)
            assert not set(body) - {"model", "messages", "n", "stream", *WIRE.values()}, body
