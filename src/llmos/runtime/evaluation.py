"""Evaluation: perplexity on held-out text and exact-match accuracy on instruction tasks.

Both are deterministic: held-out data comes from the built-in generators, and
answers are decoded greedily. Also home of :func:`generate`, the batched greedy
/ sampled decoding that the batch runtime shares.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from llmos.errors import ValidationError
from llmos.models import datasets
from llmos.models.tokenizer import format_prompt

EVAL_TASKS = ("perplexity", *datasets.TASKS)
# transformers 5 renamed the KV-cache argument and output field; older releases use past_key_values.
_CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"
PPL_SEQ_LEN = 128


def check_eval_tasks(tasks: Sequence[str]) -> list[str]:
    """Expand ``exact_match`` to every instruction task and reject unknown names."""
    out: list[str] = []
    for t in tasks:
        names = list(datasets.TASKS) if t in ("exact_match", "tasks") else [t]
        for n in names:
            if n not in EVAL_TASKS:
                raise ValidationError(f"unknown eval task {t!r}; known: exact_match, {', '.join(EVAL_TASKS)}")
            if n not in out:
                out.append(n)
    if not out:
        raise ValidationError("eval needs at least one task")
    return out


@torch.no_grad()
def perplexity(model: torch.nn.Module, tok: PreTrainedTokenizerBase, n_docs: int = 200, seed: int = 0) -> float:
    """exp(mean token NLL) over held-out corpus blocks of :data:`PPL_SEQ_LEN` tokens."""
    device = next(model.parameters()).device
    ids: list[int] = []
    for doc in datasets.corpus_documents(n_docs, "heldout", seed):
        ids.extend(tok(doc + (tok.eos_token or ""))["input_ids"])
    blocks = [ids[i : i + PPL_SEQ_LEN] for i in range(0, len(ids) - PPL_SEQ_LEN + 1, PPL_SEQ_LEN)]
    if not blocks:
        raise ValidationError("held-out text too short for perplexity")
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(blocks), 8):
        x = torch.tensor(blocks[i : i + 8], device=device)
        out = model(input_ids=x, labels=x)
        n = x.numel() - x.shape[0]  # each block predicts all but its first token
        total_nll += float(out.loss) * n
        total_tokens += n
    return math.exp(total_nll / total_tokens)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    batch_size: int = 16,
    seed: int = 0,
    chat: bool = True,
) -> list[str]:
    """Completions for ``prompts`` (chat-formatted unless ``chat=False``), in order.

    Greedy when ``temperature`` is 0, else sampled with a generator seeded by
    ``seed`` so a rerun reproduces it. Decoding stops at EOS.
    """
    device = next(model.parameters()).device
    eos, pad = tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        texts = [format_prompt(p) if chat else p for p in prompts[start : start + batch_size]]
        enc = [tok(t)["input_ids"] for t in texts]
        width = max(len(e) for e in enc)
        # Left padding keeps every row's last prompt token in the same column.
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in enc], device=device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc], device=device)
        done = torch.zeros(len(enc), dtype=torch.bool, device=device)
        new: list[list[int]] = [[] for _ in enc]
        past = None
        step_ids, step_mask = ids, mask
        for _ in range(max_new_tokens):
            pos = (step_mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
            res = model(input_ids=step_ids, attention_mask=step_mask, position_ids=pos, use_cache=True,
                        logits_to_keep=1, **{_CACHE_ARG: past})
            past = getattr(res, _CACHE_ARG)
            logits = res.logits[:, -1, :].float()
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1).cpu()
                nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1).to(device)
            else:
                nxt = logits.argmax(-1)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    if t == eos:
                        done[i] = True
                    else:
                        new[i].append(t)
            if bool(done.all()):
                break
            step_ids = nxt.unsqueeze(-1)
            step_mask = torch.cat([step_mask, torch.ones_like(step_ids)], dim=-1)
        out.extend(str(tok.decode(n, skip_special_tokens=True)) for n in new)
    return out


@dataclass(frozen=True)
class ExactMatch:
    task: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def exact_match(
    model: torch.nn.Module, tok: PreTrainedTokenizerBase, task: str, n: int = 100, seed: int = 0
) -> ExactMatch:
    """Greedy answers to ``n`` held-out examples of ``task``, compared after stripping spaces."""
    examples = datasets.task_examples(task, "heldout", n, seed)
    answers = generate(model, tok, [e.prompt for e in examples], max_new_tokens=16)
    correct = sum(a.strip() == e.completion.strip() for a, e in zip(answers, examples, strict=True))
    return ExactMatch(task, correct, len(examples))


def evaluate(
    model: torch.nn.Module, tok: PreTrainedTokenizerBase, tasks: Sequence[str], max_examples: int = 100
) -> dict[str, float]:
    """Metrics named ``perplexity`` and ``exact_match/<task>`` for each requested task."""
    metrics: dict[str, float] = {}
    for t in check_eval_tasks(tasks):
        if t == "perplexity":
            metrics["perplexity"] = perplexity(model, tok, n_docs=max(20, max_examples))
        else:
            metrics[f"exact_match/{t}"] = exact_match(model, tok, t, n=max_examples).accuracy
    return metrics
