"""vLLM-compatible tokenizer routes: ``GET /tokenizer_info``, ``POST /tokenize``, ``POST /detokenize``.

lm-evaluation-harness's ``local-completions`` probes ``/tokenizer_info`` and
``/tokenize`` on the server root and, when both answer, tokenizes through the
server (its "remote" tokenizer backend), so an evaluation needs no local copy of
the tokenizer and counts tokens exactly as the server does. Without ``model``
the first registered model answers (the one ``llmos serve`` was started with).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from llmos.errors import ValidationError
from llmos.serving.server.model_manager import LoadedModel, ModelManager

router = APIRouter(tags=["tokenizer"])


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, min_length=1)
    prompt: str
    add_special_tokens: bool = True


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(None, min_length=1)
    tokens: list[int]


def _manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


async def _tokenizer(request: Request, model: str | None) -> tuple[LoadedModel, Any]:
    manager = _manager(request)
    if model is None:
        specs = manager.specs()
        if not specs:
            raise ValidationError("this server has no model")
        model = specs[0].name
    base, _ = manager.resolve(model)  # adapters share their base's tokenizer
    loaded = await manager.ensure_loaded(base)
    return loaded, loaded.tokenizer


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request, model: str | None = None) -> dict[str, Any]:
    """Special tokens and chat template of ``model``'s tokenizer."""
    loaded, tok = await _tokenizer(request, model)
    return {
        "model": loaded.spec.name,
        "tokenizer_class": type(tok).__name__,
        "eos_token": tok.eos_token,
        "bos_token": tok.bos_token,
        "pad_token": tok.pad_token,
        "unk_token": getattr(tok, "unk_token", None),
        "chat_template": getattr(tok, "chat_template", None),
        "model_max_length": loaded.max_model_len,
        "vocab_size": len(tok),
    }


@router.post("/tokenize")
async def tokenize(req: TokenizeRequest, request: Request) -> dict[str, Any]:
    loaded, tok = await _tokenizer(request, req.model)
    ids = await asyncio.to_thread(tok.encode, req.prompt, add_special_tokens=req.add_special_tokens)
    return {"tokens": list(ids), "count": len(ids), "max_model_len": loaded.max_model_len}


@router.post("/detokenize")
async def detokenize(req: DetokenizeRequest, request: Request) -> dict[str, Any]:
    _, tok = await _tokenizer(request, req.model)
    vocab = len(tok)
    bad = [t for t in req.tokens if not 0 <= t < vocab]
    if bad:
        raise ValidationError(f"token ids must be in [0, {vocab}); got {bad[:5]}")
    return {"prompt": str(tok.decode(req.tokens))}
