"""What the engine hands back: per-step deltas and its statistics."""

from __future__ import annotations

from dataclasses import dataclass

from llmos.serving.engine.sequence import TokenLogprob


@dataclass
class RequestOutput:
    """Progress of one request in one step (a delta), or its whole result from ``generate``.

    ``prompt_logprobs`` comes once, in the first output of the request; its first entry
    is None (the first prompt token has no context). ``finish_reason`` is "stop",
    "length" or "abort" once ``finished``.
    """

    request_id: str
    new_token_ids: list[int]
    new_text: str
    finished: bool
    finish_reason: str | None
    logprobs: list[TokenLogprob] | None
    prompt_logprobs: list[TokenLogprob | None] | None
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int
    prompt_token_ids: list[int] | None = None


@dataclass(frozen=True)
class EngineStats:
    """A snapshot for /metrics. Prefix-cache counters are cumulative and count tokens."""

    num_running: int
    num_waiting: int
    kv_cache_usage: float
    prefix_cache_queries: int
    prefix_cache_hits: int
    num_preemptions: int
    num_kv_blocks: int = 0
    num_prompt_tokens_computed: int = 0
    num_generated_tokens: int = 0
    num_loras_resident: int = 0
