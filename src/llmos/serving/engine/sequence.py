"""One request's tokens and progress through the engine.

A :class:`Sequence` is owned by the engine thread; nothing here is thread-safe.
The tokens of a sequence are its prompt followed by what it generated. The model has
written the KV of the first ``num_computed_tokens`` of them into the blocks listed in
``block_table``; a step computes the next ``num_new`` tokens (a prefill chunk or one
decode token). Preemption by recompute simply resets ``num_computed_tokens`` to 0 and
frees the blocks: the generated tokens are kept and re-fed as part of the "prompt".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import torch

from llmos.serving.engine.config import SamplingParams
from llmos.serving.engine.detokenizer import IncrementalDetokenizer


class SequenceStatus(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"


@dataclass
class TokenLogprob:
    """Logprob of one token, with the top-N alternatives at that position."""

    token_id: int
    logprob: float
    top: dict[int, float] = field(default_factory=dict)


@dataclass(eq=False)
class Sequence:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    detokenizer: IncrementalDetokenizer
    lora_name: str | None = None
    # Starts the prefix-cache hash chain: the adapter's name and load generation, so KV is
    # never shared across adapters, nor with an adapter later replaced under the same name.
    cache_salt: str | None = None
    arrival_s: float = 0.0
    status: SequenceStatus = SequenceStatus.WAITING
    output_token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    # Hash of each full block in block_table, in order; registered in the prefix cache.
    block_hashes: list[int] = field(default_factory=list)
    num_cached_tokens: int = 0
    finish_reason: FinishReason | None = None
    generator: torch.Generator | None = None
    # Outputs not yet handed to the caller of step(); reset each time they are reported.
    pending_token_ids: list[int] = field(default_factory=list)
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] | None = None
    prompt_logprobs_reported: bool = False
    first_scheduled: bool = False

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    def __len__(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def num_uncomputed(self) -> int:
        return len(self) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def wants_prompt_logprobs(self) -> bool:
        """Prompt logprobs are still owed (only on the first pass over the prompt)."""
        return self.params.prompt_logprobs is not None and not self.prompt_logprobs_reported

    def token_at(self, index: int) -> int:
        n = len(self.prompt_token_ids)
        return self.prompt_token_ids[index] if index < n else self.output_token_ids[index - n]

    def tokens(self, start: int, end: int) -> list[int]:
        return self.all_token_ids[start:end]
