"""Paged KV bookkeeping: on-demand allocation, prefix hits by chained block hash, LRU eviction."""

from __future__ import annotations

from llmos.serving.engine.block_manager import BlockManager
from llmos.serving.engine.config import SamplingParams
from llmos.serving.engine.detokenizer import IncrementalDetokenizer
from llmos.serving.engine.sequence import Sequence


class _Tok:
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(97 + i % 26) for i in ids)


def seq(tokens: list[int], rid: str = "r", lora: str | None = None) -> Sequence:
    return Sequence(rid, tokens, SamplingParams(), IncrementalDetokenizer(_Tok(), tokens, ()), lora_name=lora,
                    cache_salt=None if lora is None else f"{lora}#1")


def compute(bm: BlockManager, s: Sequence, upto: int) -> None:
    assert bm.grow(s, upto)
    s.num_computed_tokens = upto
    bm.commit(s)


def test_allocation_on_demand_and_free() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    s = seq(list(range(6)))
    assert bm.grow(s, 3) and len(s.block_table) == 1
    assert bm.grow(s, 6) and len(s.block_table) == 2
    assert bm.num_free_blocks == 2 and bm.usage == 0.5
    big = seq(list(range(100, 120)), "big")
    assert not bm.grow(big, 20)  # 5 blocks > 2 free: all or nothing
    assert big.block_table == [] and bm.num_free_blocks == 2
    bm.free(s)
    assert bm.num_free_blocks == 4 and s.block_table == [] and s.num_computed_tokens == 0


def test_prefix_hit_shares_blocks_and_counts() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(list(range(10)), "a")
    compute(bm, a, 10)  # blocks 0..1 full and hashed, block 2 partial
    b = seq([*range(8), 50, 51, 52], "b")
    hits = bm.match_prefix(b)
    assert hits == a.block_table[:2]
    bm.take_cached(b, hits)
    bm.record_query(len(b), b.num_cached_tokens)
    assert b.num_computed_tokens == b.num_cached_tokens == 8
    assert (bm.prefix_cache_queries, bm.prefix_cache_hits) == (11, 8)
    # Another adapter never shares KV with the base model.
    assert bm.match_prefix(seq(list(range(10)), "c", lora="x")) == []
    # A hash chain: the same second block after a different first block does not match.
    assert bm.match_prefix(seq([9, 9, 9, 9, 4, 5, 6, 7, 0], "d")) == []


def test_last_token_is_never_served_from_cache() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    compute(bm, seq(list(range(8)), "a"), 8)
    assert len(bm.match_prefix(seq(list(range(8)), "b"))) == 1  # 2nd block recomputed for logits


def test_unreferenced_cached_blocks_evicted_lru() -> None:
    bm = BlockManager(num_blocks=3, block_size=2)
    a, b = seq([1, 2, 3], "a"), seq([5, 6, 7], "b")
    compute(bm, a, 2)
    bm.free(a)  # block with [1, 2] stays cached, unreferenced
    compute(bm, b, 2)
    bm.free(b)  # [5, 6] cached, more recently
    assert bm.num_free_blocks == 3 and bm.num_cached_blocks == 2
    c = seq([9, 9, 9, 9], "c")
    assert bm.grow(c, 4)  # needs 2 blocks: the unhashed one, then the LRU cached ([1, 2])
    assert bm.match_prefix(seq([1, 2, 3], "a2")) == []
    assert len(bm.match_prefix(seq([5, 6, 7], "b2"))) == 1
