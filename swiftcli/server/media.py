"""Images in chat requests: OpenAI's `image_url`/`input_image` parts, or ms-swift's `<image>` tags with `images`.

Everything is checked before anything is fetched: the model takes images, no tools ride along, the count is within
`--limit_mm_per_prompt`. Then each image is fetched and decoded under the server's `MediaPolicy` (no private
addresses, no local files outside `--allowed_local_media_path`, size and pixel limits). Any refusal is a 400 that
says why; nothing about the server's files or network leaks into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swiftcli.config.spec import ModelSpec
from swiftcli.engines.modalities import check_accepts
from swiftcli.errors import InputError
from swiftcli.generation.media import MediaPolicy, load_image
from swiftcli.generation.vision import IMAGE_TAG, split_tags
from swiftcli.server.errors import APIError
from swiftcli.server.protocol import (
    ChatCompletionRequest,
    ImageUrl,
    ImageUrlPart,
    InputImagePart,
    TextPart,
    VideoUrlPart,
)


@dataclass(frozen=True)
class MediaSettings:
    """The deploy options that bound what a request's images may be."""

    allowed_media_domains: tuple[str, ...] = ()
    allowed_local_media_path: str | None = None
    limit_images: int | None = None  # per prompt; None: the engine's own limit

    def policy(self) -> MediaPolicy:
        local = Path(self.allowed_local_media_path) if self.allowed_local_media_path else None
        return MediaPolicy(local_dir=local, allowed_domains=self.allowed_media_domains)


@dataclass
class ChatMedia:
    """A chat request's messages with content parts ({"type": "image"} where each image goes) and its images."""

    messages: list[dict[str, Any]]
    images: list[Any]


def _url(value: ImageUrl | str) -> str:
    return value.url if isinstance(value, ImageUrl) else value


def part_messages(req: ChatCompletionRequest) -> tuple[list[dict[str, Any]], list[str]]:
    """Content-part messages and the image references in prompt order; 400 for what cannot be honoured."""
    if req.tools:
        raise APIError(400, "images together with tools are not supported", param="tools")
    messages: list[dict[str, Any]] = []
    refs: list[str] = []
    tags = 0
    for i, m in enumerate(req.messages):
        if m.role not in ("system", "developer", "user", "assistant") or m.tool_calls:
            raise APIError(400, "requests with images take system, user and assistant messages only",
                           param=f"messages[{i}]")
        role = "system" if m.role == "developer" else m.role
        parts: list[dict[str, Any]] = []
        if isinstance(m.content, str):
            parts = split_tags(m.content)
            tags += sum(p["type"] == "image" for p in parts)
        elif m.content is not None:
            for part in m.content:
                if isinstance(part, TextPart):
                    parts.append({"type": "text", "text": part.text})
                elif isinstance(part, ImageUrlPart | InputImagePart):
                    if role != "user":
                        raise APIError(400, "images go in user messages", param=f"messages[{i}].content")
                    parts.append({"type": "image"})
                    refs.append(_url(part.image_url))
                elif isinstance(part, VideoUrlPart):
                    raise APIError(400, "video input is not supported yet", param=f"messages[{i}].content")
        if any(p["type"] == "video" for p in parts):
            raise APIError(400, "video input is not supported yet", param=f"messages[{i}].content")
        messages.append({"role": role, "content": parts})
    if req.images:
        if refs:
            raise APIError(400, "give images as content parts or as `images` with <image> tags, not both",
                           param="images")
        if tags > len(req.images):
            raise APIError(400, f"the messages have {tags} {IMAGE_TAG} tags but `images` lists "
                           f"{len(req.images)} images", param="images")
        users = [m for m in messages if m["role"] == "user"]
        if not users:
            raise APIError(400, "images need a user message", param="messages")
        # Images beyond the tags go before the last user message's text, as ms-swift places them.
        users[-1]["content"] = [{"type": "image"}] * (len(req.images) - tags) + users[-1]["content"]
        refs = list(req.images)
    elif tags:
        raise APIError(400, f"the messages have {tags} {IMAGE_TAG} tags but the request lists no `images`",
                       param="images")
    return messages, refs


def chat_media(req: ChatCompletionRequest, spec: ModelSpec, settings: MediaSettings) -> ChatMedia:
    """Check, fetch and decode a chat request's images (blocking: call it off the event loop)."""
    messages, refs = part_messages(req)
    try:
        check_accepts(spec, {"image": refs})
    except InputError as exc:
        raise APIError(400, exc.message, param="messages") from None
    limit = settings.limit_images
    if limit is not None and len(refs) > limit:
        raise APIError(400, f"the request has {len(refs)} images, more than the {limit} a prompt may take "
                       "(--limit_mm_per_prompt)", param="messages")
    policy = settings.policy()
    images = []
    for n, ref in enumerate(refs):
        try:
            images.append(load_image(ref, policy).image)
        except InputError as exc:
            raise APIError(400, f"image {n + 1}: {exc.message}", param="messages") from None
    return ChatMedia(messages, images)
