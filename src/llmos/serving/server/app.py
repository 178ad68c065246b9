"""The replica app: an OpenAI-compatible FastAPI server over a :class:`ModelManager`.

Routes: ``GET /health``, ``GET /metrics``, ``GET /v1/models``,
``POST /v1/completions``, ``POST /v1/chat/completions``, ``POST /v1/embeddings``,
``POST /v1/load_lora_adapter``, ``POST /v1/unload_lora_adapter`` and the memory
controls ``POST /llmos/models/load`` (pin, keep-alive) and ``POST /llmos/models/unload``.

A streamed response is started only after its first event exists, so a request
that fails before any output (unknown adapter, prompt too long) gets a plain 4xx
JSON error; a failure after streaming began is sent as an SSE error event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from llmos.errors import LLMOSError, ValidationError
from llmos.serving.server.chat import chat, stream_chat
from llmos.serving.server.completions import complete, stream_completion
from llmos.serving.server.errors import install_error_handlers, sse_error_event
from llmos.serving.server.metrics import CONTENT_TYPE, ServerMetrics
from llmos.serving.server.model_manager import LoadedModel, ModelManager
from llmos.serving.server.openapi import install_openapi
from llmos.serving.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    LoadLoraRequest,
    ModelCard,
    ModelList,
    UnloadLoraRequest,
)
from llmos.serving.server.tokenize import router as tokenize_router

log = logging.getLogger(__name__)


class LoadModelRequest(BaseModel):
    model: str = Field(min_length=1)
    pinned: bool | None = None
    keep_alive_s: float | None = None


class UnloadModelRequest(BaseModel):
    model: str = Field(min_length=1)


def model_cards(manager: ModelManager) -> list[ModelCard]:
    loaded = {m.spec.name: m for m in manager.loaded()}
    cards = []
    for spec in manager.specs():
        lm = loaded.get(spec.name)
        cards.append(
            ModelCard(
                id=spec.name, created=manager.created, root=str(spec.path), kind=spec.kind,
                max_model_len=lm.max_model_len if lm else None, loaded=lm is not None,
            )
        )  # fmt: skip
        for lora_name, lora_path in spec.loras:
            cards.append(
                ModelCard(
                    id=lora_name, created=manager.created, root=str(lora_path), parent=spec.name,
                    kind="adapter", max_model_len=lm.max_model_len if lm else None, loaded=lm is not None,
                )
            )  # fmt: skip
    return cards


async def _start_stream(events: AsyncIterator[str]) -> StreamingResponse:
    """Pull the first event (errors surface as HTTP errors), then stream the rest."""
    first = await events.__anext__()

    async def body() -> AsyncIterator[str]:
        yield first
        try:
            async for ev in events:
                yield ev
        except LLMOSError as e:
            yield sse_error_event(e)
            yield "data: [DONE]\n\n"
        except Exception as e:
            log.exception("stream failed")
            yield sse_error_event(e)
            yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def create_app(manager: ModelManager, *, reap_interval_s: float = 1.0) -> FastAPI:
    """Build the replica app. The caller registers models in ``manager`` first."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async def reaper() -> None:
            while True:
                await asyncio.sleep(reap_interval_s)
                try:
                    await manager.reap()
                except Exception:
                    log.exception("keep-alive reaper failed")

        task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            task.cancel()
            await manager.close()

    app = FastAPI(title="llmos replica", lifespan=lifespan)
    install_error_handlers(app)
    install_openapi(app, error_codes=("400", "404", "429", "503"), text_responses=(("/metrics", "get"),))
    app.include_router(tokenize_router)  # /tokenize, /detokenize, /tokenizer_info (lm-eval's remote tokenizer)
    metrics = ServerMetrics(lambda: [m.loop for m in manager.loaded() if m.loop is not None])
    app.state.manager = manager
    app.state.metrics = metrics

    def generative(req_model: str, base: str, model: LoadedModel) -> None:
        if model.kind != "generate":
            raise ValidationError(f"model {req_model} is an embedding model; use /v1/embeddings")

    async def respond(
        req_model: str,
        stream: bool,
        run: Callable[[LoadedModel, str | None], Awaitable[dict[str, Any]]],
        run_stream: Callable[[LoadedModel, str | None], AsyncIterator[str]],
    ) -> Response:
        base, lora = manager.resolve(req_model)
        if not stream:
            async with manager.use(base) as model:
                generative(req_model, base, model)
                return JSONResponse(await run(model, lora))

        async def events() -> AsyncIterator[str]:
            async with manager.use(base) as model:
                generative(req_model, base, model)
                async for ev in run_stream(model, lora):
                    yield ev

        return await _start_stream(events())

    @app.get("/health")
    async def health() -> Response:
        dead = [m.spec.name for m in manager.loaded() if m.loop is not None and not m.loop.alive]
        body = {
            "status": "ok" if not dead else "unhealthy",
            "loaded": [m.spec.name for m in manager.loaded()],
            "dead": dead,
        }
        return JSONResponse(body, status_code=200 if not dead else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models() -> ModelList:
        return ModelList(data=model_cards(manager))

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> ModelCard:
        manager.resolve(model_id)
        return next(c for c in model_cards(manager) if c.id == model_id)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Response:
        return await respond(
            req.model, req.stream,
            lambda m, lora: complete(req, m, lora, metrics),
            lambda m, lora: stream_completion(req, m, lora, metrics),
        )  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> Response:
        return await respond(
            req.model, req.stream,
            lambda m, lora: chat(req, m, lora, metrics),
            lambda m, lora: stream_chat(req, m, lora, metrics),
        )  # fmt: skip

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingRequest) -> Response:
        base, lora = manager.resolve(req.model)
        async with manager.use(base) as model:
            if model.embedder is None or lora is not None:
                raise ValidationError(f"model {req.model} does not produce embeddings")
            vectors, num_tokens = await asyncio.to_thread(model.embedder.embed, req.inputs())
        data = []
        for i, vec in enumerate(vectors):
            emb: list[float] | str = vec
            if req.encoding_format == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": req.model,
                "usage": {"prompt_tokens": num_tokens, "total_tokens": num_tokens},
            }
        )

    @app.post("/v1/load_lora_adapter")
    async def load_lora(req: LoadLoraRequest) -> dict[str, Any]:
        base = await manager.add_adapter(req.lora_name, req.lora_path, req.base_model_name)
        return {"status": "ok", "lora_name": req.lora_name, "parent": base}

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora(req: UnloadLoraRequest) -> dict[str, Any]:
        await manager.remove_adapter(req.lora_name)
        return {"status": "ok", "lora_name": req.lora_name}

    @app.post("/llmos/models/load")
    async def load_model(req: LoadModelRequest) -> dict[str, Any]:
        t0 = time.perf_counter()
        m = await manager.ensure_loaded(req.model, pinned=req.pinned, keep_alive_s=req.keep_alive_s)
        return {
            "status": "ok", "model": req.model, "pinned": m.spec.pinned, "keep_alive_s": m.spec.keep_alive_s,
            "memory_gib": round(m.memory_gib, 4), "load_s": round(time.perf_counter() - t0, 3),
        }  # fmt: skip

    @app.post("/llmos/models/unload")
    async def unload_model(req: UnloadModelRequest) -> dict[str, Any]:
        was = await manager.unload(req.model)
        return {"status": "ok", "model": req.model, "was_loaded": was}

    return app
