"""LLMEngine: the serving engine's single entry point.

Contract: every method is called from ONE thread (the server's engine loop); nothing
here locks. ``add_request`` and ``abort`` only queue work; ``step`` runs one iteration
of continuous batching (schedule, one forward pass over every scheduled token, sample,
detokenize) and returns a :class:`RequestOutput` delta for each request that produced
tokens or finished in it. ``generate`` is the offline convenience that steps until
its own requests finish; do not mix it with a running server loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from llmos.errors import LLMOSError, NotFound, ValidationError
from llmos.serving.engine.block_manager import BlockManager
from llmos.serving.engine.config import EngineConfig, ModelConfig, SamplingParams
from llmos.serving.engine.detokenizer import IncrementalDetokenizer
from llmos.serving.engine.llama import LlamaModel
from llmos.serving.engine.lora import LoraManager
from llmos.serving.engine.model_runner import ModelRunner, StepLogits, num_kv_blocks
from llmos.serving.engine.outputs import EngineStats, RequestOutput
from llmos.serving.engine.sampler import Sampler, token_logprobs
from llmos.serving.engine.scheduler import ScheduledSeq, Scheduler
from llmos.serving.engine.sequence import FinishReason, Sequence, SequenceStatus, TokenLogprob

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValidationError(f"bad device {name!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValidationError("device 'cuda' requested but CUDA is not available")
    return device


def resolve_dtype(name: str, model_dtype: str, device: torch.device) -> torch.dtype:
    if name != "auto":
        return _DTYPES[name]
    dtype = _DTYPES.get(model_dtype.removeprefix("torch."), torch.float32)
    # Half precision matmuls are slow (or unsupported) on many CPUs; bf16 is fine.
    if device.type == "cpu" and dtype == torch.float16:
        return torch.float32
    return dtype


class LLMEngine:
    def __init__(self, model_dir: str | Path, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        path = Path(model_dir)
        if not path.is_dir():
            raise ValidationError(f"model directory {path} does not exist")
        self.model_dir = path
        self.model_config = mcfg = ModelConfig.from_dir(path)
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, mcfg.torch_dtype, self.device)
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot load the tokenizer of {path}: {exc}") from exc
        self.model_name = path.name
        self.max_model_len = mcfg.max_position_embeddings
        self.eos_token_ids = self._eos_ids(path, mcfg)
        self.model = LlamaModel.load(path, mcfg, self.device, self.dtype)
        self.num_blocks = num_kv_blocks(mcfg, config.kv_cache_gib, config.block_size, self.dtype)
        self.block_manager = BlockManager(self.num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(config, self.block_manager)
        self.lora_manager = LoraManager(mcfg, config.max_loras, config.max_lora_rank, self.device, self.dtype)
        self.runner = ModelRunner(self.model, self.num_blocks, config.block_size, self.lora_manager)
        # Which decode-attention path runs (native kernel, compiled, eager) and, if ``auto`` fell
        # back from a faster one, why.
        self.attention_path, self.attention_note = self.runner.select_decode_attention(
            "eager" if config.enforce_eager else config.decode_attention)
        if self.attention_note:
            log.warning("decode attention is %s: %s", self.attention_path, self.attention_note)
        self.sampler = Sampler(self.eos_token_ids)
        self._seqs: dict[str, Sequence] = {}
        self._aborted: list[RequestOutput] = []
        self._num_prompt_tokens_computed = 0
        self._num_generated_tokens = 0

    def _eos_ids(self, path: Path, mcfg: ModelConfig) -> tuple[int, ...]:
        ids = set(mcfg.eos_token_ids)
        gen = path / "generation_config.json"
        if gen.is_file():
            eos = json.loads(gen.read_text()).get("eos_token_id")
            ids.update(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return tuple(sorted(int(i) for i in ids))

    # -- adapters ------------------------------------------------------------------
    def add_lora(self, name: str, path: str | Path) -> None:
        """Load a PEFT LoRA dir under ``name``; ValidationError if it does not fit the base."""
        p = Path(path)
        if not p.is_dir():
            raise ValidationError(f"LoRA adapter directory {p} does not exist")
        self.lora_manager.add(name, p, keep=self._active_loras())

    def remove_lora(self, name: str) -> None:
        if any(s.lora_name == name for s in self._seqs.values()):
            raise ValidationError(f"LoRA adapter {name!r} is in use by running requests")
        self.lora_manager.remove(name)

    def list_loras(self) -> list[str]:
        return self.lora_manager.names()

    def _active_loras(self) -> set[str]:
        return {s.lora_name for s in self.scheduler.running if s.lora_name is not None}

    # -- requests ------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        return list(self.tokenizer.encode(prompt, add_special_tokens=True))

    def add_request(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                    lora_name: str | None = None) -> None:
        """Queue a request. A string prompt is tokenized with the tokenizer's special tokens (BOS)."""
        if request_id in self._seqs:
            raise ValidationError(f"request id {request_id!r} is already running")
        if lora_name is not None and lora_name not in self.lora_manager:
            raise NotFound(f"LoRA adapter {lora_name!r} is not loaded")
        ids = self.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise ValidationError("prompt is empty")
        vocab = self.model_config.vocab_size
        if any(t < 0 or t >= vocab for t in ids):
            raise ValidationError(f"prompt token ids must be in [0, {vocab})")
        total = len(ids) + params.max_tokens
        if total > self.max_model_len:
            raise ValidationError(
                f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) = {total} exceeds the "
                f"model's context length {self.max_model_len}"
            )
        if self.block_manager.blocks_needed(total) > self.num_blocks:
            raise ValidationError(
                f"request needs {total} tokens of KV cache; the cache holds "
                f"{self.num_blocks * self.config.block_size} (raise kv_cache_gib)"
            )
        seq = Sequence(
            request_id=request_id, prompt_token_ids=ids, params=params, lora_name=lora_name,
            cache_salt=None if lora_name is None else self.lora_manager.cache_salt(lora_name),
            detokenizer=IncrementalDetokenizer(self.tokenizer, ids, params.stop), arrival_s=time.monotonic(),
        )
        if params.seed is not None:
            seq.generator = torch.Generator(device=self.device).manual_seed(params.seed)
        if params.prompt_logprobs is not None:
            seq.prompt_logprobs = [None]
        self._seqs[request_id] = seq
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> None:
        """Stop a request and free its blocks; its final output comes from the next step(). Idempotent."""
        seq = self._seqs.pop(request_id, None)
        if seq is None:
            return
        self.scheduler.remove(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = FinishReason.ABORT
        self._aborted.append(self._output(seq))

    def has_unfinished(self) -> bool:
        return bool(self._seqs) or bool(self._aborted)

    def stats(self) -> EngineStats:
        bm = self.block_manager
        return EngineStats(
            num_running=len(self.scheduler.running), num_waiting=len(self.scheduler.waiting),
            kv_cache_usage=bm.usage, prefix_cache_queries=bm.prefix_cache_queries,
            prefix_cache_hits=bm.prefix_cache_hits, num_preemptions=self.scheduler.num_preemptions,
            num_kv_blocks=self.num_blocks, num_prompt_tokens_computed=self._num_prompt_tokens_computed,
            num_generated_tokens=self._num_generated_tokens,
            num_loras_resident=len(self.lora_manager.resident()),
        )

    # -- the loop --------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        outputs, self._aborted = self._aborted, []
        scheduled = self.scheduler.schedule()
        if not scheduled:
            return outputs
        failed = self._unloadable_loras(scheduled)
        if failed:
            # An adapter that can no longer be loaded (its directory changed or vanished since
            # it was registered) fails its own requests, never the engine; the rest run next step.
            for s in scheduled:
                if s.seq.lora_name in failed:
                    self.abort(s.seq.request_id)
            aborted, self._aborted = self._aborted, []
            return outputs + aborted
        result = self.runner.run(scheduled)
        for s in scheduled:
            s.seq.num_computed_tokens += s.num_new
            self.block_manager.commit(s.seq)
            if s.seq.num_computed_tokens <= s.seq.num_prompt_tokens:
                self._num_prompt_tokens_computed += s.num_new
        self._record_prompt_logprobs(scheduled, result)
        progressed: list[Sequence] = []
        if result.sample_seqs:
            tokens, lps = self.sampler(result.sample_logits, result.sample_seqs)
            for seq, tok, lp in zip(result.sample_seqs, tokens, lps, strict=True):
                self._append_token(seq, tok, lp)
                progressed.append(seq)
        for seq in progressed:
            outputs.append(self._output(seq))
            if seq.is_finished:
                self.scheduler.remove(seq)
                self._seqs.pop(seq.request_id, None)
        return outputs

    def _unloadable_loras(self, scheduled: list[ScheduledSeq]) -> set[str]:
        failed: set[str] = set()
        for name in {s.seq.lora_name for s in scheduled if s.seq.lora_name is not None}:
            try:
                self.lora_manager.activate({name})
            except LLMOSError:
                failed.add(name)
        return failed

    def _record_prompt_logprobs(self, scheduled: list[ScheduledSeq], result: StepLogits) -> None:
        for s in scheduled:
            seq = s.seq
            entry = result.prompt_logits.get(id(seq))
            if entry is None or seq.prompt_logprobs is None:
                continue
            first_pos, logits = entry
            n_prompt = seq.num_prompt_tokens
            # Row j (position first_pos + j) predicts the prompt token at first_pos + j + 1;
            # positions already scored before a preemption are not scored twice.
            done = len(seq.prompt_logprobs)
            rows = [j for j in range(logits.shape[0]) if done <= first_pos + j + 1 < n_prompt]
            if not rows:
                continue
            targets = torch.tensor([seq.prompt_token_ids[first_pos + j + 1] for j in rows], device=logits.device)
            lps = torch.log_softmax(logits[rows], dim=-1)
            n = seq.params.prompt_logprobs or 0
            seq.prompt_logprobs.extend(token_logprobs(lps, targets, [n] * len(rows)))

    def _append_token(self, seq: Sequence, tok: int, lp: TokenLogprob | None) -> None:
        p = seq.params
        seq.output_token_ids.append(tok)
        seq.pending_token_ids.append(tok)
        if lp is not None:
            seq.pending_logprobs.append(lp)
        self._num_generated_tokens += 1
        n_out = seq.num_output_tokens
        may_stop = n_out >= p.min_tokens
        if (may_stop and tok in p.stop_token_ids) or (may_stop and not p.ignore_eos and tok in self.eos_token_ids):
            self._finish(seq, FinishReason.STOP)
        else:
            seq.detokenizer.append(tok)
            if may_stop and seq.detokenizer.find_stop():
                self._finish(seq, FinishReason.STOP)
                return
        if not seq.is_finished and (n_out >= p.max_tokens or len(seq) >= self.max_model_len):
            self._finish(seq, FinishReason.LENGTH)
        if seq.is_finished:
            seq.detokenizer.flush()

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    def _output(self, seq: Sequence) -> RequestOutput:
        finished = seq.is_finished
        prompt_lps = None
        if seq.prompt_logprobs is not None and not seq.prompt_logprobs_reported:
            prompt_lps = seq.prompt_logprobs
            seq.prompt_logprobs_reported = True
        out = RequestOutput(
            request_id=seq.request_id, new_token_ids=seq.pending_token_ids,
            new_text=seq.detokenizer.take_delta(finished), finished=finished,
            finish_reason=seq.finish_reason.value if seq.finish_reason else None,
            logprobs=seq.pending_logprobs if seq.params.logprobs is not None else None,
            prompt_logprobs=prompt_lps, num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=seq.num_output_tokens, num_cached_tokens=seq.num_cached_tokens,
            prompt_token_ids=seq.prompt_token_ids if prompt_lps is not None else None,
        )
        seq.pending_token_ids = []
        seq.pending_logprobs = []
        return out

    # -- offline ---------------------------------------------------------------------
    def generate(self, prompts: str | list[int] | Seq[str | list[int]],
                 params: SamplingParams | Seq[SamplingParams] | None = None,
                 lora_name: str | Seq[str | None] | None = None) -> list[RequestOutput]:
        """Run ``prompts`` to completion; one whole-request RequestOutput each, in input order."""
        if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        plist = list(prompts)
        n = len(plist)
        params_list = [params or SamplingParams()] * n if not isinstance(params, Seq) else list(params)
        loras = [lora_name] * n if lora_name is None or isinstance(lora_name, str) else list(lora_name)
        if len(params_list) != n or len(loras) != n:
            raise ValidationError("prompts, params and lora_name must have the same length")
        ids = [f"generate-{time.monotonic_ns()}-{i}" for i in range(n)]
        results: dict[str, RequestOutput] = {}
        for rid, prompt, sp, lora in zip(ids, plist, params_list, loras, strict=True):
            self.add_request(rid, prompt, sp, lora)
        wanted = set(ids)
        while wanted - {r for r, o in results.items() if o.finished}:
            for out in self.step():
                if out.request_id not in wanted:
                    continue
                acc = results.get(out.request_id)
                if acc is None:
                    results[out.request_id] = out
                    out.new_token_ids = list(out.new_token_ids)
                    out.logprobs = list(out.logprobs) if out.logprobs is not None else None
                    continue
                acc.new_token_ids.extend(out.new_token_ids)
                acc.new_text += out.new_text
                if acc.logprobs is not None and out.logprobs is not None:
                    acc.logprobs.extend(out.logprobs)
                acc.finished, acc.finish_reason = out.finished, out.finish_reason
                acc.num_output_tokens = out.num_output_tokens
        return [results[r] for r in ids]
