"""``POST /v1/completions``: plain and streamed, with ``echo``, ``logprobs`` and ``n``.

lm-evaluation-harness scores with ``echo=True, max_tokens=0, logprobs=N``: the
engine needs at least one output token, so the server generates one and drops
it, returning the prompt's text and per-token logprobs only.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from llmos.serving.server.generation import (
    ChoiceJob,
    ChoiceState,
    make_params,
    new_id,
    output_budget,
    run_choices,
    token_text,
    tokenize_prompt,
    usage,
)
from llmos.serving.server.metrics import ServerMetrics
from llmos.serving.server.model_manager import LoadedModel
from llmos.serving.server.protocol import CompletionRequest


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


class _Logprobs:
    """Builds OpenAI's legacy completions ``logprobs`` object incrementally."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.text_offset: list[int] = []
        self._offset = 0

    def add(self, token_id: int, lp: Any) -> None:
        text = token_text(self.model, token_id)
        self.tokens.append(text)
        self.text_offset.append(self._offset)
        self._offset += len(text)
        if lp is None:
            self.token_logprobs.append(None)
            self.top_logprobs.append(None)
            return
        self.token_logprobs.append(float(lp.logprob))
        top = {token_text(self.model, t): float(v) for t, v in lp.top.items()}
        top.setdefault(text, float(lp.logprob))
        self.top_logprobs.append(top)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        }

    def take(self) -> dict[str, Any]:
        """The entries added since the last ``take`` (for stream chunks)."""
        out = self.as_dict()
        self.tokens, self.token_logprobs, self.top_logprobs, self.text_offset = [], [], [], []
        return out


def _jobs(req: CompletionRequest, model: LoadedModel) -> tuple[list[ChoiceJob], list[list[int]]]:
    jobs: list[ChoiceJob] = []
    prompt_ids: list[list[int]] = []
    for p_index, prompt in enumerate(req.prompts()):
        ids = tokenize_prompt(model, prompt)
        prompt_ids.append(ids)
        # max_tokens=0 (scoring) still runs one engine step for the prompt logprobs.
        budget = output_budget(model, len(ids), 1 if req.max_tokens == 0 else req.max_tokens)
        for i in range(req.n):
            params = make_params(
                req,
                budget,
                logprobs=req.logprobs,
                prompt_logprobs=req.logprobs if req.echo and req.logprobs is not None else None,
                choice_index=i,
            )
            jobs.append(ChoiceJob(p_index * req.n + i, ids, params))
    return jobs, prompt_ids


def _prompt_text(model: LoadedModel, ids: list[int]) -> str:
    return str(model.tokenizer.decode(ids, skip_special_tokens=False))


async def complete(
    req: CompletionRequest, model: LoadedModel, lora: str | None, metrics: ServerMetrics
) -> dict[str, Any]:
    """The whole (non-streamed) completion response."""
    jobs, prompt_ids = _jobs(req, model)
    states = {j.index: ChoiceState(j.index) for j in jobs}
    async for index, out in run_choices(model, jobs, lora, metrics, req.model):
        states[index].absorb(out)
    scoring = req.max_tokens == 0
    choices = []
    prompt_tokens = 0
    completion_tokens = 0
    cached = 0
    for job in jobs:
        st = states[job.index]
        p_ids = prompt_ids[job.index // req.n]
        text = "" if scoring else st.text
        lp = _Logprobs(model) if req.logprobs is not None else None
        if req.echo:
            text = _prompt_text(model, p_ids) + text
            if lp is not None:
                plps = st.prompt_logprobs or [None] * len(p_ids)
                for tid, plp in zip(p_ids, plps, strict=False):
                    lp.add(tid, plp)
        if lp is not None and not scoring:
            for tid, tlp in zip(st.token_ids, st.logprobs, strict=False):
                lp.add(tid, tlp)
        choices.append(
            {
                "index": job.index,
                "text": text,
                "logprobs": lp.as_dict() if lp is not None else None,
                "finish_reason": "length" if scoring else st.finish_reason,
            }
        )
        if job.index % req.n == 0:
            prompt_tokens += st.num_prompt_tokens
            cached += st.num_cached_tokens
        completion_tokens += 0 if scoring else st.num_output_tokens
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": req.model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens, cached),
    }


async def stream_completion(
    req: CompletionRequest, model: LoadedModel, lora: str | None, metrics: ServerMetrics
) -> AsyncIterator[str]:
    """SSE events of a streamed completion, ending with ``data: [DONE]``."""
    jobs, prompt_ids = _jobs(req, model)
    rid = new_id("cmpl")
    created = int(time.time())
    usage_field = {"usage": None} if req.include_usage else {}
    states = {j.index: ChoiceState(j.index) for j in jobs}
    lps = {j.index: _Logprobs(model) for j in jobs} if req.logprobs is not None else {}
    started: set[int] = set()

    def chunk(index: int, text: str, lp: dict[str, Any] | None, finish: str | None) -> str:
        choice = {"index": index, "text": text, "logprobs": lp, "finish_reason": finish}
        return sse(
            {"id": rid, "object": "text_completion", "created": created, "model": req.model,
             "choices": [choice], **usage_field}
        )  # fmt: skip

    async for index, out in run_choices(model, jobs, lora, metrics, req.model):
        st = states[index]
        st.absorb(out)
        text = out.new_text
        lp = lps.get(index)
        if index not in started:
            started.add(index)
            if req.echo:
                p_ids = prompt_ids[index // req.n]
                text = _prompt_text(model, p_ids) + text
                if lp is not None:
                    for tid, plp in zip(p_ids, st.prompt_logprobs or [None] * len(p_ids), strict=False):
                        lp.add(tid, plp)
        if lp is not None:
            for tid, tlp in zip(out.new_token_ids, out.logprobs or [], strict=False):
                lp.add(tid, tlp)
        if text or out.finished or lp is not None:
            yield chunk(
                index,
                text,
                lp.take() if lp is not None else None,
                out.finish_reason if out.finished else None,
            )
    if req.include_usage:
        prompt_tokens = sum(s.num_prompt_tokens for i, s in states.items() if i % req.n == 0)
        completion_tokens = sum(s.num_output_tokens for s in states.values())
        yield sse(
            {"id": rid, "object": "text_completion", "created": created, "model": req.model, "choices": [],
             "usage": usage(prompt_tokens, completion_tokens)}
        )  # fmt: skip
    yield "data: [DONE]\n\n"
