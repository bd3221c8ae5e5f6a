"""Token prompts in the form vLLM's engines take them.

vLLM 0.32 deprecates handing raw prompts (a `TokensPrompt`) to `add_request`/`generate` ("Passing raw prompts to
InputProcessor is deprecated and will be removed"): callers render them first with the engine's renderer, as its
own `vllm.LLM` and OpenAI server do. Releases without a renderer take the raw prompt.
"""

from __future__ import annotations

from typing import Any


def token_input(engine: Any, prompt_ids: list[int]) -> Any:
    """What `engine` (an LLMEngine or AsyncLLM) accepts for these prompt token ids."""
    # lazy: keeps --help and start-up free of torch, vLLM
    from vllm.inputs import TokensPrompt

    prompt = TokensPrompt(prompt_token_ids=prompt_ids)
    renderer = getattr(engine, "renderer", None)
    render = getattr(renderer, "render_cmpl", None)
    if renderer is None or render is None:
        return prompt
    # Token prompts need no tokenizer work: rendering only checks them and tags them as engine input.
    (engine_input,) = render([prompt], renderer.default_cmpl_tok_params)
    return engine_input
