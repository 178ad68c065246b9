"""Turning OpenAI requests into engine requests, and engine outputs back into choices.

Shared by completions and chat: prompt tokenisation and length checks, the
mapping of request fields to :class:`SamplingParams`, running ``n`` choices
concurrently on one engine loop, and the latency and token metrics each
request contributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from llmos.errors import ValidationError
from llmos.serving.server.metrics import ServerMetrics
from llmos.serving.server.model_manager import LoadedModel


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> dict[str, Any]:
    """OpenAI's ``usage`` object; ``prompt_tokens_details`` only where the response carries it."""
    body: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        body["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return body


def tokenize_prompt(
    model: LoadedModel, prompt: str | list[int], add_special_tokens: bool = True
) -> list[int]:
    """Token ids of ``prompt``; token lists are checked against the vocabulary."""
    tok = model.tokenizer
    if isinstance(prompt, str):
        ids = list(tok(prompt, add_special_tokens=add_special_tokens)["input_ids"])
    else:
        vocab = len(tok)
        if any(t < 0 or t >= vocab for t in prompt):
            raise ValidationError(f"prompt token ids must be in [0, {vocab})")
        ids = list(prompt)
    if not ids:
        raise ValidationError("prompt must not be empty")
    return ids


def output_budget(model: LoadedModel, num_prompt_tokens: int, max_tokens: int | None) -> int:
    """How many tokens to generate; 400 when prompt plus output exceed the context."""
    room = model.max_model_len - num_prompt_tokens
    if max_tokens is None:
        if room < 1:
            raise ValidationError(
                f"This model's maximum context length is {model.max_model_len} tokens; "
                f"the prompt has {num_prompt_tokens}"
            )
        return room
    if num_prompt_tokens + max_tokens > model.max_model_len:
        raise ValidationError(
            f"This model's maximum context length is {model.max_model_len} tokens. However, you requested "
            f"{num_prompt_tokens + max_tokens} tokens ({num_prompt_tokens} in the prompt, {max_tokens} "
            "for the completion). Please reduce the prompt or max_tokens."
        )
    return max_tokens


def make_params(
    req: Any,
    max_tokens: int,
    *,
    logprobs: int | None = None,
    prompt_logprobs: int | None = None,
    choice_index: int = 0,
) -> Any:
    """SamplingParams for one choice; distinct seeds per choice so that ``n`` samples differ."""
    from llmos.serving.engine import SamplingParams

    try:
        stop = req.stop_list
    except ValueError as e:
        raise ValidationError(str(e)) from None
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=0 if req.top_k == -1 else req.top_k,
        seed=None if req.seed is None else req.seed + choice_index,
        stop=stop,
        stop_token_ids=tuple(req.stop_token_ids or ()),
        min_tokens=min(req.min_tokens, max_tokens),
        ignore_eos=req.ignore_eos,
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
    )


@dataclass
class ChoiceJob:
    """One engine request behind one choice."""

    index: int
    prompt_ids: list[int]
    params: Any


@dataclass
class ChoiceState:
    """What has accumulated for one choice while its outputs arrive."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)
    prompt_logprobs: list[Any] | None = None
    finish_reason: str | None = None
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    num_cached_tokens: int = 0

    def absorb(self, out: Any) -> None:
        self.text += out.new_text
        self.token_ids.extend(out.new_token_ids)
        if out.logprobs:
            self.logprobs.extend(out.logprobs)
        if out.prompt_logprobs is not None:
            self.prompt_logprobs = out.prompt_logprobs
        self.num_prompt_tokens = out.num_prompt_tokens
        self.num_output_tokens = out.num_output_tokens
        self.num_cached_tokens = out.num_cached_tokens
        if out.finished:
            self.finish_reason = out.finish_reason


async def run_choices(
    model: LoadedModel,
    jobs: list[ChoiceJob],
    lora_name: str | None,
    metrics: ServerMetrics,
    model_label: str,
) -> AsyncIterator[tuple[int, Any]]:
    """Run every job concurrently on the model's engine loop; yield ``(choice index, output)``.

    Outputs of different choices interleave in arrival order. An error of any
    choice is raised here (the others are aborted). Leaving the iteration early
    aborts every unfinished choice.
    """
    loop = model.loop
    assert loop is not None, "run_choices needs a generative model"
    merged: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    arrival = time.perf_counter()

    async def pump(job: ChoiceJob) -> None:
        last = None
        try:
            async for out in loop.generate(job.prompt_ids, job.params, lora_name=lora_name):
                now = time.perf_counter()
                if out.new_token_ids:
                    if last is None:
                        metrics.observe_first_token(model_label, now - arrival)
                        if len(out.new_token_ids) > 1:
                            metrics.observe_tokens(model_label, 0.0, len(out.new_token_ids) - 1)
                    else:
                        metrics.observe_tokens(model_label, now - last, len(out.new_token_ids))
                    last = now
                if out.finished:
                    metrics.observe_finished(
                        model_label, now - arrival, out.num_prompt_tokens, out.num_output_tokens,
                        out.finish_reason,
                    )  # fmt: skip
                await merged.put((job.index, out))
        except BaseException as e:
            await merged.put((job.index, e))
            raise

    tasks = [asyncio.create_task(pump(j)) for j in jobs]
    remaining = len(jobs)
    try:
        while remaining:
            index, item = await merged.get()
            if isinstance(item, BaseException):
                if isinstance(item, asyncio.CancelledError):
                    raise asyncio.CancelledError()
                raise item
            if item.finished:
                remaining -= 1
            yield index, item
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


def token_text(model: LoadedModel, token_id: int) -> str:
    """The text of one token, as OpenAI's logprobs report it."""
    return str(model.tokenizer.decode([token_id]))
