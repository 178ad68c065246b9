"""Built-in datasets, generated deterministically, and JSONL import of user data.

Dataset references (what a job spec's ``dataset`` field holds):

- ``builtin:corpus`` — pretraining text (synthetic prose + number facts);
- ``builtin:<task>`` — an instruction task with exact answers, one of
  :data:`TASKS` (``addition``, ``reversal``, ``sorting``, ``units``), or
  ``builtin:tasks`` for all of them mixed;
- a path to a ``.jsonl`` file of ``{"prompt", "completion"}`` or chat
  ``{"messages": [{"role", "content"}, ...]}`` records (``file:`` prefix optional).

Every generator is a pure function of its seed: the same call returns the same
examples on every machine. The train / held-out split is decided by a hash of
the prompt, so the two splits never share a prompt whatever the sizes asked.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmos.errors import ValidationError

Split = Literal["train", "heldout"]
HELDOUT_FRACTION_PERCENT = 10


@dataclass(frozen=True)
class Example:
    """One instruction example: the user's prompt and the exact expected completion."""

    prompt: str
    completion: str
    task: str = "custom"

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("example prompt must not be empty")
        if not self.completion:
            raise ValueError("example completion must not be empty")


# ---------------------------------------------------------------- tasks

def _addition(rng: random.Random) -> Example:
    digits = rng.choice((1, 2, 3))
    a = rng.randrange(0, 10**digits)
    b = rng.randrange(0, 10**digits)
    return Example(f"What is {a} + {b}?", str(a + b), "addition")


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _reversal(rng: random.Random) -> Example:
    word = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 8)))
    return Example(f"Reverse the word: {word}", word[::-1], "reversal")


def _sorting(rng: random.Random) -> Example:
    nums = [rng.randrange(0, 100) for _ in range(rng.randint(3, 6))]
    return Example(
        f"Sort these numbers: {' '.join(map(str, nums))}", " ".join(map(str, sorted(nums))), "sorting"
    )


_UNITS: tuple[tuple[str, str, int], ...] = (
    ("km", "m", 1000),
    ("m", "cm", 100),
    ("kg", "g", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
)


def _units(rng: random.Random) -> Example:
    src, dst, factor = rng.choice(_UNITS)
    n = rng.randint(1, 99)
    return Example(f"Convert {n} {src} to {dst}.", str(n * factor), "units")


TASKS: dict[str, Callable[[random.Random], Example]] = {
    "addition": _addition,
    "reversal": _reversal,
    "sorting": _sorting,
    "units": _units,
}


def split_of(prompt: str) -> Split:
    """The split a prompt belongs to; stable across runs and machines."""
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    return "heldout" if h % 100 < HELDOUT_FRACTION_PERCENT else "train"


def task_examples(task: str, split: Split, n: int, seed: int = 0) -> list[Example]:
    """``n`` distinct examples of ``task`` (or ``tasks`` for a round-robin mix) in ``split``."""
    names = list(TASKS) if task == "tasks" else [task]
    for name in names:
        if name not in TASKS:
            raise ValidationError(f"unknown built-in task {task!r}; known: tasks, {', '.join(TASKS)}")
    if n < 0:
        raise ValidationError("number of examples must be >= 0")
    rng = random.Random(f"{task}:{seed}")
    seen: set[str] = set()
    out: list[Example] = []
    # Small task spaces (1-digit sums) exhaust quickly; the attempt bound keeps this total.
    attempts = 0
    while len(out) < n and attempts < 200 * max(n, 1):
        attempts += 1
        ex = TASKS[names[len(out) % len(names)]](rng)
        if ex.prompt in seen or split_of(ex.prompt) != split:
            continue
        seen.add(ex.prompt)
        out.append(ex)
    return out


# ---------------------------------------------------------------- corpus

_SUBJECTS = (
    "the scheduler", "a small model", "the operator", "every worker", "the cluster", "a tired engineer",
    "the old machine", "our team", "the river", "a curious cat", "the teacher", "the library",
    "a young student", "the compiler", "the garden", "a quiet city",
)
_VERBS = (
    "reads", "writes", "moves", "counts", "watches", "builds", "finds", "keeps", "sorts",
    "checks", "opens", "carries", "learns", "remembers", "shares", "plants",
)
_OBJECTS = (
    "the numbers", "a long list", "every letter", "the tokens", "a warm cup of tea", "the map",
    "three green apples", "the memory", "a bright idea", "the logs", "the answer", "old books",
    "the weights", "a gentle song", "the checkpoint", "two blue stones",
)
_ENDINGS = (
    "before the sun goes down", "with great care", "every single morning", "when the queue is empty",
    "in the quiet room", "after a long day", "without any help", "as fast as it can",
    "near the old bridge", "because it must",
)


def _sentence(rng: random.Random) -> str:
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ENDINGS)}."
    return s[0].upper() + s[1:]


