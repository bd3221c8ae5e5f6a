"""Every command with bad values: a wrong type, out of range, a missing file, a folder that cannot be written.
Each answer is one `Error:` line (and at most a hint), exit code 2 for usage errors, nothing on stdout, no
traceback, and no model resolved, downloaded or loaded: the model-loading functions fail the test if reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from swiftcli.cli.main import app


class ModelLoadReached(AssertionError):
    pass


@pytest.fixture
def no_model_load(monkeypatch):
    def reached(*args, **kwargs):
        raise ModelLoadReached("a bad value got as far as loading the model")

    for target in ("swiftcli.engines.loader.start_engine", "swiftcli.loading.resolve_spec",
                   "swiftcli.hub.resolve.resolve_model", "swiftcli.engines.create_engine",
                   "swiftcli.engines.create_async_engine", "swiftcli.export.merge.merge_lora",
                   "swiftcli.export.quantize.quantize_model", "swiftcli.cli.output.engine_logs"):
        monkeypatch.setattr(target, reached)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    plain = root / "plain.txt"
    plain.write_text("a file where a folder is needed\n", encoding="utf-8")
    rows = root / "rows.jsonl"
    rows.write_text('{"query": "Hi"}\n', encoding="utf-8")
    return {"FILE": str(plain), "ROWS": str(rows), "MISSING": str(root / "missing.jsonl"),
            "UNDER_FILE": str(plain / "sub" / "out.jsonl"), "DIR": str(root)}


# (arguments, exit code, words the error line holds); FILE, ROWS, MISSING, UNDER_FILE and DIR are put in.
CASES = [
    # infer: types, ranges, files, folders, names checked before loading, the prompt's form
    (["infer", "--temperature", "abc", "x"], 2, "'--temperature'"),
    (["infer", "--top_p", "5", "x"], 2, "--top-p must be in (0, 1]"),
    (["infer", "--max_new_tokens", "0", "x"], 2, "--max-new-tokens must be at least 1"),
    (["infer", "--tensor_parallel_size", "-1", "x"], 2, "--tensor-parallel-size must be at least 1"),
    (["infer", "--enforce_eager", "maybe", "x"], 2, "expected true or false"),
    (["infer", "--infer_backend", "tpu", "x"], 2, "'tpu' is not one of vllm, pt"),
    (["infer", "--dtype", "int3", "x"], 2, "dtype"),
    (["infer", "--template_type", "nosuch", "x"], 2, "--template-type: unknown template_type 'nosuch'"),
    (["infer", "--engine_kwargs", '{"max_num_seq": 4}', "x"], 2, "no argument 'max_num_seq'"),
    (["infer", "--engine_kwargs", "{oops", "x"], 2, "--engine-kwargs is not valid JSON"),
    (["infer", "--output", "yaml", "x"], 2, "'yaml' is not one of text, json"),
    (["infer", "--query", "What", "is", "it"], 2, "--query takes one question"),
    (["infer", "What", "is", "it"], 2, "3 words were given as separate arguments"),
    (["infer", "--val_dataset", "MISSING"], 2, "does not exist"),
    (["infer", "--val_dataset", "ROWS", "--val_dataset_sample", "-5"], 2, "val-dataset-sample"),
    (["infer", "--val_dataset", "ROWS", "--result_file", "UNDER_FILE"], 2, "--result-file"),
    (["infer", "--val_dataset", "ROWS", "--result_file", "DIR"], 2, "is a folder"),
    (["infer", "--val_dataset", "ROWS", "--result_dir", "FILE"], 2, "--result-dir"),
    (["infer", "--val_dataset", "ROWS", "--result_file", "a.jsonl", "--result_dir", "DIR"], 2, "not both"),
    (["infer", "--max_concurrency", "4", "x"], 2, "--max-concurrency applies to --api-url"),
    (["infer", "--api_url", "http://127.0.0.1:9/v1", "--max_concurrency", "0", "x"], 2, "--max-concurrency"),
    (["infer", "--api_url", "http://127.0.0.1:9/v1", "--ckpt_dir", "DIR", "x"], 2, "configure a local model"),
    (["infer", "--structured_output", "[1]", "x"], 2, "--structured-output"),
    (["infer", "--bogus", "x"], 2, "No such option: --bogus"),
    (["infer", "--num_beams", "4", "x"], 2, "ms-swift's --num-beams is not supported"),
    (["infer", "--load_args", "false", "x"], 2, "--load-args false"),
    # chat
    (["chat", "--temperature", "-1"], 2, "--temperature must be >= 0"),
    (["chat", "What", "is", "it"], 2, "3 words were given"),
    (["chat", "--template_type", "nosuch"], 2, "unknown template_type"),
    (["chat", "--history_file", "DIR"], 2, "--history-file"),
    # deploy
    (["deploy", "--port", "70000"], 2, "--port must be in 1..65535"),
    (["deploy", "--port", "abc"], 2, "'--port'"),
    (["deploy", "--ssl_keyfile", "MISSING", "--ssl_certfile", "MISSING"], 2, "does not exist"),
    (["deploy", "--ssl_keyfile", "FILE"], 2, "TLS needs both"),
    (["deploy", "--lora_modules", "no-equals-sign"], 2, "is not NAME=PATH"),
    (["deploy", "--lora_modules", "a=MISSING"], 2, "is not a LoRA adapter directory"),
    (["deploy", "--max_concurrent_requests", "0"], 2, "--max-concurrent-requests must be at least 1"),
    (["deploy", "--shutdown_timeout", "-1"], 2, "--shutdown-timeout must be >= 0"),
    (["deploy", "--max_prompts", "0"], 2, "--max-prompts must be at least 1"),
    (["deploy", "--tool_call_parser", "nope"], 2, "unknown tool call parser 'nope'"),
    (["deploy", "--engine_kwargs", '{"nope": 1}'], 2, "no argument 'nope'"),
    # app-ui
    (["app-ui", "--port", "0"], 2, "--port must be between 1 and 65535"),
    (["app-ui", "--max_concurrency", "0"], 2, "--max-concurrency must be at least 1"),
    (["app-ui", "--auth", "nocolon"], 2, "a login must be USER:PASSWORD"),
    (["app-ui", "--auth_file", "MISSING"], 2, "cannot read --auth-file"),
    (["app-ui", "--share", "maybe"], 2, "expected true or false"),
    (["app-ui", "--api_url", "http://127.0.0.1:9/v1", "--ckpt_dir", "DIR"], 2, "--api-url chats with a running"),
    # export
    (["export"], 2, "nothing to export"),
    (["export", "--quant_bits", "3"], 2, "--quant-bits must be 4 or 8"),
    (["export", "--quant_bits", "4", "--quant_method", "xyz"], 2, "'xyz' is not one of gptq, awq"),
    (["export", "--quant_bits", "4", "--quant_n_samples", "0"], 2, "--quant-n-samples must be at least 1"),
    (["export", "--quant_bits", "4", "--dataset", "MISSING"], 2, "does not exist"),
    (["export", "--merge_lora", "true"], 2, "--merge-lora true needs --ckpt-dir"),
    (["export", "--quant_bits", "4", "--output_dir", "UNDER_FILE"], 2, "--output-dir"),
    # check
    (["check", "--max_new_tokens", "0"], 2, "--max-new-tokens must be at least 1"),
    (["check", "--near_tie", "-1"], 2, "must be >= 0"),
    (["check", "--prompts_file", "MISSING"], 2, "does not exist"),
    (["check", "--merge_lora", "true"], 2, "drop --merge-lora"),
    (["check", "--output_json", "UNDER_FILE"], 2, "--output-json"),
    # models, and the root
    (["models", "--output", "yaml"], 2, "'yaml' is not one of text, json"),
    (["--bogus"], 2, "No such option: --bogus"),
    (["nosuch"], 2, "No such command 'nosuch'"),
]


def _fill(args: list[str], files: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        for name, path in files.items():
            arg = arg.replace(name, path) if arg == name or arg.startswith(f"{name}") or f"={name}" in arg else arg
        out.append(arg)
    return out


@pytest.mark.parametrize("args, code, words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_value_is_one_error_line_before_any_load(args, code, words, files, no_model_load):
    args = _fill(args, files)
    result = CliRunner().invoke(app, args)
    assert not isinstance(result.exception, ModelLoadReached), f"{args}: reached the model load"
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("Error: "), result.stderr
    assert words in lines[0], result.stderr
    assert len(lines) <= 2 and all(line.startswith(("Error: ", "Hint: ")) for line in lines), result.stderr
    assert "Traceback" not in result.output and "╭" not in result.output
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["infer", "--temperature", "-1", "x", "-v"],
                                  ["infer", "--temperature", "-1", "x", "--debug"],
                                  ["infer", "--temperature", "-1", "--quiet", "x"],
                                  ["infer", "-q", "--temperature", "-1", "x"]])
def test_global_flags_work_after_the_command(args, no_model_load):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "--temperature must be >= 0" in result.stderr and "No such option" not in result.stderr
    if "--debug" in args:
        assert "Traceback" in result.stderr  # --debug after the command is the root's --debug


def test_json_output_spellings_agree(no_model_load):
    outputs = [CliRunner().invoke(app, args).stdout for args in
               (["models", "--output", "json"], ["models", "-o", "json"], ["models", "--json"],
                ["models", "--json", "-q"])]
    assert outputs[0].startswith("[") and all(out == outputs[0] for out in outputs)


def test_refused_ms_swift_option_names_the_closest_swiftcli_option(no_model_load):
    result = CliRunner().invoke(app, ["infer", "--max_batch_size", "8", "x"])
    assert result.exit_code == 2 and "--max-num-seqs" in result.stderr


def test_settled_ms_swift_options_are_accepted_with_their_value(files, monkeypatch, no_model_load):
    """`--load_args true` and `--stream true` say what swiftcli does anyway: accepted, and the command runs on
    (here up to the model load, which the fixture stops)."""
    result = CliRunner().invoke(app, ["infer", "--load_args", "true", "--stream", "true", "x"])
    assert isinstance(result.exception, ModelLoadReached), result.output


def test_root_help_lists_each_switch_without_a_metavar():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert "<bool>" not in result.stdout and "<list[str]>" not in result.stdout
    for command in ("infer", "chat", "deploy", "app-ui", "export", "check", "models"):
        text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "100"}).stdout
        assert "<" not in text.replace("<think>", "").replace("</think>", ""), command


def test_path_kinds(tmp_path: Path, no_model_load):
    """A folder given for --result-file, a file given for --result-dir: named for what they are."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "Hi"}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["infer", "--val_dataset", str(rows), "--result_dir", str(rows)])
    assert result.exit_code == 2 and "is a file" in result.stderr
