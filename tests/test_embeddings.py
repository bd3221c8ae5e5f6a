"""`deploy --task embedding` (vLLM's pooling runner on the embedded model) through the official openai client:
vectors equal to transformers' last-token hidden state, L2-normalized (vLLM's default pooling for a decoder),
for strings, lists and token ids, in float and base64; and `infer --task embedding` on a dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import openai
import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
TEXTS = ["The capital of France is Paris.", "A cat sat on the mat.", "Embeddings map text to vectors."]
# float32 on both sides; different kernels (vLLM's CPU attention vs transformers' SDPA) round differently.
ATOL = 1e-4


@pytest.fixture(scope="module")
def embed_server():
    from server_utils import start_server

    server = start_server(["--task", "embedding"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(embed_server):
    with openai.OpenAI(base_url=embed_server.base_url, api_key="EMPTY", max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def reference(embedded_spec):
    """transformers' pooled hidden states: the last token's final hidden state, L2-normalized."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_spec.model_dir)
    model = AutoModel.from_pretrained(embedded_spec.model_dir, torch_dtype=torch.float32).eval()

    def embed(text: str) -> np.ndarray:
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            hidden = model(input_ids=ids).last_hidden_state[0, -1]
        return torch.nn.functional.normalize(hidden, dim=-1).numpy()

    return tokenizer, embed


def test_vectors_equal_transformers_pooled_hidden_states(client, reference):
    tokenizer, embed = reference
    resp = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert [d.index for d in resp.data] == [0, 1, 2]
    for text, item in zip(TEXTS, resp.data, strict=True):
        vector = np.array(item.embedding, dtype=np.float32)
        assert vector.shape == (576,)
        np.testing.assert_allclose(vector, embed(text), atol=ATOL)
    assert resp.usage.prompt_tokens == sum(len(tokenizer(t).input_ids) for t in TEXTS)
    # one string, token ids, and the client's default base64 encoding give the same vectors
    single = client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float").data[0].embedding
    by_ids = client.embeddings.create(model=MODEL, input=[tokenizer(TEXTS[0]).input_ids],
                                      encoding_format="float").data[0].embedding
    base64 = client.embeddings.create(model=MODEL, input=TEXTS[0]).data[0].embedding  # the client decodes it
    np.testing.assert_allclose(single, resp.data[0].embedding, atol=ATOL)
    assert by_ids == single
    assert np.array_equal(np.array(base64, dtype=np.float32), np.array(single, dtype=np.float32))


@pytest.mark.parametrize(("body", "named"), [
    ({"input": "Hi", "dimensions": 8}, "dimensions"),
    ({"input": []}, "input"),
    ({"input": [[1, 2, 10**7]]}, "vocabulary"),
    ({"input": ["ok", ""]}, "input.1"),
    ({"input": "Hi \ud800"}, "surrogate"),
    ({"input": "Hi", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "Hi", "truncate_prompt_tokens": 4}, "truncate_prompt_tokens"),
    ({"input": 5}, "input"),
    ({"input": "a " * 9000}, "tokens long"),
])
def test_bad_requests_are_400_naming_the_problem(embed_server, body, named):
    with httpx.Client(base_url=embed_server.root_url, timeout=60) as http:
        resp = http.post("/v1/embeddings", content=json.dumps({"model": MODEL, **body}).encode(),
                         headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        assert named in resp.json()["error"]["message"]
        assert "/root" not in resp.text and "Traceback" not in resp.text
        assert http.post("/v1/embeddings", json={"model": MODEL, "input": "still up"}).status_code == 200


def test_each_server_says_how_to_start_the_other(embed_server, deploy_server):
    with httpx.Client(timeout=60) as http:
        resp = http.post(f"{deploy_server.base_url}/embeddings", json={"model": MODEL, "input": "Hi"})
        assert resp.status_code == 400 and "deploy --task embedding" in resp.json()["error"]["message"]
        resp = http.post(f"{embed_server.base_url}/chat/completions",
                         json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
        assert resp.status_code == 400 and "--task embedding" in resp.json()["error"]["message"]
        resp = http.post(f"{embed_server.base_url}/messages", json={"model": MODEL, "max_tokens": 2, "messages": []})
        assert resp.status_code == 400 and resp.json()["type"] == "error"
    with openai.OpenAI(base_url=embed_server.base_url, api_key="EMPTY", max_retries=0) as c:
        assert [m.id for m in c.models.list().data] == [MODEL]


def test_infer_task_embedding_writes_a_vector_per_row(tmp_path, client):
    from server_utils import command_env

    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"query": t}) + "\n" for t in TEXTS))
    out = tmp_path / "vectors.jsonl"
    run = subprocess.run([sys.executable, "-m", "swiftcli.cli", "infer", "--task", "embedding", "--val_dataset",
                          str(rows), "--result_file", str(out)], capture_output=True, text=True, timeout=600,
                         env=command_env())
    assert run.returncode == 0, run.stderr[-2000:]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["query"] for w in written] == TEXTS
    served = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float").data
    for line, item in zip(written, served, strict=True):
        np.testing.assert_allclose(line["embedding"], item.embedding, atol=ATOL)
    again = subprocess.run([sys.executable, "-m", "swiftcli.cli", "infer", "--task", "embedding", "--val_dataset",
                            str(rows), "--result_file", str(out), "--temperature", "0.5"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--temperature" in again.stderr and "Traceback" not in again.stderr