def _number_fact(rng: random.Random) -> str:
    a, b = rng.randrange(0, 100), rng.randrange(0, 100)
    kind = rng.randrange(4)
    if kind == 0:
        return f"{a} plus {b} is {a + b}."
    if kind == 1:
        return f"{a} + {b} = {a + b}."
    if kind == 2:
        w = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(3, 6)))
        return f"The word {w} backwards is {w[::-1]}."
    n = rng.randint(1, 20)
    return f"There are {n * 1000} m in {n} km."


def corpus_documents(n_docs: int, split: Split = "train", seed: int = 0) -> list[str]:
    """``n_docs`` pretraining documents (a few sentences each) of ``split``.

    Held-out documents come from a disjoint random stream so perplexity on
    them measures generalisation, not memorisation.
    """
    rng = random.Random(f"corpus:{split}:{seed}")
    docs = []
    for _ in range(n_docs):
        parts = [
            _number_fact(rng) if rng.random() < 0.3 else _sentence(rng) for _ in range(rng.randint(3, 8))
        ]
        docs.append(" ".join(parts))
    return docs


# ---------------------------------------------------------------- JSONL import

def _parse_record(obj: object, where: str) -> Example:
    if not isinstance(obj, dict):
        raise ValidationError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or len(msgs) < 2:
            raise ValidationError(f"{where}: 'messages' must be a list of at least 2 messages")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in (
                "system", "user", "assistant"
            ):
                raise ValidationError(
                    f"{where}: messages[{i}] must be {{'role': system|user|assistant, 'content': str}}"
                )
        if msgs[-1]["role"] != "assistant":
            raise ValidationError(f"{where}: the last message must have role 'assistant'")
        if not msgs[-1]["content"]:
            raise ValidationError(f"{where}: the assistant's answer must not be empty")
        user_text = "\n".join(m["content"] for m in msgs[:-1] if m["role"] == "user")
        if not user_text:
            raise ValidationError(f"{where}: at least one 'user' message is needed")
        return Example(user_text, msgs[-1]["content"])
    prompt, completion = obj.get("prompt"), obj.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise ValidationError(
            f"{where}: each record needs string fields 'prompt' and 'completion' (or a 'messages' list)"
        )
    if not prompt or not completion:
        raise ValidationError(f"{where}: 'prompt' and 'completion' must not be empty")
    return Example(prompt, completion)


def read_jsonl_examples(path: str | Path) -> list[Example]:
    """Validate and read a user JSONL dataset. Raises :class:`ValidationError` naming the line."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"dataset file not found: {p}")
    out: list[Example] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValidationError(f"{p}:{lineno}: malformed JSON: {e.msg}") from None
            out.append(_parse_record(obj, f"{p}:{lineno}"))
    if not out:
        raise ValidationError(f"dataset {p} is empty")
    return out


def iter_jsonl(path: str | Path) -> Iterator[dict[str, object]]:
    """Yield the JSON objects of a JSONL file (batch inputs); errors name the line."""
    p = Path(path)
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValidationError(f"{p}:{lineno}: malformed JSON: {e.msg}") from None
            if not isinstance(obj, dict):
                raise ValidationError(f"{p}:{lineno}: expected a JSON object")
            yield obj


# ---------------------------------------------------------------- references

@dataclass(frozen=True)
class DatasetRef:
    """A parsed dataset reference: ``kind`` is ``corpus``, ``task`` or ``file``."""

    kind: Literal["corpus", "task", "file"]
    name: str

    @property
    def is_text(self) -> bool:
        return self.kind == "corpus"


def parse_dataset_ref(ref: str) -> DatasetRef:
    """Parse a dataset reference without touching the data beyond an existence check."""
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        if name == "corpus":
            return DatasetRef("corpus", name)
        if name == "tasks" or name in TASKS:
            return DatasetRef("task", name)
        raise ValidationError(
            f"unknown built-in dataset {ref!r}; known: builtin:corpus, builtin:tasks, "
            + ", ".join(f"builtin:{t}" for t in TASKS)
        )
    path = ref.removeprefix("file:")
    if not path.endswith(".jsonl"):
        raise ValidationError(f"dataset {ref!r}: expected builtin:<name> or a path to a .jsonl file")
    return DatasetRef("file", path)


def validate_dataset(ref: str) -> DatasetRef:
    """Fail fast on a bad dataset (unknown name, missing / malformed / empty file).

    Called at submit time, before any device is held; reads user files fully.
    """
    parsed = parse_dataset_ref(ref)
    if parsed.kind == "file":
        read_jsonl_examples(parsed.name)
    return parsed


def load_examples(ref: str, split: Split = "train", n: int = 2000, seed: int = 0) -> list[Example]:
    """Instruction examples of a task or file dataset (files have no held-out split)."""
    parsed = parse_dataset_ref(ref)
    if parsed.kind == "corpus":
        raise ValidationError("builtin:corpus is plain text; it has no instruction examples")
    if parsed.kind == "file":
        return read_jsonl_examples(parsed.name)
    return task_examples(parsed.name, split, n, seed)
