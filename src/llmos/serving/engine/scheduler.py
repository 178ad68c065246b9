"""Iteration-level (continuous) batching with chunked prefill.

Each :meth:`Scheduler.schedule` call picks the work of one engine step under two caps:
at most ``max_num_seqs`` running sequences and at most ``max_num_batched_tokens``
tokens computed. Running sequences go first, in arrival order (a decode costs one
token; a prompt that did not fit last time continues with its next chunk). Waiting
sequences are admitted with what budget is left, their prompt cut into a chunk if
needed, after reusing whatever prefix the block manager has cached.

When the KV cache has no block left for a running sequence, the most recently
admitted running sequence is preempted by recompute: its blocks are freed and it goes
back to the head of the queue, keeping the tokens it generated. No new sequence is
admitted in a step that preempted, so the cache does not thrash.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from llmos.serving.engine.block_manager import BlockManager
from llmos.serving.engine.config import EngineConfig
from llmos.serving.engine.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledSeq:
    """One sequence's share of a step: compute ``num_new`` tokens from ``num_computed_tokens``."""

    seq: Sequence
    num_new: int

    @property
    def start(self) -> int:
        return self.seq.num_computed_tokens

    @property
    def samples(self) -> bool:
        """True when this chunk reaches the end of the sequence, so a token is sampled."""
        return self.seq.num_computed_tokens + self.num_new == len(self.seq)


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager) -> None:
        self.max_num_seqs = config.max_num_seqs
        self.max_num_batched_tokens = config.max_num_batched_tokens
        self.max_loras = config.max_loras
        self.block_manager = block_manager
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def remove(self, seq: Sequence) -> None:
        """Drop a finished or aborted sequence and free its blocks. Idempotent."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.block_manager.free(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def schedule(self) -> list[ScheduledSeq]:
        bm = self.block_manager
        budget = self.max_num_batched_tokens
        out: list[ScheduledSeq] = []
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            num_new = min(seq.num_uncomputed, budget)
            while not bm.grow(seq, seq.num_computed_tokens + num_new):
                victim = self.running[-1]
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
            else:
                out.append(ScheduledSeq(seq, num_new))
                budget -= num_new
                i += 1
        if preempted:
            return out

        active_loras = {s.lora_name for s in self.running if s.lora_name is not None}
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            if (
                seq.lora_name is not None
                and seq.lora_name not in active_loras
                and len(active_loras) >= self.max_loras
            ):
                break
            cached = [] if seq.wants_prompt_logprobs else bm.match_prefix(seq)
            bm.take_cached(seq, cached)
            num_new = min(seq.num_uncomputed, budget)
            if not bm.grow(seq, seq.num_computed_tokens + num_new):
                bm.free(seq)
                seq.num_cached_tokens = 0
                break
            bm.record_query(len(seq), seq.num_cached_tokens)
            self.waiting.popleft()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            if seq.lora_name is not None:
                active_loras.add(seq.lora_name)
            out.append(ScheduledSeq(seq, num_new))
            budget -= num_new
        return out
