"""Token prompts in the form vLLM's engines take them.

vLLM 0.32 deprecates handing raw prompts (a `TokensPrompt`) to `add_request`/`generate` ("Passing raw prompts to
InputProcessor is deprecated and will be removed"): callers render them first with the engine's renderer, as its
own `vllm.LLM` and OpenAI server do. Releases without a renderer take the raw prompt.

A prompt with images carries one placeholder token per image (the chat template's `<image>`); rendering runs the
model's processor on the images and expands each placeholder into the image's tokens, so the prompt the engine
runs, and its length, are known only after rendering.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MultiModalData = Mapping[str, Sequence[Any]]


def _prompt(prompt_ids: list[int], multi_modal_data: MultiModalData | None) -> Any:
    # lazy: keeps --help and start-up free of torch, vLLM
    from vllm.inputs import TokensPrompt

    prompt = TokensPrompt(prompt_token_ids=prompt_ids)
    if multi_modal_data:
        prompt["multi_modal_data"] = {k: list(v) for k, v in multi_modal_data.items()}  # type: ignore[typeddict-unknown-key]
    return prompt


def token_input(engine: Any, prompt_ids: list[int], multi_modal_data: MultiModalData | None = None, *,
                count_only: bool = False) -> Any:
    """What `engine` (an LLMEngine or AsyncLLM) accepts for these prompt token ids (and images).

    `count_only`: the input is only looked at, never submitted. vLLM's renderer remembers which images it has sent
    to the engine and leaves their data out of later requests; an input that is never submitted must not count.
    """
    prompt = _prompt(prompt_ids, multi_modal_data)
    renderer = getattr(engine, "renderer", None)
    render = getattr(renderer, "render_cmpl", None)
    if renderer is None or render is None:
        return prompt
    # Token prompts need no tokenizer work: rendering only checks them and tags them as engine input.
    extra = {"skip_mm_cache": True} if count_only and multi_modal_data else {}
    (engine_input,) = render([prompt], renderer.default_cmpl_tok_params, **extra)
    return engine_input


async def token_input_async(engine: Any, prompt_ids: list[int],
                            multi_modal_data: MultiModalData | None = None) -> Any:
    """`token_input` for a server: the processor's image work runs off the event loop."""
    renderer = getattr(engine, "renderer", None)
    render = getattr(renderer, "render_cmpl_async", None)
    if not multi_modal_data or renderer is None or render is None:
        return token_input(engine, prompt_ids, multi_modal_data)
    (engine_input,) = await render([_prompt(prompt_ids, multi_modal_data)], renderer.default_cmpl_tok_params)
    return engine_input


def rendered_ids(engine_input: Any, prompt_ids: list[int]) -> list[int]:
    """The token ids the engine will run: image placeholders expanded (the ids given when nothing was rendered)."""
    if isinstance(engine_input, Mapping):
        ids = engine_input.get("prompt_token_ids")
        if isinstance(ids, list):
            return ids
    return prompt_ids
