"""Runs one engine step on the device: builds the batch layout, calls the model, returns logits.

Owns the paged KV cache, a single preallocated tensor
``[2, layers, kv_heads, num_blocks, block_size, head_dim]`` sized from ``kv_cache_gib``
(head-major, so a gathered context is contiguous per head; see ``llama.py``).
Zero-filled on purpose: padded decode slots are masked out, but a masked score is
``-inf + x`` and an uninitialised NaN would poison the softmax.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import torch

from llmos.errors import ValidationError
from llmos.serving.engine.config import DECODE_ATTENTION, ModelConfig
from llmos.serving.engine.kernels import load_native_kernels
from llmos.serving.engine.llama import BatchMetadata, LlamaModel, PrefillChunk, paged_decode_attention
from llmos.serving.engine.lora import LoraManager
from llmos.serving.engine.scheduler import ScheduledSeq
from llmos.serving.engine.sequence import Sequence


def kv_bytes_per_block(cfg: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
    elem = torch.empty((), dtype=dtype).element_size()
    return 2 * cfg.num_hidden_layers * block_size * cfg.num_key_value_heads * cfg.head_dim * elem


def num_kv_blocks(cfg: ModelConfig, kv_cache_gib: float, block_size: int, dtype: torch.dtype) -> int:
    per_block = kv_bytes_per_block(cfg, block_size, dtype)
    n = int(kv_cache_gib * 2**30) // per_block
    if n < 1:
        raise ValidationError(
            f"kv_cache_gib={kv_cache_gib} holds no block of {block_size} tokens ({per_block} bytes each)"
        )
    return n


@dataclass
class StepLogits:
    """Logits for the sequences that sample (in schedule order) and prompt logits by sequence."""

    sample_seqs: list[Sequence]
    sample_logits: torch.Tensor  # [S, vocab] float32
    prompt_logits: dict[int, tuple[int, torch.Tensor]]  # id(seq) -> (first position, [n, vocab])


class ModelRunner:
    def __init__(self, model: LlamaModel, num_blocks: int, block_size: int, lora: LoraManager) -> None:
        cfg = model.cfg
        self.model = model
        self.device = model.device
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.lora = lora
        self.kv_cache = torch.zeros(
            (2, cfg.num_hidden_layers, cfg.num_key_value_heads, num_blocks, block_size, cfg.head_dim),
            dtype=model.dtype, device=model.device,
        )

    def select_decode_attention(self, mode: str) -> tuple[str, str | None]:
        """Pick the decode-attention path for ``mode`` (one of ``DECODE_ATTENTION``).

        Returns the path taken (``native``, ``compiled`` or ``eager``) and, when ``auto``
        fell back from a faster one, why. ``auto`` on CPU in float32 takes the native
        kernel (``kernels.py``), else the compiled one, else eager; on other devices it
        stays eager (the others are not measured there). An explicit mode that cannot
        run raises ValidationError with the reason.
        """
        if mode not in DECODE_ATTENTION:
            raise ValidationError(f"decode_attention must be one of {', '.join(DECODE_ATTENTION)}, got {mode!r}")
        if mode == "eager":
            return "eager", None
        cpu = self.device.type == "cpu"
        notes: list[str] = []
        if mode in ("auto", "native"):
            why = None if cpu and self.model.dtype == torch.float32 else "needs float32 on CPU"
            kernel = load_native_kernels() if why is None else why
            if not isinstance(kernel, str):
                self.model.decode_attention = kernel.paged_attention
                self.model.write_kv = kernel.write_kv
                return "native", None
            if mode == "native":
                raise ValidationError(f"native decode attention is not available: {kernel}")
            notes.append(f"native: {kernel}")
        if mode == "auto" and not cpu:
            return "eager", f"compiled attention not measured on {self.device.type} yet"
        failed = self._compile_decode_attention()
        if failed is None:
            return "compiled", "; ".join(notes) or None
        if mode == "compiled":
            raise ValidationError(f"compiled decode attention is not available: {failed}")
        return "eager", "; ".join([*notes, f"compiled: {failed}"])

    def _compile_decode_attention(self) -> str | None:
        """Switch decode attention to a ``torch.compile``-d kernel; None, or why it stayed eager.

        Compiles with dynamic shapes and warms up every size specialisation here, at load,
        so no request pays for a compile. Any failure (no C++ compiler, an inductor
        error) leaves the model on its eager path, which gives the same results.
        """
        if shutil.which("g++") is None and shutil.which("c++") is None:
            return "no C++ compiler on PATH"
        # Inductor's default Python wrapper holds the GIL during the kernel; its C++ wrapper
        # releases it but compiled ~2x slower and served no faster (A/B in one run), so not used.
        fn = torch.compile(paged_decode_attention, dynamic=True)
        cfg = self.model.cfg
        try:
            # Dynamo specialises sizes 1 (one sequence, one block), so each of the four cases
            # is compiled here. Without duck sizing (which ties equal sizes, e.g. a batch of 2
            # to the cache's K/V axis) and with inference tensors as in real steps, no later
            # shape recompiles.
            with torch.inference_mode(), torch.fx.experimental._config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
                for d, blocks in ((1, 1), (1, 3), (2, 1), (5, 7), (6, 9)):
                    q = torch.zeros((d, cfg.num_attention_heads, cfg.head_dim), dtype=self.model.dtype,
                                    device=self.device)
                    tables = torch.zeros((d, blocks), dtype=torch.long, device=self.device)
                    ctx = torch.full((d,), blocks * self.block_size, dtype=torch.long, device=self.device)
                    fn(q, self.kv_cache[0, 0], self.kv_cache[1, 0], tables, ctx, self.model.scale)
        except Exception as exc:  # any compile fault means: stay eager
            return f"torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}"
        self.model.decode_attention = fn
        return None

    def _tensor(self, data: list[int]) -> torch.Tensor:
        return torch.tensor(data, dtype=torch.long).to(self.device, non_blocking=True)

    @torch.inference_mode()
    def run(self, scheduled: list[ScheduledSeq]) -> StepLogits:
        bs = self.block_size
        # Decodes first so they form one contiguous, batchable block of rows.
        decodes = [s for s in scheduled if s.num_new == 1]
        prefills = [s for s in scheduled if s.num_new > 1]
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        row_loras: list[str | None] = []
        logit_rows: list[int] = []
        sample_seqs: list[Sequence] = []
        prompt_rows: list[tuple[Sequence, int, int, int]] = []  # seq, first row, n rows, first position
        chunks: list[PrefillChunk] = []
        for s in decodes + prefills:
            seq, start, n = s.seq, s.start, s.num_new
            row0 = len(input_ids)
            tokens = seq.all_token_ids
            table = seq.block_table
            input_ids.extend(tokens[start : start + n])
            positions.extend(range(start, start + n))
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, start + n))
            row_loras.extend([seq.lora_name] * n)
            if n > 1:
                nblocks = -(-(start + n) // bs)
                chunks.append(PrefillChunk(row0, n, start + n, self._tensor(table[:nblocks])))
            if seq.wants_prompt_logprobs and start < seq.num_prompt_tokens:
                prompt_rows.append((seq, row0, n, start))
            if s.samples:
                logit_rows.append(row0 + n - 1)
                sample_seqs.append(seq)
        meta = BatchMetadata(positions=self._tensor(positions), slot_mapping=self._tensor(slots), prefills=chunks)
        if decodes:
            max_blocks = max(-(-(s.start + 1) // bs) for s in decodes)
            tables = [s.seq.block_table[:max_blocks] + [0] * (max_blocks - len(s.seq.block_table[:max_blocks]))
                      for s in decodes]
            ctx = self._tensor([s.start + 1 for s in decodes])
            meta.num_decode = len(decodes)
            meta.decode_block_tables = self._tensor([x for t in tables for x in t]).view(len(decodes), max_blocks)
            meta.decode_ctx_lens = ctx
            if self.model.decode_attention is None:
                arange = torch.arange(max_blocks * bs, device=self.device)
                pad = torch.zeros((len(decodes), max_blocks * bs), dtype=self.model.dtype, device=self.device)
                pad.masked_fill_(arange[None, :] >= ctx[:, None], float("-inf"))
                meta.decode_mask = pad.view(1, len(decodes), 1, -1)
        meta.lora = self.lora.build_batch(row_loras, self.device)
        hidden = self.model.forward(self._tensor(input_ids), meta, self.kv_cache)
        sample_logits = self.model.logits(hidden[self._tensor(logit_rows)]) if logit_rows else hidden.new_empty(0)
        prompt_logits = {id(seq): (pos, self.model.logits(hidden[row0 : row0 + n]))
                         for seq, row0, n, pos in prompt_rows}
        return StepLogits(sample_seqs, sample_logits, prompt_logits)
