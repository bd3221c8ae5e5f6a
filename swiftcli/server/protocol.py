"""OpenAI request schema (pydantic). Responses are built as plain dicts in OpenAI's shape (see serving.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from swiftcli.server.fields import check_extra_fields


class _Request(BaseModel):
    # Unknown fields (e.g. `user`, vendor extras the openai client forwards) are accepted and ignored.
    model_config = ConfigDict(extra="ignore")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ImageUrl(_Request):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlPart(_Request):
    """OpenAI's chat image part: an http(s) URL or a data: URI (see server.media for what is fetched)."""

    type: Literal["image_url"]
    image_url: ImageUrl | str


class InputImagePart(_Request):
    """The Responses API's image part, also taken in chat messages."""

    type: Literal["input_image"]
    image_url: str | ImageUrl
    detail: Literal["auto", "low", "high"] | None = None


class VideoUrlPart(_Request):
    """vLLM's chat video part: an http(s) URL or a data: URI of a video (decoded into frames, see server.media)."""

    type: Literal["video_url"]
    video_url: ImageUrl | str


ContentPart = TextPart | ImageUrlPart | InputImagePart | VideoUrlPart


class FunctionCall(_Request):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(_Request):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDef(_Request):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Request):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: NamedFunction


class StructuredOutputs(BaseModel):
    """vLLM's `structured_outputs`: exactly one constraint."""

    model_config = ConfigDict(extra="forbid")
    json_: dict[str, Any] | str | None = Field(default=None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[Annotated[ContentPart, Field(discriminator="type")]] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def has_media(self) -> bool:
        return isinstance(self.content, list) and any(not isinstance(p, TextPart) for p in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


class JsonSchema(_Request):
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class SamplingFields(_Request):
    """Fields chat and completions share."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1)
    repetition_penalty: float | None = Field(default=None, gt=0)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    n: int = Field(default=1, ge=1, le=64)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    response_format: ResponseFormat | None = None
    min_p: float | None = Field(default=None, ge=0, le=1)
    min_tokens: int | None = Field(default=None, ge=0)
    logit_bias: dict[str, float] | None = None
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool | None = None
    include_stop_str_in_output: bool | None = None
    structured_outputs: StructuredOutputs | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _no_silent_drops(self) -> SamplingFields:
        check_extra_fields(self.model_extra or {})
        return self

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    # ms-swift's request shape: images for the `<image>` tags in the messages' text.
    images: list[str] | None = None
    # ... and videos for its `<video>` tags.
    videos: list[str] | None = None

    @property
    def has_media(self) -> bool:
        return bool(self.images) or bool(self.videos) or any(m.has_media for m in self.messages)

    def message_dicts(self) -> list[dict[str, Any]]:
        """Messages as plain dicts (content as text), what the templates render."""
        out = []
        for m in self.messages:
            item: dict[str, Any] = {"role": m.role, "content": m.text() if m.content is not None else None}
            if m.tool_calls:
                item["tool_calls"] = [c.model_dump(exclude_none=True) for c in m.tool_calls]
            for name in ("tool_call_id", "reasoning_content", "reasoning"):
                if getattr(m, name) is not None:
                    item[name] = getattr(m, name)
            out.append(item)
        return out


# Token-id prompts are bounded by the context length; the number of prompts per request by this.
MAX_PROMPTS = 256
MAX_LOGPROBS = 20


class CompletionRequest(SamplingFields):
    # A string, strings, token ids or lists of token ids (lm-evaluation-harness sends ids).
    prompt: str | list[str] | list[int] | list[list[int]]
    # 0 with echo scores the prompt without generating (lm-evaluation-harness's loglikelihood requests).
    max_tokens: int | None = Field(default=None, ge=0)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    # vLLM's extension: the prompt tokens' logprobs with this many alternatives, in vLLM's per-choice shape.
    prompt_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
