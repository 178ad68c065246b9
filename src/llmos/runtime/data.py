"""Training data as deterministic, resumable sample streams.

A stream is a list of tokenised samples plus an order: global sample index
``g`` maps to sample ``perm(epoch)[g % n]`` with ``epoch = g // n`` and a
permutation seeded by ``(seed, epoch)``. The *data position* saved in a
checkpoint is therefore one integer (samples consumed), and a resumed run —
with any number of data-parallel workers — sees exactly the samples the
uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmos.errors import ValidationError
from llmos.models import datasets
from llmos.models.tokenizer import EOS_TOKEN, format_prompt, load_tokenizer

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Sample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def corpus_samples(seq_len: int, n_docs: int, split: datasets.Split = "train", seed: int = 0) -> list[Sample]:
    """Pretraining blocks of ``seq_len`` tokens cut from the concatenated corpus."""
    tok = load_tokenizer()
    ids: list[int] = []
    docs = [d + EOS_TOKEN for d in datasets.corpus_documents(n_docs, split, seed)]
    for row in tok(docs)["input_ids"]:
        ids.extend(row)
    blocks = [tuple(ids[i : i + seq_len]) for i in range(0, len(ids) - seq_len + 1, seq_len)]
    if not blocks:
        raise ValidationError(f"corpus too small for seq_len={seq_len}")
    return [Sample(b, b) for b in blocks]


def example_samples(examples: list[datasets.Example], seq_len: int) -> list[Sample]:
    """Chat-formatted prompt/completion pairs; loss only on the completion and its EOS."""
    tok = load_tokenizer()
    out = []
    for ex in examples:
        p = tok(format_prompt(ex.prompt))["input_ids"]
        c = tok(ex.completion + EOS_TOKEN)["input_ids"]
        ids = (p + c)[:seq_len]
        labels = ([IGNORE_INDEX] * len(p) + c)[:seq_len]
        if all(x == IGNORE_INDEX for x in labels):
            continue  # the prompt alone fills seq_len: nothing to learn from
        out.append(Sample(tuple(ids), tuple(labels)))
    if not out:
        raise ValidationError(f"no usable examples (dataset empty, or every prompt is longer than seq_len={seq_len})")
    return out


def load_samples(dataset: str, seq_len: int, *, n_examples: int = 5000, n_docs: int = 20000, seed: int = 0) -> list[Sample]:
    ref = datasets.parse_dataset_ref(dataset)
    if ref.kind == "corpus":
        return corpus_samples(seq_len, n_docs, "train", seed)
    return example_samples(datasets.load_examples(dataset, "train", n_examples, seed), seq_len)


class SampleStream:
    """Deterministic order over ``samples``; see the module docstring."""

    def __init__(self, samples: list[Sample], seed: int = 0) -> None:
        if not samples:
            raise ValidationError("dataset is empty")
        self.samples = samples
        self.seed = seed
        self._perm_epoch = -1
        self._perm: list[int] = []

    def _order(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.samples), generator=g).tolist()
            self._perm_epoch = epoch
        return self._perm

    def sample(self, g: int) -> Sample:
        n = len(self.samples)
        return self.samples[self._order(g // n)[g % n]]

    def batch(self, start: int, size: int, pad_id: int) -> dict[str, torch.Tensor]:
        """Samples ``start .. start+size-1`` right-padded into tensors."""
        rows = [self.sample(g) for g in range(start, start + size)]
        width = max(len(r.input_ids) for r in rows)
        ids = torch.full((size, width), pad_id, dtype=torch.long)
        labels = torch.full((size, width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((size, width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r.input_ids)
            ids[i, :n] = torch.tensor(r.input_ids)
            labels[i, :n] = torch.tensor(r.labels)
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
