"""`swiftcli infer --task embedding`: one vector per query (--query or each dataset row's query), as JSON lines
`{"index", "query", "embedding"}` on stdout or in --result_file. Vectors come from vLLM's pooling runner, the
same engine `deploy --task embedding` serves. A result file is written whole (no resume: an embedding run is
one batch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from swiftcli.cli import output
from swiftcli.config.options import ModelOptions
from swiftcli.config.spec import EngineConfig
from swiftcli.engines.vllm_embed import embed_texts
from swiftcli.errors import InputError, UsageError


def check_embedding_options(api_url: str | None, structured_output: str | None, gen_given: dict[str, Any]) -> None:
    """What an embedding run cannot use, refused by name before anything loads."""
    if api_url:
        raise UsageError("--task embedding runs a local engine; --api-url is not supported with it",
                         "POST to the server's /v1/embeddings instead")
    if structured_output is not None:
        raise UsageError("--structured-output does not apply to --task embedding")
    if gen_given:
        names = ", ".join(f"--{name.replace('_', '-')}" for name in sorted(gen_given))
        raise UsageError(f"generation options do not apply to --task embedding: {names}")


def run_embedding(texts: list[str], target: Path | None, overwrite: bool, model: ModelOptions,
                  engine: EngineConfig) -> None:
    # looked up per call, so a lent engine (tests) or a swapped function takes effect
    from swiftcli.loading import resolve_spec  # looked up per call: tests patch it on its module

    if not texts:
        raise InputError("nothing to embed")
    if target is not None and target.exists() and not overwrite:
        raise UsageError(f"{target} exists", "pass --overwrite true to replace it")
    spec = resolve_spec(model, output.message)
    output.engine_logs("infer")
    with output.phase(f"Embedding {len(texts)} text(s)"):
        vectors = embed_texts(spec, engine, texts)
    lines = (json.dumps({"index": i, "query": text, "embedding": vector}, ensure_ascii=False) + "\n"
             for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)))
    if target is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        out.writelines(lines)
    output.message(f"Wrote {len(texts)} vectors to {target}.")
