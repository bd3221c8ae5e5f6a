"""`swiftcli infer` with images on the tiny vision-language model: --query with --images, stdin JSON, and dataset
rows in ms-swift's, OpenAI's and alpaca's shapes, each answered like the same request through the Python API."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from swiftcli.cli.main import app
from swiftcli.config.spec import GenerationConfig
from swiftcli.generation.core import infer
from swiftcli.registry.templates import get_template

pytestmark = pytest.mark.slow
MAX = ["--max_new_tokens", "6"]


@pytest.fixture
def lend_vlm(vlm_engine, monkeypatch):
    from engine_lending import lend

    lend(monkeypatch, vlm_engine)
    return vlm_engine


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("pics")
    for name, seed in (("a", 3), ("b", 4)):
        pixels = (np.random.RandomState(seed).rand(36, 44, 3) * 255).astype("uint8")
        Image.fromarray(pixels).save(root / f"{name}.png")
    return root


def expected(engine, request) -> str:
    template = get_template("hf", engine.hf_tokenizer)
    config = GenerationConfig(max_new_tokens=6, temperature=0.0, do_sample=False)
    (answer,) = infer(engine, template, [request], config)
    return answer.response


def run(args, stdin=None):
    result = CliRunner().invoke(app, args, input=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_query_with_images_in_ms_swift_form(lend_vlm, tiny_vlm, pictures):
    a, b = str(pictures / "a.png"), str(pictures / "b.png")
    out = run(["infer", "--model", str(tiny_vlm), "--query", "<image>and<image>?", "--images", a, b, *MAX])
    want = expected(lend_vlm, {"query": "<image>and<image>?", "images": [a, b]})
    assert out.strip() == want.strip() and want.strip()
    other = expected(lend_vlm, {"query": "<image>and<image>?", "images": [b, a]})
    assert other != want  # the images matter, and in order


def test_stdin_json_with_images(lend_vlm, tiny_vlm, pictures, monkeypatch):
    monkeypatch.chdir(pictures)
    row = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}},
                                                     {"type": "text", "text": "What is it?"}]}]}
    out = run(["infer", "--model", str(tiny_vlm), "--output", "json", *MAX], stdin=json.dumps(row))
    line = json.loads(out)
    want = expected(lend_vlm, {"query": "<image>What is it?", "images": [str(pictures / "a.png")]})
    assert line["response"] == want
    assert line["usage"]["prompt_tokens"] > 20  # the image's tokens are counted


def test_dataset_rows_with_images_in_three_shapes_and_resume_keys(lend_vlm, tiny_vlm, pictures, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "img").mkdir()
    (data / "img" / "a.png").write_bytes((pictures / "a.png").read_bytes())
    uri = "data:image/png;base64," + base64.b64encode((pictures / "b.png").read_bytes()).decode()
    rows = [
        {"query": "<image>Describe.", "response": "x", "images": ["img/a.png"]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Describe."},
                                                   {"type": "image_url", "image_url": {"url": uri}}]}]},
        {"instruction": "Describe.", "input": "", "output": "y", "images": ["img/a.png"]},
    ]
    dataset = data / "rows.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = tmp_path / "out.jsonl"
    run(["infer", "--model", str(tiny_vlm), "--val_dataset", str(dataset), "--result_file", str(result), *MAX])
    lines = [json.loads(x) for x in result.read_text().splitlines()]
    a = str((data / "img" / "a.png").resolve())
    assert lines[0]["images"] == [a] and lines[2]["images"] == [a]
    assert lines[0]["images_sha256"] == lines[2]["images_sha256"]
    assert lines[0]["response"] == expected(lend_vlm, {"query": "<image>Describe.", "images": [a]})
    assert lines[1]["response"] == expected(lend_vlm, {"query": "Describe.<image>", "images": [uri]})
    assert lines[2]["response"] == expected(lend_vlm, {"query": "Describe.", "images": [a]})

    # The same rows resume as done; a changed image is a changed row, refused as a resume of another run.
    again = CliRunner().invoke(app, ["infer", "--model", str(tiny_vlm), "--val_dataset", str(dataset),
                                     "--result_file", str(result), *MAX])
    assert again.exit_code == 0 and "0 rows answered (3 done before)" in again.stderr
    (data / "img" / "a.png").write_bytes((pictures / "b.png").read_bytes())
    changed = CliRunner().invoke(app, ["infer", "--model", str(tiny_vlm), "--val_dataset", str(dataset),
                                       "--result_file", str(result), *MAX])
    assert changed.exit_code != 0
    assert "Traceback" not in changed.output


def test_a_text_only_model_refuses_images_before_loading(pictures):
    result = CliRunner().invoke(app, ["infer", "--query", "<image>?", "--images", str(pictures / "a.png")])
    assert result.exit_code == 1
    assert "takes text only, not images" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the error and its hint


def test_python_api_takes_images(vlm_engine, pictures):
    from swiftcli import inference

    template = get_template("hf", vlm_engine.hf_tokenizer)
    config = GenerationConfig(max_new_tokens=6, temperature=0.0, do_sample=False)
    a = str(pictures / "a.png")
    response, history = inference(vlm_engine, template, "<image>What is it?", images=[a],
                                  generation_config=config)
    assert response == expected(vlm_engine, {"query": "<image>What is it?", "images": [a]})
    assert history == [["<image>What is it?", response]]
    pil = Image.open(a)
    assert inference(vlm_engine, template, "What is it?", images=[pil], generation_config=config)[0] == response


def test_chat_attaches_images_with_slash_image_and_tag_prompts(lend_vlm, tiny_vlm, pictures):
    a, b = str(pictures / "a.png"), str(pictures / "b.png")
    script = "\n".join([f"/image {a}", "What is it?", "Compare <image>", b, "/stats", "/exit"]) + "\n"
    result = CliRunner().invoke(app, ["chat", "--model", str(tiny_vlm), "--no-markdown", "--temperature", "0",
                                      "--max_new_tokens", "6"], input=script)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "This model takes images" in out and "Image 1 attached" in out
    first = expected(lend_vlm, {"query": "<image>What is it?", "images": [a]})
    second = expected(lend_vlm, {"query": "Compare <image>", "history": [["<image>What is it?", first]],
                                 "images": [a, b]})
    assert first.strip() in out and second.strip() in out
    assert "history: 2 turns" in out and "Traceback" not in out
