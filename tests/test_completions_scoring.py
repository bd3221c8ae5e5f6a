"""/v1/completions as evaluation harnesses use it: token-id prompts, echo with prompt logprobs, max_tokens 0,
vLLM's prompt_logprobs; the tokenizer endpoints; and refusals that leave the server serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

MODEL = "smollm2-135m-instruct"
TEXT = "The capital of France is Paris"


def post(server: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.root_url}{path}", json=body, timeout=120)


def complete(server: Any, **body: Any) -> dict[str, Any]:
    reply = post(server, "/v1/completions", {"model": MODEL, "temperature": 0, **body})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def token_ids(server: Any, text: str) -> list[int]:
    reply = post(server, "/tokenize", {"prompt": text, "add_special_tokens": False})
    assert reply.status_code == 200, reply.text
    return list(reply.json()["tokens"])


@pytest.mark.slow
def test_token_id_prompts_answer_like_text(deploy_server):
    ids = token_ids(deploy_server, TEXT)
    by_text = complete(deploy_server, prompt=TEXT, max_tokens=6)
    by_ids = complete(deploy_server, prompt=ids, max_tokens=6)
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"] != ""
    both = complete(deploy_server, prompt=[ids, ids[:3]], max_tokens=6)
    assert [c["index"] for c in both["choices"]] == [0, 1]
    assert both["choices"][0]["text"] == by_text["choices"][0]["text"]
    assert both["usage"]["prompt_tokens"] == len(ids) + 3


@pytest.mark.slow
def test_echo_scores_the_prompt_like_transformers(deploy_server, pt_engine):
    from swiftcli.engines.pt import token_logprobs

    ids = token_ids(deploy_server, TEXT)
    scored = complete(deploy_server, prompt=ids, echo=True, logprobs=1, max_tokens=0)
    choice = scored["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"] == TEXT and scored["usage"]["completion_tokens"] == 0
    assert "".join(lp["tokens"]) == TEXT and len(lp["token_logprobs"]) == len(ids)
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None and lp["text_offset"][0] == 0
    assert lp["text_offset"] == [len("".join(lp["tokens"][:i])) for i in range(len(ids))]
    # The same numbers as a float32 transformers forward pass over the same ids.
    reference = token_logprobs(pt_engine.model, ids, 1)
    for pos in range(1, len(ids)):
        assert lp["token_logprobs"][pos] == pytest.approx(reference[pos][ids[pos]], abs=1e-3)
        best = max(reference[pos].values())
        assert max(lp["top_logprobs"][pos].values()) == pytest.approx(best, abs=1e-3)
    # "Paris" after "The capital of France is" is the model's first choice.
    assert lp["token_logprobs"][-1] == max(lp["top_logprobs"][-1].values())

    # max_tokens 1 (what lm-eval sends): the prompt's entries, then one generated token.
    one = complete(deploy_server, prompt=TEXT, echo=True, logprobs=1, max_tokens=1)["choices"][0]
    assert one["logprobs"]["token_logprobs"][: len(ids)] == pytest.approx(lp["token_logprobs"], abs=1e-4)
    assert len(one["logprobs"]["tokens"]) == len(ids) + 1 and one["text"].startswith(TEXT)

    # vLLM's prompt_logprobs field: per token {id: {logprob, rank, decoded_token}}, first None.
    extra = complete(deploy_server, prompt=ids, prompt_logprobs=2, max_tokens=1)["choices"][0]["prompt_logprobs"]
    assert extra[0] is None and len(extra) == len(ids)
    for pos in range(1, len(ids)):
        entry = extra[pos][str(ids[pos])]
        assert entry["logprob"] == pytest.approx(lp["token_logprobs"][pos], abs=1e-4)
        ranks = sorted(v["rank"] for v in extra[pos].values() if v["rank"] is not None)
        assert ranks == [1, 2]


@pytest.mark.slow
def test_streamed_echo_sends_prompt_logprobs_first(deploy_server):
    ids = token_ids(deploy_server, TEXT)
    body = {"model": MODEL, "prompt": ids, "echo": True, "logprobs": 1, "max_tokens": 2, "temperature": 0,
            "stream": True}
    chunks = []
    with httpx.stream("POST", f"{deploy_server.base_url}/completions", json=body, timeout=120) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    first = chunks[0]["choices"][0]
    assert first["text"].startswith(TEXT)
    assert first["logprobs"]["token_logprobs"][0] is None and len(first["logprobs"]["tokens"]) >= len(ids)
    tokens = [t for c in chunks for t in (c["choices"][0]["logprobs"] or {}).get("tokens", [])]
    assert len(tokens) == len(ids) + 2


@pytest.mark.slow
def test_tokenizer_endpoints(deploy_server):
    reply = post(deploy_server, "/tokenize", {"prompt": TEXT, "return_token_strs": True})
    body = reply.json()
    assert body["count"] == len(body["tokens"]) == len(body["token_strs"]) > 1
    assert body["max_model_len"] > 0
    back = post(deploy_server, "/detokenize", {"tokens": body["tokens"]}).json()
    assert back == {"prompt": TEXT}
    info = httpx.get(f"{deploy_server.root_url}/tokenizer_info", timeout=30)
    assert info.status_code == 200
    data = info.json()
    assert data["eos_token"] == "<|im_end|>" and "tokenizer_class" in data and "chat_template" in data
    assert "/" + "models" not in info.text and "cache" not in info.text  # no local path leaks


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": [1, 10**9]}, "prompt"),
        ("/v1/completions", {"prompt": [-1, 5]}, "prompt"),
        ("/v1/completions", {"prompt": []}, "prompt"),
        ("/v1/completions", {"prompt": [[]]}, "prompt"),
        ("/v1/completions", {"prompt": [["a"], [1]]}, None),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ("/v1/completions", {"prompt": "hi", "logprobs": 21}, "logprobs"),
        ("/v1/completions", {"prompt": "hi", "prompt_logprobs": 21}, "prompt_logprobs"),
        ("/v1/completions", {"prompt": "hi", "prompt_logprobs": 1, "stream": True}, "prompt_logprobs"),
        ("/v1/completions", {"prompt": ["hi"] * 257}, "prompt"),
        ("/detokenize", {"tokens": [10**9]}, "tokens"),
        ("/tokenize", {"messages": [{"role": "user", "content": "hi"}]}, "messages"),
    ],
)
def test_bad_scoring_requests_are_refused_and_the_server_stays_up(deploy_server, path, body, param):
    reply = post(deploy_server, path, {"model": MODEL, **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert (error["param"] or "").startswith(param)
    assert "Traceback" not in reply.text and "/root" not in reply.text
    assert complete(deploy_server, prompt="Hi", max_tokens=1)["choices"][0]["finish_reason"] == "length"
    metrics = httpx.get(f"{deploy_server.root_url}/metrics", timeout=30).text
    held = [line for line in metrics.splitlines() if line.startswith((
        "swiftcli_num_requests_running", "swiftcli_num_requests_waiting", "swiftcli_engine_unfinished_requests"))]
    assert len(held) == 3 and all(float(line.rsplit(" ", 1)[1]) == 0 for line in held)


@pytest.mark.slow
def test_tokenizer_endpoints_need_the_api_key():
    from server_utils import start_server

    server = start_server(["--api_key", "sekret", "--infer_backend", "pt", "--dtype", "float32"])
    try:
        assert post(server, "/tokenize", {"prompt": "hi"}).status_code == 401
        assert httpx.get(f"{server.root_url}/tokenizer_info").status_code == 401
        headers = {"Authorization": "Bearer sekret"}
        ok = httpx.post(f"{server.root_url}/tokenize", json={"prompt": "hi"}, headers=headers, timeout=30)
        assert ok.status_code == 200 and ok.json()["count"] >= 1
        # The pt backend scores the prompt too (a forward pass), in the same shape.
        body = {"prompt": TEXT, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0}
        scored = httpx.post(f"{server.base_url}/completions", json=body, headers=headers, timeout=120).json()
        lp = scored["choices"][0]["logprobs"]
        ids = httpx.post(f"{server.root_url}/tokenize", json={"prompt": TEXT}, headers=headers).json()["tokens"]
        assert len(lp["tokens"]) == len(ids) + 1 and "".join(lp["tokens"][: len(ids)]) == TEXT
        assert lp["token_logprobs"][0] is None and all(v <= 0 for v in lp["token_logprobs"][1:])
    finally:
        server.stop()
