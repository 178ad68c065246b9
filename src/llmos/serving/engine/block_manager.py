"""Paged KV-cache bookkeeping: which physical block holds which tokens.

The KV cache is ``num_blocks`` fixed-size blocks of ``block_size`` token slots. Each
sequence owns a block table (logical block i -> physical block id); blocks are
allocated on demand as the sequence grows and returned when it finishes or is
preempted.

Prefix caching (as in vLLM and nano-vllm): once a block is full, its hash is the hash
of its token ids chained with the previous block's hash (the chain starts from the
LoRA adapter's cache salt, because an adapter changes K and V). A new sequence reuses every
leading full block whose hash is registered, bumping its reference count instead of
recomputing it. A block whose count drops to 0 keeps its contents and hash and goes to
the back of the free list, so unreferenced cached blocks are evicted least recently
used first, and only when a fresh block is needed.

Pure Python, no torch: the model runner owns the tensor; this class owns the ids.
Not thread-safe (the engine thread is the only caller).
"""

from __future__ import annotations

from collections import OrderedDict

from llmos.serving.engine.sequence import Sequence


def block_hash(prev_hash: int, token_ids: tuple[int, ...]) -> int:
    """Chained hash of one full block; collisions are caught by comparing token ids."""
    return hash((prev_hash, token_ids))


def chain_seed(cache_salt: str | None) -> int:
    """First link of the hash chain: sequences under different adapters never share KV."""
    return hash(("llmos-prefix", cache_salt))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref_counts = [0] * num_blocks
        self._hash_of: list[int | None] = [None] * num_blocks
        self._tokens_of: list[tuple[int, ...] | None] = [None] * num_blocks
        self._hash_to_block: dict[int, int] = {}
        # Front = next to hand out. Unhashed free blocks go to the front, cached ones to
        # the back in release order, which makes eviction of cached blocks LRU.
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    # -- capacity -------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of blocks referenced by live sequences (cached-but-free blocks count as free)."""
        return 1.0 - len(self._free) / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._hash_to_block)

    # -- prefix cache -----------------------------------------------------------------
    def match_prefix(self, seq: Sequence) -> list[int]:
        """Physical ids of the leading full blocks of ``seq`` already in the cache.

        The last token is never served from the cache (its logits are needed to sample),
        so at most ``(len(seq) - 1) // block_size`` blocks match. Read-only: the
        statistics are counted by :meth:`record_query` once the sequence is admitted.
        """
        if not self.enable_prefix_caching:
            return []
        tokens = seq.all_token_ids
        h = chain_seed(seq.cache_salt)
        matched: list[int] = []
        bs = self.block_size
        for i in range((len(tokens) - 1) // bs):
            chunk = tuple(tokens[i * bs : (i + 1) * bs])
            h = block_hash(h, chunk)
            bid = self._hash_to_block.get(h)
            if bid is None or self._tokens_of[bid] != chunk:
                break
            matched.append(bid)
        return matched

    def record_query(self, num_tokens: int, num_hit_tokens: int) -> None:
        """Count one admitted sequence's lookup (in tokens, like vLLM's counters)."""
        if self.enable_prefix_caching:
            self.prefix_cache_queries += num_tokens
            self.prefix_cache_hits += num_hit_tokens

    def take_cached(self, seq: Sequence, block_ids: list[int]) -> None:
        """Give ``seq`` (with an empty block table) the matched cached blocks."""
        assert not seq.block_table
        for bid in block_ids:
            if self._ref_counts[bid] == 0:
                del self._free[bid]
            self._ref_counts[bid] += 1
            seq.block_table.append(bid)
            h = self._hash_of[bid]
            assert h is not None
            seq.block_hashes.append(h)
        seq.num_computed_tokens = seq.num_cached_tokens = len(block_ids) * self.block_size

    # -- allocation -------------------------------------------------------------------
    def can_grow(self, seq: Sequence, num_tokens: int) -> bool:
        return self.blocks_needed(num_tokens) - len(seq.block_table) <= len(self._free)

    def grow(self, seq: Sequence, num_tokens: int) -> bool:
        """Make ``seq``'s block table cover ``num_tokens`` slots; all or nothing."""
        missing = self.blocks_needed(num_tokens) - len(seq.block_table)
        if missing > len(self._free):
            return False
        for _ in range(missing):
            bid, _ = self._free.popitem(last=False)
            self._forget(bid)
            self._ref_counts[bid] = 1
            seq.block_table.append(bid)
        return True

    def _forget(self, bid: int) -> None:
        h = self._hash_of[bid]
        if h is not None and self._hash_to_block.get(h) == bid:
            del self._hash_to_block[h]
        self._hash_of[bid] = None
        self._tokens_of[bid] = None

    def commit(self, seq: Sequence) -> None:
        """Register the full blocks ``seq`` has computed so later requests can reuse them."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        full = min(seq.num_computed_tokens // bs, len(seq.block_table))
        if len(seq.block_hashes) >= full:
            return
        tokens = seq.all_token_ids
        h = seq.block_hashes[-1] if seq.block_hashes else chain_seed(seq.cache_salt)
        for i in range(len(seq.block_hashes), full):
            chunk = tuple(tokens[i * bs : (i + 1) * bs])
            h = block_hash(h, chunk)
            bid = seq.block_table[i]
            seq.block_hashes.append(h)
            if self._hash_of[bid] is None:
                self._hash_of[bid] = h
                self._tokens_of[bid] = chunk
                self._hash_to_block.setdefault(h, bid)

    def free(self, seq: Sequence) -> None:
        """Release ``seq``'s blocks (finish or preemption). Idempotent."""
        for bid in reversed(seq.block_table):
            self._ref_counts[bid] -= 1
            if self._ref_counts[bid] == 0:
                self._free[bid] = None
                if self._hash_of[bid] is None:
                    self._free.move_to_end(bid, last=False)
        seq.block_table.clear()
        seq.block_hashes.clear()
        seq.num_computed_tokens = 0
