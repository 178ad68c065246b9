"""Deployments: a model served by N replicas, as a ``kind: serve`` job.

A deployment is nothing but a ``serve`` job (:class:`llmos.core.jobs.ServeSpec`):
its replicas are tasks that the scheduler places and the job controller
launches like any other (``python -m llmos.runtime`` -> :mod:`llmos.runtime.serve`).
Each replica reports its endpoint once its model is loaded; the gateway
(:mod:`llmos.api.openai`) routes to the replicas that did.

Restarting dead replicas is the job controller's retry path: a replica that
dies (crash, OOM kill, lost node) fails its task, the controller stops the
other replicas of the attempt and relaunches the deployment after
``retry_backoff_s``. Deployments are therefore submitted with a high
``max_retries`` (:data:`DEPLOYMENT_MAX_RETRIES`), and a replica exits non-zero
on any stop it was not asked for by the control plane, so that a killed
replica counts as a failure and comes back.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llmos.core.jobs import ServeSpec, parse_job_spec, spec_to_dict
from llmos.errors import ValidationError

DEPLOYMENT_MAX_RETRIES = 100
DEPLOYMENT_RETRY_BACKOFF_S = 2.0


def default_name(model_ref: str) -> str:
    """A deployment name from a model reference: ``llmos-small:1`` -> ``llmos-small``."""
    p = Path(model_ref).expanduser()
    base = p.name if p.is_dir() else model_ref.split(":", 1)[0].rsplit("/", 1)[-1]
    name = re.sub(r"[^a-zA-Z0-9._-]", "-", base).strip("-._")[:63]
    if not name:
        raise ValidationError(f"cannot derive a deployment name from {model_ref!r}; pass --name")
    return name


def deployment_spec(
    model_ref: str,
    *,
    replicas: int = 1,
    adapters: list[str] | None = None,
    name: str | None = None,
    max_num_seqs: int = 64,
    kv_cache_gib: float = 0.5,
    cpus: float = 1.0,
    memory_gib: float = 2.0,
    devices: int = 0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A validated ``serve`` job spec (as a dict) for ``llmos deploy``. Raises ValidationError."""
    data: dict[str, Any] = {
        "kind": "serve",
        "name": name or default_name(model_ref),
        "model": str(Path(model_ref).expanduser().resolve()) if Path(model_ref).expanduser().is_dir() else model_ref,
        "adapters": [
            str(Path(a).expanduser().resolve()) if Path(a).expanduser().is_dir() else a.strip()
            for a in (adapters or [])
        ],
        "replicas": replicas,
        "max_num_seqs": max_num_seqs,
        "kv_cache_gib": kv_cache_gib,
        "resources": {"cpus": cpus, "memory_gib": memory_gib, "devices": devices},
        "max_retries": DEPLOYMENT_MAX_RETRIES,
        "retry_backoff_s": DEPLOYMENT_RETRY_BACKOFF_S,
        "env": env or {},
    }
    spec = parse_job_spec(data)
    assert isinstance(spec, ServeSpec)
    return spec_to_dict(spec)


def submit_deployment(spec: dict[str, Any], *, url: str | None, token: str | None) -> dict[str, Any]:
    """Submit the spec to the control plane; returns the created job."""
    from llmos.client import Client

    with Client(url, token) as c:
        return c.submit(spec)
