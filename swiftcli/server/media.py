"""Images and videos in chat requests: OpenAI's `image_url`/`input_image` parts and vLLM's `video_url` parts, or
ms-swift's `<image>`/`<video>` tags with `images`/`videos`.

Everything is checked before anything is fetched: the model takes the modality, no tools ride along, the counts are
within `--limit_mm_per_prompt`. Then each image or video is fetched and decoded under the server's `MediaPolicy`
(no private addresses, no local files outside `--allowed_local_media_path`, size and pixel limits; a video's
content type must be video/*). Any refusal is a 400 that says why; nothing about the server's files or network
leaks into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftcli.config.spec import ModelSpec
from swiftcli.engines.modalities import check_accepts
from swiftcli.errors import InputError
from swiftcli.generation.media import MediaPolicy, load_image, load_video
from swiftcli.generation.vision import IMAGE_TAG, VIDEO_TAG, split_tags
from swiftcli.server.errors import APIError
from swiftcli.server.protocol import (
    ChatCompletionRequest,
    ImageUrl,
    TextPart,
    VideoUrlPart,
)

TAGS = {"image": IMAGE_TAG, "video": VIDEO_TAG}


@dataclass(frozen=True)
class MediaSettings:
    """The deploy options that bound what a request's images and videos may be."""

    allowed_media_domains: tuple[str, ...] = ()
    allowed_local_media_path: str | None = None
    limit_images: int | None = None  # per prompt; None: the engine's own limit
    limit_videos: int | None = None

    def policy(self) -> MediaPolicy:
        local = Path(self.allowed_local_media_path) if self.allowed_local_media_path else None
        return MediaPolicy(local_dir=local, allowed_domains=self.allowed_media_domains)


@dataclass
class ChatMedia:
    """A chat request's messages with content parts ({"type": "image"|"video"} where each goes), its images
    (PIL) and videos (vLLM's (frames, metadata) pairs)."""

    messages: list[dict[str, Any]]
    images: list[Any]
    videos: list[Any] = field(default_factory=list)

    def engine_data(self) -> dict[str, list[Any]]:
        """The engine's multi_modal_data: only the modalities the request has."""
        return {k: v for k, v in (("image", self.images), ("video", self.videos)) if v}


def _url(value: ImageUrl | str) -> str:
    return value.url if isinstance(value, ImageUrl) else value


def _content_parts(i: int, role: str, content: Any, refs: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One message's content as parts; image and video parts add their URL to `refs`."""
    if isinstance(content, str):
        return split_tags(content)
    parts: list[dict[str, Any]] = []
    for part in content or []:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
            continue
        modality, url = ("video", _url(part.video_url)) if isinstance(part, VideoUrlPart) else \
            ("image", _url(part.image_url))
        if role != "user":
            raise APIError(400, f"{modality}s go in user messages", param=f"messages[{i}].content")
        parts.append({"type": modality})
        refs[modality].append(url)
    return parts


def part_messages(req: ChatCompletionRequest) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Content-part messages and the image and video references in prompt order; 400 for what cannot be
    honoured."""
    if req.tools:
        raise APIError(400, "images or videos together with tools are not supported", param="tools")
    messages: list[dict[str, Any]] = []
    refs: dict[str, list[str]] = {"image": [], "video": []}
    for i, m in enumerate(req.messages):
        if m.role not in ("system", "developer", "user", "assistant") or m.tool_calls:
            raise APIError(400, "requests with images or videos take system, user and assistant messages only",
                           param=f"messages[{i}]")
        role = "system" if m.role == "developer" else m.role
        messages.append({"role": role, "content": _content_parts(i, role, m.content, refs)})
    for modality, listed in (("image", req.images), ("video", req.videos)):
        refs[modality] = _tagged_refs(messages, modality, refs[modality], listed)
    return messages, refs


def _tagged_refs(messages: list[dict[str, Any]], modality: str, parts: list[str], listed: list[str] | None
                 ) -> list[str]:
    """ms-swift's form: `<image>` (`<video>`) tags in the text and the request's `images` (`videos`) list."""
    key, tag = f"{modality}s", TAGS[modality]
    tags = sum(p["type"] == modality for m in messages for p in m["content"]) - len(parts)
    if not listed:
        if tags:
            raise APIError(400, f"the messages have {tags} {tag} tags but the request lists no `{key}`", param=key)
        return parts
    if parts:
        raise APIError(400, f"give {key} as content parts or as `{key}` with {tag} tags, not both", param=key)
    if tags > len(listed):
        raise APIError(400, f"the messages have {tags} {tag} tags but `{key}` lists {len(listed)} {key}",
                       param=key)
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise APIError(400, f"{key} need a user message", param="messages")
    # Items beyond the tags go before the last user message's text, as ms-swift places them.
    users[-1]["content"] = [{"type": modality}] * (len(listed) - tags) + users[-1]["content"]
    return list(listed)


def chat_media(req: ChatCompletionRequest, spec: ModelSpec, settings: MediaSettings) -> ChatMedia:
    """Check, fetch and decode a chat request's images and videos (blocking: call it off the event loop)."""
    messages, refs = part_messages(req)
    try:
        check_accepts(spec, refs)
    except InputError as exc:
        raise APIError(400, exc.message, param="messages") from None
    for modality, limit in (("image", settings.limit_images), ("video", settings.limit_videos)):
        if limit is not None and len(refs[modality]) > limit:
            raise APIError(400, f"the request has {len(refs[modality])} {modality}s, more than the {limit} a "
                           "prompt may take (--limit_mm_per_prompt)", param="messages")
    policy = settings.policy()
    try:
        images = [_loaded(n, "image", lambda r: load_image(r, policy).image, ref)
                  for n, ref in enumerate(refs["image"])]
        videos = [_loaded(n, "video", lambda r: load_video(r, policy).engine_item(), ref)
                  for n, ref in enumerate(refs["video"])]
    except InputError as exc:
        raise APIError(400, exc.message, param="messages") from None
    return ChatMedia(messages, images, videos)


def _loaded(n: int, modality: str, load: Any, ref: str) -> Any:
    try:
        return load(ref)
    except InputError as exc:
        raise InputError(f"{modality} {n + 1}: {exc.message}") from None
