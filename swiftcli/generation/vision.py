"""Prompts with images: ms-swift's `<image>` tags in the query and history, images listed beside them.

A request `{"query": "<image>What is this?", "history": [...], "images": ["a.jpg"]}` becomes chat messages with
content parts (`{"type": "image"}` where each tag stood) rendered by the model's own chat template, the same
template transformers' `processor.apply_chat_template` uses; each part becomes one placeholder token that the
engine expands into the image's tokens. Images fill the tags in order across the history and the query; when
there are more images than tags, the rest go before the query's text, as ms-swift does. Videos (`videos`, `<video>`
tags) work the same way, decoded into frames for the engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from swiftcli.errors import InputError, TemplateError
from swiftcli.generation.media import CLI_POLICY, LoadedImage, MediaPolicy, load_images, load_videos
from swiftcli.registry.templates import Template

IMAGE_TAG = "<image>"
VIDEO_TAG = "<video>"
_TAG = re.compile(r"(<image>|<video>)")


def request_media(request: dict[str, Any]) -> dict[str, list[Any]]:
    """The request's image and video references by modality (`images`, `videos`; a single one may be a string)."""
    media: dict[str, list[Any]] = {}
    for key, modality in (("images", "image"), ("videos", "video")):
        value = request.get(key)
        if value is None or value == []:
            continue
        refs = [value] if isinstance(value, str | bytes | dict) else list(value)
        media[modality] = refs
    return media


def has_media(request: dict[str, Any]) -> bool:
    return bool(request_media(request))


def _parts(text: str, counts: dict[str, int]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for piece in _TAG.split(text):
        if piece == IMAGE_TAG:
            parts.append({"type": "image"})
            counts["image"] += 1
        elif piece == VIDEO_TAG:
            parts.append({"type": "video"})
            counts["video"] += 1
        elif piece:
            parts.append({"type": "text", "text": piece})
    return parts


def vision_messages(query: str, history: Sequence[Sequence[str]] | None, system: str | None,
                    n_images: int, n_videos: int = 0) -> list[dict[str, Any]]:
    """Chat messages with content parts for `n_images` images and `n_videos` videos placed at the tags."""
    counts = {"image": 0, "video": 0}
    messages: list[dict[str, Any]] = [{"role": "system", "content": [{"type": "text", "text": system}]}] \
        if system else []
    for q, r in history or []:
        messages.append({"role": "user", "content": _parts(str(q), counts)})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": str(r)}]})
    last = _parts(query, counts)
    extra = [{"type": "video"}] * max(0, n_videos - counts["video"]) + \
        [{"type": "image"}] * max(0, n_images - counts["image"])
    for modality, n in (("image", n_images), ("video", n_videos)):
        if counts[modality] > n:
            raise InputError(f"the prompt has {counts[modality]} <{modality}> tags but {n} {modality}s")
    messages.append({"role": "user", "content": [*extra, *last]})
    return messages


def encode_vision(template: Template, request: dict[str, Any], policy: MediaPolicy = CLI_POLICY,
                  *, enable_thinking: bool | None = None) -> tuple[list[int], dict[str, list[Any]], list[str]]:
    """(prompt ids with one placeholder per image and video, multi-modal data for the engine (images as PIL
    images, videos as vLLM's (frames, metadata) pairs), the images' and videos' sha256)."""
    media = request_media(request)
    images: list[LoadedImage] = load_images(media.get("image", []), policy)
    videos = load_videos(media.get("video", []), policy)
    system = template._resolve_system(request.get("system"))
    messages = vision_messages(str(request.get("query") or ""), request.get("history"), system, len(images),
                               len(videos))
    ids = encode_part_messages(template, messages, enable_thinking=enable_thinking)
    data: dict[str, list[Any]] = {"image": [i.image for i in images]} if images else {}
    if videos:
        data["video"] = [v.engine_item() for v in videos]
    return ids, data, [i.sha256 for i in images] + [v.sha256 for v in videos]


def split_tags(text: str) -> list[dict[str, Any]]:
    """Text with `<image>`/`<video>` tags as content parts."""
    return _parts(text, {"image": 0, "video": 0})


def encode_part_messages(template: Template, messages: list[dict[str, Any]], *,
                         enable_thinking: bool | None = None, template_kwargs: dict[str, Any] | None = None
                         ) -> list[int]:
    """Token ids of content-part messages rendered by the model's own chat template, with the generation prompt."""
    if not template.is_hf:
        raise TemplateError(f"template {template.template_type!r} cannot place images",
                            "use the model's own chat template (--template_type hf)")
    switch = template.thinking(enable_thinking)
    extra = dict(template_kwargs or {})
    if switch is not None:
        extra["enable_thinking"] = switch
    tokenizer = template._require_tokenizer()
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
    return list(tokenizer.encode(str(text), add_special_tokens=False))
