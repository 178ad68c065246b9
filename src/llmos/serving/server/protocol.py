"""OpenAI protocol schemas (requests and responses) for the replica server and gateway.

Requests are validated by pydantic; the app turns every validation failure into
HTTP 400 with OpenAI's error body. Fields llmos cannot honour (``logit_bias``,
``suffix``, non-zero penalties, tools) are accepted by name so that clients which
send their defaults work, and rejected with a 400 when set to a value that would
change the result — never silently ignored.

The vLLM extras ``top_k``, ``min_tokens``, ``ignore_eos`` and ``stop_token_ids``
are accepted at the top level, as the ``openai`` client sends them through
``extra_body``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# OpenAI's own ceiling for top logprobs is 20; vLLM allows more, lm-eval asks for few.
MAX_LOGPROBS = 20


def _token_lists(items: list[str] | list[int] | list[list[int]], what: str) -> list[str | list[int]]:
    """One token list (a list of ints) or several (a list of lists) as a batch."""
    ints = [i for i in items if isinstance(i, int)]
    if len(ints) == len(items):
        return [ints]
    out: list[str | list[int]] = []
    for x in items:
        if not isinstance(x, list) or not x:
            raise ValueError(f"{what} token lists must be non-empty lists of integers")
        out.append([int(t) for t in x])
    return out


class _Request(BaseModel):
    # Unknown fields are ignored rather than rejected: OpenAI clients add new
    # optional fields over time, and a 400 for a harmless field breaks them.
    model_config = ConfigDict(extra="ignore")


class StreamOptions(BaseModel):
    include_usage: bool = False


class _SamplingFields(_Request):
    """Fields shared by completions and chat completions."""

    model: str = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    # torch generators take 64-bit seeds; a larger one must be a 400, not an overflow.
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    # vLLM extras
    top_k: int = Field(0, ge=-1)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[int] | None = None
    repetition_penalty: float = 1.0

    @model_validator(mode="after")
    def _unsupported(self) -> _SamplingFields:
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported; leave them at 0")
        if self.repetition_penalty != 1.0:
            raise ValueError("repetition_penalty is not supported; leave it at 1")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    @property
    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        if any(not s for s in stops):
            raise ValueError("stop strings must be non-empty")
        return stops

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    best_of: int | None = None
    suffix: str | None = None

    @model_validator(mode="after")
    def _check(self) -> CompletionRequest:
        if self.suffix:
            raise ValueError("suffix is not supported")
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of different from n is not supported")
        if isinstance(self.prompt, list) and len(self.prompt) == 0:
            raise ValueError("prompt must not be empty")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens=0 is only meaningful with echo=true")
        if self.max_tokens == 0 and self.stream:
            raise ValueError("max_tokens=0 cannot be streamed")
        self.prompts()  # malformed token lists fail here, as a 400
        return self

    def prompts(self) -> list[str | list[int]]:
        """The batch of prompts: one string, strings, one token list, or token lists."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, str) for x in p):
            return [str(x) for x in p]
        return _token_lists(p, "prompt")


class ContentPart(_Request):
    type: str
    text: str | None = None


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content part of type {part.type!r} is not supported (text only)")
            parts.append(part.text)
        return "".join(parts)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    add_generation_prompt: bool = True

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.tools:
            raise ValueError("tools are not supported")
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise ValueError("only response_format type 'text' is supported")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs=true")
        return self

    @property
    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class EmbeddingRequest(_Request):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EmbeddingRequest:
        if self.dimensions is not None:
            raise ValueError("dimensions is not supported by this model")
        self.inputs()  # malformed token lists fail here, as a 400
        if isinstance(self.input, list) and len(self.input) == 0:
            raise ValueError("input must not be empty")
        if isinstance(self.input, str) and not self.input:
            raise ValueError("input must not be empty")
        return self

    def inputs(self) -> list[str | list[int]]:
        x = self.input
        if isinstance(x, str):
            return [x]
        if all(isinstance(i, str) for i in x):
            return [str(i) for i in x]
        return _token_lists(x, "input")


class LoadLoraRequest(_Request):
    lora_name: str = Field(min_length=1, max_length=128)
    lora_path: str = Field(min_length=1)
    base_model_name: str | None = None


class UnloadLoraRequest(_Request):
    lora_name: str = Field(min_length=1)
    base_model_name: str | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int
    prompt_tokens_details: dict[str, int] | None = None


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``; adapters name their base in ``parent``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llmos"
    root: str
    parent: str | None = None
    max_model_len: int | None = None
    kind: Literal["generate", "embed", "adapter"] = "generate"
    loaded: bool = True


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
