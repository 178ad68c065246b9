"""Batch generation: completions for a JSONL file, sharded, resumable, in input order.

Input records are ``{"prompt": str}`` or ``{"messages": [...]}`` (the user
turns are joined), optionally with an ``id``. Task ``i`` of ``N`` owns the
contiguous records ``[i*n/N, (i+1)*n/N)``; it appends each finished record to
``<output>.parts/shard-i.partial`` and renames it to ``shard-i.jsonl`` when
done, so a retry skips finished shards and resumes a partial one after its
last complete line. Whichever task finishes last concatenates the shards into
``output`` (atomically; concurrent mergers write identical bytes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from llmos.errors import ValidationError
from llmos.models.datasets import iter_jsonl
from llmos.runtime.evaluation import generate

GEN_BATCH = 8


def prompt_of(record: dict[str, Any], where: str) -> str:
    if isinstance(record.get("prompt"), str) and record["prompt"]:
        return str(record["prompt"])
    msgs = record.get("messages")
    if isinstance(msgs, list):
        text = "\n".join(m["content"] for m in msgs if isinstance(m, dict) and m.get("role") == "user"
                         and isinstance(m.get("content"), str))
        if text:
            return text
    raise ValidationError(f"{where}: each record needs a non-empty 'prompt' string or user 'messages'")


def read_batch_input(path: str | Path) -> list[dict[str, Any]]:
    """All input records, validated (raises :class:`ValidationError` naming the line)."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"batch input not found: {p}")
    records = list(iter_jsonl(p))
    if not records:
        raise ValidationError(f"batch input {p} is empty")
    for i, r in enumerate(records):
        prompt_of(r, f"{p} record {i + 1}")
    return records


def shard_bounds(n: int, shards: int, index: int) -> tuple[int, int]:
    return index * n // shards, (index + 1) * n // shards


@dataclass(frozen=True)
class ShardResult:
    index: int
    done_before: int
    generated: int
    merged: bool


def _complete_lines(path: Path) -> int:
    """Lines of ``path`` that end in a newline; truncates a torn last line."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        path.write_bytes(keep)
    return keep.count(b"\n")


def run_shard(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    input_path: str | Path,
    output_path: str | Path,
    *,
    index: int,
    shards: int,
    max_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> ShardResult:
    """Generate shard ``index`` of ``shards`` (resuming), then merge if every shard is done."""
    records = read_batch_input(input_path)
    out = Path(output_path)
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    final, partial = parts / f"shard-{index}.jsonl", parts / f"shard-{index}.partial"
    lo, hi = shard_bounds(len(records), shards, index)
    generated = 0
    done_before = hi - lo
    if not final.exists():
        done_before = _complete_lines(partial)
        with partial.open("a", encoding="utf-8") as f:
            for start in range(lo + done_before, hi, GEN_BATCH):
                chunk = records[start : min(hi, start + GEN_BATCH)]
                prompts = [prompt_of(r, f"record {start + j + 1}") for j, r in enumerate(chunk)]
                # Seed by position so a resumed shard samples exactly what it would have.
                texts = generate(model, tok, prompts, max_new_tokens=max_tokens, temperature=temperature,
                                 batch_size=GEN_BATCH, seed=seed + start)
                for j, (r, text) in enumerate(zip(chunk, texts, strict=True)):
                    row = {"index": start + j, **({"id": r["id"]} if "id" in r else {}),
                           "prompt": prompts[j], "completion": text}
                    f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
                generated += len(chunk)
                if on_progress is not None:
                    on_progress(start + len(chunk) - lo, hi - lo)
        os.replace(partial, final)
    merged = merge_shards(out, shards)
    return ShardResult(index, done_before, generated, merged)


def merge_shards(output: Path, shards: int) -> bool:
    """Concatenate finished shards into ``output`` if all ``shards`` are done."""
    parts = output.with_name(output.name + ".parts")
    files = [parts / f"shard-{i}.jsonl" for i in range(shards)]
    if not all(f.exists() for f in files):
        return False
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fout:
        for f in files:
            fout.write(f.read_bytes())
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, output)
    return True
