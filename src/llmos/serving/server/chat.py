"""``POST /v1/chat/completions``: the tokenizer's chat template, plain and streamed.

The prompt is rendered with the model directory's own chat template
(``tokenizer.apply_chat_template``); a model without one answers 400 rather
than guessing a format it was not trained on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from llmos.errors import ValidationError
from llmos.serving.server.completions import sse
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
from llmos.serving.server.protocol import ChatCompletionRequest


def render_prompt(req: ChatCompletionRequest, model: LoadedModel) -> list[int]:
    tok = model.tokenizer
    if not getattr(tok, "chat_template", None):
        raise ValidationError(
            f"model {req.model} has no chat template; use /v1/completions with a plain prompt"
        )
    try:
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    except ValueError as e:
        raise ValidationError(str(e)) from None
    try:
        text = tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=req.add_generation_prompt
        )
    except Exception as e:  # jinja errors (e.g. a template that rejects a role) are the caller's input
        raise ValidationError(f"chat template failed: {e}") from None
    # The template already wrote any BOS it wants; don't let the tokenizer add another.
    return tokenize_prompt(model, str(text), add_special_tokens=False)


def _jobs(req: ChatCompletionRequest, model: LoadedModel) -> list[ChoiceJob]:
    ids = render_prompt(req, model)
    budget = output_budget(model, len(ids), req.output_limit)
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    return [
        ChoiceJob(i, ids, make_params(req, budget, logprobs=logprobs, choice_index=i)) for i in range(req.n)
    ]


def _logprob_entries(
    model: LoadedModel, token_ids: list[int], lps: list[Any], top_n: int
) -> list[dict[str, Any]]:
    entries = []
    for tid, lp in zip(token_ids, lps, strict=False):
        text = token_text(model, tid)
        top = sorted(lp.top.items(), key=lambda kv: -kv[1])[:top_n]
        entries.append(
            {
                "token": text,
                "logprob": float(lp.logprob),
                "bytes": list(text.encode("utf-8")),
                "top_logprobs": [
                    {
                        "token": (t := token_text(model, k)),
                        "logprob": float(v),
                        "bytes": list(t.encode("utf-8")),
                    }
                    for k, v in top
                ],
            }
        )
    return entries


async def chat(
    req: ChatCompletionRequest, model: LoadedModel, lora: str | None, metrics: ServerMetrics
) -> dict[str, Any]:
    jobs = _jobs(req, model)
    states = {j.index: ChoiceState(j.index) for j in jobs}
    async for index, out in run_choices(model, jobs, lora, metrics, req.model):
        states[index].absorb(out)
    choices = []
    for j in jobs:
        st = states[j.index]
        lp = (
            {"content": _logprob_entries(model, st.token_ids, st.logprobs, req.top_logprobs or 0)}
            if req.logprobs
            else None
        )
        choices.append(
            {
                "index": j.index,
                "message": {"role": "assistant", "content": st.text},
                "logprobs": lp,
                "finish_reason": st.finish_reason,
            }
        )
    prompt_tokens = states[0].num_prompt_tokens
    completion_tokens = sum(s.num_output_tokens for s in states.values())
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens, states[0].num_cached_tokens),
    }


async def stream_chat(
    req: ChatCompletionRequest, model: LoadedModel, lora: str | None, metrics: ServerMetrics
) -> AsyncIterator[str]:
    jobs = _jobs(req, model)
    rid = new_id("chatcmpl")
    created = int(time.time())
    usage_field = {"usage": None} if req.include_usage else {}
    states = {j.index: ChoiceState(j.index) for j in jobs}
    started: set[int] = set()

    def chunk(index: int, delta: dict[str, Any], lp: Any, finish: str | None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return sse(
            {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model,
             "choices": [choice], **usage_field}
        )  # fmt: skip

    async for index, out in run_choices(model, jobs, lora, metrics, req.model):
        states[index].absorb(out)
        if index not in started:
            started.add(index)
            yield chunk(index, {"role": "assistant", "content": ""}, None, None)
        lp = (
            {"content": _logprob_entries(model, out.new_token_ids, out.logprobs or [], req.top_logprobs or 0)}
            if req.logprobs and out.new_token_ids
            else None
        )
        if out.new_text or lp is not None:
            yield chunk(index, {"content": out.new_text}, lp, None)
        if out.finished:
            yield chunk(index, {}, None, out.finish_reason)
    if req.include_usage:
        prompt_tokens = states[0].num_prompt_tokens
        completion_tokens = sum(s.num_output_tokens for s in states.values())
        yield sse(
            {"id": rid, "object": "chat.completion.chunk", "created": created, "model": req.model,
             "choices": [], "usage": usage(prompt_tokens, completion_tokens)}
        )  # fmt: skip
    yield "data: [DONE]\n\n"
