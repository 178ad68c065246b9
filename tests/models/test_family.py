"""The model family, tokenizer and built-in datasets: real models, real tokenizer."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmos.errors import ValidationError
from llmos.models import datasets
from llmos.models.family import FAMILY, count_parameters, create_model, create_model_dir, family_config
from llmos.models.tokenizer import EOS_TOKEN, format_prompt, load_tokenizer


def test_tiny_model_dir_loads_offline_and_generates(tmp_path):
    path = create_model_dir("llmos-tiny", tmp_path / "tiny", seed=0)
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["rope_theta"] == 10000.0
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert tok.eos_token == EOS_TOKEN
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is 1 + 2?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_same_seed_same_weights_different_seed_differs():
    a, b, c = create_model("llmos-tiny", 1), create_model("llmos-tiny", 1), create_model("llmos-tiny", 2)
    wa, wb, wc = (m.model.embed_tokens.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_family_sizes():
    assert 0.5e6 < count_parameters(create_model("llmos-tiny")) < 1.5e6
    small = FAMILY["llmos-small"]
    assert (small.hidden_size, small.num_layers) == (512, 8)
    with pytest.raises(ValidationError, match="unknown model config"):
        family_config("llmos-huge")


def test_tokenizer_chat_template_and_digits():
    tok = load_tokenizer()
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == format_prompt("hi")
    ids = tok("12345")["input_ids"]
    assert [tok.decode([i]) for i in ids] == list("12345")
    assert tok.decode(tok("Sort these numbers: 3 1 2")["input_ids"]) == "Sort these numbers: 3 1 2"


def test_tasks_are_deterministic_exact_and_split_disjoint():
    train = datasets.task_examples("addition", "train", 200)
    assert train == datasets.task_examples("addition", "train", 200)
    held = datasets.task_examples("addition", "heldout", 50)
    assert len(held) == 50 and not {e.prompt for e in train} & {e.prompt for e in held}
    for e in train[:20]:
        a, b = e.prompt.removeprefix("What is ").removesuffix("?").split(" + ")
        assert int(e.completion) == int(a) + int(b)
    mixed = datasets.task_examples("tasks", "train", 8)
    assert {e.task for e in mixed} == set(datasets.TASKS)
    rev = datasets.task_examples("reversal", "train", 3)
    assert all(e.completion == e.prompt.rsplit(" ", 1)[1][::-1] for e in rev)


def test_jsonl_import_and_validation(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(
        '{"prompt": "hi", "completion": "hello"}\n\n'
        '{"messages": [{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "4"}]}\n'
    )
    ex = datasets.read_jsonl_examples(good)
    assert [(e.prompt, e.completion) for e in ex] == [("hi", "hello"), ("2+2", "4")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "completion": "x"}\n{"prompt": oops}\n')
    with pytest.raises(ValidationError, match=r"bad.jsonl:2: malformed JSON"):
        datasets.validate_dataset(str(bad))
    missing = tmp_path / "m.jsonl"
    missing.write_text('{"prompt": "hi"}\n')
    with pytest.raises(ValidationError, match="'prompt' and 'completion'"):
        datasets.validate_dataset(str(missing))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValidationError, match="is empty"):
        datasets.validate_dataset(str(empty))
    with pytest.raises(ValidationError, match="unknown built-in dataset"):
        datasets.validate_dataset("builtin:poetry")
    with pytest.raises(ValidationError, match="not found"):
        datasets.validate_dataset(str(tmp_path / "nope.jsonl"))
