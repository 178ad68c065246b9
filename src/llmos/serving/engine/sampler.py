"""Turns logits into tokens: greedy, temperature, top-k, top-p, per-request seeds, logprobs.

Batched over rows: temperature, top-k and top-p are applied with one tensor op each for
the rows that sample; only requests with their own seed draw noise from their own
``torch.Generator`` (one call per such row), so a seeded request gets the same tokens
whatever else shares its batch. Sampling uses the exponential-race trick
(``argmax(p / E)``, E ~ Exp(1)), equivalent to drawing from the categorical ``p``.
Logprobs are those of the model's raw distribution (before temperature/top-k/top-p),
as vLLM reports them.
"""

from __future__ import annotations

import torch

from llmos.serving.engine.sequence import Sequence, TokenLogprob


def token_logprobs(logprobs: torch.Tensor, token_ids: torch.Tensor, top_n: list[int]) -> list[TokenLogprob]:
    """Per row: logprob of ``token_ids[row]`` and the ``top_n[row]`` most likely tokens."""
    chosen = logprobs.gather(1, token_ids.view(-1, 1)).squeeze(1).tolist()
    k = max(top_n, default=0)
    top_vals: list[list[float]] = []
    top_ids: list[list[int]] = []
    if k > 0:
        vals, ids = logprobs.topk(k, dim=-1)
        top_vals, top_ids = vals.tolist(), ids.tolist()
    out = []
    for r, tok in enumerate(token_ids.tolist()):
        top = {top_ids[r][j]: top_vals[r][j] for j in range(top_n[r])} if top_n[r] else {}
        out.append(TokenLogprob(int(tok), float(chosen[r]), top))
    return out


class Sampler:
    def __init__(self, eos_token_ids: tuple[int, ...]) -> None:
        self.eos_token_ids = eos_token_ids

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> tuple[list[int], list[TokenLogprob | None]]:
        raw_logprobs = None
        if any(s.params.logprobs is not None for s in seqs):
            raw_logprobs = torch.log_softmax(logits, dim=-1)
        # min_tokens: the request may not end before it has produced that many tokens.
        for r, s in enumerate(seqs):
            if s.num_output_tokens < s.params.min_tokens:
                banned = list(s.params.stop_token_ids) + ([] if s.params.ignore_eos else list(self.eos_token_ids))
                if banned:
                    logits[r, banned] = float("-inf")
        tokens = logits.argmax(dim=-1)
        sample_rows = [r for r, s in enumerate(seqs) if not s.params.greedy]
        if sample_rows:
            tokens[sample_rows] = self._sample(logits[sample_rows], [seqs[r] for r in sample_rows])
        lps: list[TokenLogprob | None] = [None] * len(seqs)
        lp_rows = [r for r, s in enumerate(seqs) if s.params.logprobs is not None]
        if lp_rows and raw_logprobs is not None:
            rows = torch.tensor(lp_rows, device=logits.device)
            top_n = [seqs[r].params.logprobs or 0 for r in lp_rows]
            for r, lp in zip(lp_rows, token_logprobs(raw_logprobs[rows], tokens[rows], top_n), strict=True):
                lps[r] = lp
        return tokens.tolist(), lps

    def _sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
        dev = logits.device
        temps = torch.tensor([s.params.temperature for s in seqs], device=dev, dtype=logits.dtype)
        logits = logits / temps[:, None]
        vocab = logits.shape[-1]
        top_ks = [s.params.top_k if 0 < s.params.top_k < vocab else vocab for s in seqs]
        if min(top_ks) < vocab:
            kth = logits.topk(max(top_ks), dim=-1).values
            idx = torch.tensor([k - 1 for k in top_ks], device=dev)
            threshold = kth.gather(1, idx[:, None])
            logits = logits.masked_fill(logits < threshold, float("-inf"))
        top_ps = torch.tensor([s.params.top_p for s in seqs], device=dev, dtype=logits.dtype)
        if bool((top_ps < 1).any()):
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            # Drop a token when the mass before it already reaches top_p (the first always stays).
            drop = (probs.cumsum(dim=-1) - probs) >= top_ps[:, None]
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
        probs = logits.softmax(dim=-1)
        noise = torch.empty_like(probs)
        unseeded = [r for r, s in enumerate(seqs) if s.generator is None]
        if unseeded:
            noise[unseeded] = torch.empty((len(unseeded), vocab), device=dev, dtype=probs.dtype).exponential_()
        for r, s in enumerate(seqs):
            if s.generator is not None:
                noise[r] = torch.empty(vocab, device=dev, dtype=probs.dtype).exponential_(generator=s.generator)
        return (probs / noise).argmax(dim=-1)
