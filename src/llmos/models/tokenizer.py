"""The llmos byte-level BPE tokenizer, trained offline, shipped in Hugging Face format.

The trained ``tokenizer.json`` lives in ``llmos/models/assets/tokenizer`` as
package data, so nothing retrains it at run time; :func:`train_tokenizer`
regenerates it (``python -m llmos.models.tokenizer``) from the built-in corpus
and tasks. Digits are split one per token so arithmetic stays learnable.

Chat format (``chat_template`` in ``tokenizer_config.json``)::

    <|user|>\\n{content}<|end|>\\n<|assistant|>\\n{content}<|end|>\\n

``<|end|>`` is the EOS token: it ends every turn and every pretraining document.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from llmos.models import datasets

ASSET_DIR = Path(__file__).parent / "assets" / "tokenizer"
VOCAB_SIZE = 2048
EOS_TOKEN = "<|end|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, "<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _training_texts() -> list[str]:
    texts = datasets.corpus_documents(4000, "train", seed=0)
    for task in datasets.TASKS:
        texts += [f"{e.prompt}\n{e.completion}" for e in datasets.task_examples(task, "train", 500)]
    return texts


def train_tokenizer(out_dir: Path = ASSET_DIR, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train the BPE tokenizer on the built-in data and write it in HF format to ``out_dir``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_texts(), trainer=trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
    _ensure_template_in_config(out_dir)
    return out_dir


def _ensure_template_in_config(out_dir: Path) -> None:
    # Newer transformers write the template to chat_template.jinja only; older
    # loaders (and vLLM versions) read it from tokenizer_config.json, so keep both.
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    # transformers 5 writes its new backend class name, which 4.x cannot resolve.
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def save_tokenizer(out_dir: Path) -> None:
    """Copy the shipped tokenizer files (HF format, with chat template) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in ASSET_DIR.iterdir():
        if f.is_file():
            (out_dir / f.name).write_bytes(f.read_bytes())


@lru_cache(maxsize=1)
def load_tokenizer() -> PreTrainedTokenizerFast:
    """The shipped tokenizer (cached; treat it as read-only)."""
    tok: PreTrainedTokenizerFast = PreTrainedTokenizerFast.from_pretrained(
        str(ASSET_DIR), local_files_only=True
    )
    if tok.chat_template is None:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def format_prompt(prompt: str) -> str:
    """The chat-formatted text a model sees before it answers ``prompt``."""
    return f"<|user|>\n{prompt}{EOS_TOKEN}\n<|assistant|>\n"


if __name__ == "__main__":
    print(train_tokenizer())
