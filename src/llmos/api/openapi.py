"""The control plane's OpenAPI document, as the API really behaves.

Built on :func:`llmos.serving.server.openapi.install_openapi`: bearer auth as a
security scheme (not a header parameter), the error body and the 4xx codes each
route can answer, and request bodies for the routes that parse their body by
hand: ``POST /v1/jobs`` (a job spec, JSON or YAML) and the OpenAI gateway, which
forwards bodies unchanged to replicas that validate them with the replica's own
schemas (documented here so clients know what to send).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from llmos.serving.server.openapi import install_openapi, json_body_schema


def _job_body(components: dict[str, Any]) -> dict[str, Any]:
    import pydantic

    from llmos.core.jobs import JobSpec

    schema = json_body_schema(pydantic.TypeAdapter(JobSpec), components)
    # Each spec class defaults its own ``kind``, but the union needs it to tell them apart.
    for variant in schema.get("oneOf", []):
        sub = components[variant["$ref"].rsplit("/", 1)[-1]]
        if "kind" not in sub.setdefault("required", []):
            sub["required"].append("kind")
    return {
        "required": True,
        # YAML (any other content type) is accepted too, but a schema cannot say "a YAML
        # mapping", so only JSON is documented: fuzzers would send bare YAML scalars.
        "description": "a job spec as JSON (the same fields as YAML with any other content type)",
        "content": {"application/json": {"schema": schema}},
    }


def _openai_body(model_name: str) -> Any:
    def build(components: dict[str, Any]) -> dict[str, Any]:
        from llmos.serving.server import protocol

        schema = json_body_schema(getattr(protocol, model_name), components)
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    return build


def install_control_plane_openapi(app: FastAPI) -> None:
    install_openapi(
        app,
        error_codes=("400", "404", "409"),
        bearer_auth=True,
        request_bodies={
            ("/v1/jobs", "post"): _job_body,
            ("/v1/completions", "post"): _openai_body("CompletionRequest"),
            ("/v1/chat/completions", "post"): _openai_body("ChatCompletionRequest"),
            ("/v1/embeddings", "post"): _openai_body("EmbeddingRequest"),
        },
        text_responses=(("/metrics", "get"), ("/v1/jobs/{job_id}/logs", "get")),
    )
