"""The control plane's OpenAI-compatible gateway: ``/v1/*`` for every deployment and adapter.

``model`` names a deployment (a ``serve`` job's name) or one of its adapters.
The gateway finds the deployment's ready replicas in the store, picks one with
the :class:`~llmos.api.openai.balancer.Balancer` (least outstanding requests,
prefix and adapter affinity) and forwards the request body unchanged; the
replica validates it, so errors keep the replica's OpenAI-shaped 4xx body.

Failures:

* unknown ``model`` -> 404 ``model_not_found``; a deployment with no ready
  replica -> 503 ``no_replica``;
* a replica that cannot be reached, or dies before the first token (for a
  stream: before any event with text), is dropped and the request retried on
  another replica; after the first token the stream ends with an SSE error
  event, since tokens already sent cannot be taken back.

Auth: any reader token of the tenant (the ``openai`` client's ``api_key``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import select

from llmos.api.deps import Plane, Reader
from llmos.api.openai.balancer import Balancer
from llmos.api.openai.replicas import Replica, adapter_name, replicas_from_store
from llmos.core.states import JobState
from llmos.errors import LLMOSError, NotFound, ValidationError
from llmos.store.tables import JobRow

log = logging.getLogger("llmos.gateway")

router = APIRouter(tags=["openai"])

# Failures that prove no response reached the client: safe to retry elsewhere.
_RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=60.0)


class ModelNotFound(NotFound):
    code = "model_not_found"


class NoReplicaReady(LLMOSError):
    """The deployment exists but none of its replicas is reachable right now."""

    code = "no_replica"
    http_status = 503


def _state(request: Request) -> tuple[Balancer, httpx.AsyncClient]:
    st = request.app.state
    if getattr(st, "openai_balancer", None) is None:
        st.openai_balancer = Balancer()
        st.openai_http = httpx.AsyncClient(timeout=_TIMEOUT)
    return st.openai_balancer, st.openai_http


def _prompt_text(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return " ".join(str(t) for t in prompt[:64])
    messages = body.get("messages")
    if isinstance(messages, list):
        return "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    return ""


def _deployment_exists(plane: Any, tenant: str, model: str) -> bool:
    live = (JobState.PENDING.value, JobState.RUNNING.value)
    with plane.store.session() as s:
        rows = s.execute(
            select(JobRow).where(JobRow.kind == "serve", JobRow.tenant == tenant, JobRow.state.in_(live))
        ).scalars()
        return any(
            job.name == model or model in [adapter_name(str(a)) for a in job.spec.get("adapters", [])]
            for job in rows
        )


async def _candidates(plane: Any, tenant: str, model: str) -> list[Replica]:
    replicas = await asyncio.to_thread(replicas_from_store, plane.store, tenant)
    found = [r for r in replicas if r.serves(model)]
    if found:
        return found
    if await asyncio.to_thread(_deployment_exists, plane, tenant, model):
        raise NoReplicaReady(f"deployment of `{model}` has no ready replica yet; retry shortly")
    names = sorted({r.deployment for r in replicas} | {a for r in replicas for a in r.adapters})
    raise ModelNotFound(f"The model `{model}` does not exist. Deployed models: {', '.join(names) or 'none'}")


async def _read_body(request: Request) -> tuple[bytes, dict[str, Any]]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValidationError("model: field required (a deployment or adapter name)")
    return raw, body


def _has_token(event: str) -> bool:
    """Whether an SSE event carries generated text (or ends the stream): the commit point."""
    data = event.removeprefix("data:").strip()
    if not event.startswith("data:") or data == "[DONE]":
        return True
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        return True
    if "error" in obj:
        return True
    for c in obj.get("choices") or []:
        if c.get("text") or (c.get("delta") or {}).get("content") or c.get("finish_reason"):
            return True
    return not obj.get("choices")  # the usage chunk


async def _events(resp: httpx.Response) -> AsyncIterator[str]:
    buf = ""
    async for text in resp.aiter_text():
        buf += text
        while "\n\n" in buf:
            event, buf = buf.split("\n\n", 1)
            if event.strip():
                yield event
    if buf.strip():
        yield buf


async def _forward(request: Request, plane: Any, tenant: str, path: str) -> Response:
    raw, body = await _read_body(request)
    model = body["model"]
    balancer, client = _state(request)
    candidates = await _candidates(plane, tenant, model)
    prefix = balancer.prefix_key(_prompt_text(body))
    stream = body.get("stream") is True
    headers = {"content-type": "application/json"}
    last_error = ""
    tried: set[str] = set()
    while True:
        left = [r for r in candidates if r.url not in tried]
        if not left:
            raise NoReplicaReady(f"every replica of `{model}` failed: {last_error}")
        replica = balancer.choose(left, model, prefix)
        tried.add(replica.url)
        balancer.started(replica, model, prefix)
        handed_off = False
        try:
            if not stream:
                r = await client.post(replica.url + path, content=raw, headers=headers)
                return Response(r.content, status_code=r.status_code, media_type="application/json")
            req = client.build_request("POST", replica.url + path, content=raw, headers=headers)
            resp = await client.send(req, stream=True)
            if resp.status_code != 200:
                content = await resp.aread()
                await resp.aclose()
                return Response(content, status_code=resp.status_code, media_type="application/json")
            events = _events(resp)
            held: list[str] = []
            try:
                async for ev in events:
                    held.append(ev)
                    if _has_token(ev):
                        break
            except BaseException:
                await resp.aclose()
                raise
            handed_off = True
            return StreamingResponse(
                _relay(held, events, resp, balancer, replica),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        except _RETRYABLE as e:
            last_error = f"{replica.url}: {type(e).__name__}"
            log.warning("replica %s of %s failed before the first token (%s); retrying", replica.url, model, e)
            balancer.forget(replica)
        finally:
            if not handed_off:
                balancer.finished(replica)


async def _relay(
    held: list[str], events: AsyncIterator[str], resp: httpx.Response, balancer: Balancer, replica: Replica
) -> AsyncIterator[str]:
    try:
        for ev in held:
            yield ev + "\n\n"
        try:
            async for ev in events:
                yield ev + "\n\n"
        except _RETRYABLE as e:
            log.warning("replica %s died mid-stream: %s", replica.url, e)
            balancer.forget(replica)
            err = {"error": {"message": f"the replica serving this stream failed: {type(e).__name__}",
                             "type": "ReplicaFailed", "code": "replica_failed"}}  # fmt: skip
            yield f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n"
    finally:
        balancer.finished(replica)
        await resp.aclose()


@router.get("/v1/models")
async def list_models(plane: Plane, who: Reader) -> JSONResponse:
    """Deployments with a ready replica, and their adapters (``parent`` = the deployment)."""
    replicas = await asyncio.to_thread(replicas_from_store, plane.store, who.tenant)
    cards: dict[str, dict[str, Any]] = {}
    for r in replicas:
        cards.setdefault(
            r.deployment,
            {"id": r.deployment, "object": "model", "created": r.created, "owned_by": who.tenant,
             "root": r.model_ref, "parent": None, "replicas": 0},
        )["replicas"] += 1  # fmt: skip
        for a in r.adapters:
            cards.setdefault(
                a, {"id": a, "object": "model", "created": r.created, "owned_by": who.tenant, "root": a,
                    "parent": r.deployment, "replicas": 0},
            )["replicas"] += 1  # fmt: skip
    return JSONResponse({"object": "list", "data": list(cards.values())})


@router.post("/v1/completions")
async def completions(request: Request, plane: Plane, who: Reader) -> Response:
    return await _forward(request, plane, who.tenant, "/v1/completions")


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, plane: Plane, who: Reader) -> Response:
    return await _forward(request, plane, who.tenant, "/v1/chat/completions")


@router.post("/v1/embeddings")
async def embeddings(request: Request, plane: Plane, who: Reader) -> Response:
    return await _forward(request, plane, who.tenant, "/v1/embeddings")
