"""`swiftcli infer`: answers for --query (or piped stdin) on stdout; everything else on stderr."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from swiftcli.cli.errors import handled
from swiftcli.cli.options import GenerationOptions, ModelOptions, with_options

EXAMPLES = """

[b]Examples[/b]

  swiftcli infer --query "What is the capital of France?"

  cat question.txt | swiftcli infer --model_type qwen2_5-7b-instruct

  swiftcli infer --ckpt_dir output/checkpoint-100 --merge_lora true --query "Hi" --output json
"""

# Scripts want reproducible answers: greedy unless asked otherwise.
INFER_DEFAULTS = {"temperature": 0.0, "do_sample": False}


@with_options(model=ModelOptions, gen=GenerationOptions)
@handled
def infer_command(
    query: Annotated[Optional[list[str]], typer.Option("--query", "-q", help="A question (repeatable).")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json (JSON lines with usage).",
                                        metavar="text|json")] = "text",
    *,
    model: ModelOptions,
    gen: GenerationOptions,
) -> None:
    """Answer questions with the model: the answers alone on stdout."""
    from swiftcli.errors import UsageError

    if output not in ("text", "json"):
        raise UsageError(f"--output must be text or json, not {output!r}")
    queries = list(query or [])
    if not queries:
        if sys.stdin.isatty():
            raise UsageError("give --query TEXT, or pipe a question on stdin")
        text = sys.stdin.read().strip()
        if not text:
            raise UsageError("stdin was empty: nothing to answer")
        queries = [text]
    run_queries(queries, output, model, gen)


def run_queries(queries: list[str], output: str, model: ModelOptions, gen: GenerationOptions) -> None:
    from swiftcli.cli.common import generation_config, load
    from swiftcli.inference import infer

    loaded = load(model, seed=gen.seed)
    config = generation_config(loaded.engine.generation_config, gen, **INFER_DEFAULTS)
    requests = [{"query": q, "system": model.system} for q in queries]
    for result in infer(loaded.engine, loaded.template, requests, config):
        if output == "json":
            row = {"query": result.query, "response": result.response, "finish_reason": result.finish_reason,
                   "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.output_tokens,
                             "total_tokens": result.prompt_tokens + result.output_tokens}}
            print(json.dumps(row, ensure_ascii=False), flush=True)
        else:
            print(result.response, flush=True)


infer_command.__doc__ = (infer_command.__doc__ or "") + EXAMPLES
