"""Fixtures for the gateway: a real control-plane store and app, real replica servers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def gw_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llmos.models.family import create_model_dir

    return create_model_dir("llmos-tiny", tmp_path_factory.mktemp("gw") / "llmos-tiny", seed=0)


@pytest.fixture(scope="session")
def gw_lora_dir(gw_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA adapter on the tiny model; its directory name ``tiny-lora`` is its served name."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(gw_tiny_dir, local_files_only=True)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    out = tmp_path_factory.mktemp("gwlora") / "tiny-lora"
    model.save_pretrained(out)
    return out


@dataclass
class Gateway:
    url: str
    token: str
    plane: Any
    replicas: list[Any]  # ServerThread per replica
    job_id: str


def start_replica(model_dir: Path, lora_dir: Path, name: str) -> Any:
    from llmos.serving.server import ManagerConfig, ModelManager, ModelSpec, ServerThread, create_app

    manager = ModelManager(ManagerConfig())
    manager.register(
        ModelSpec(name, model_dir, loras=((lora_dir.name, lora_dir),), max_num_seqs=8, kv_cache_gib=0.03)
    )
    manager.preload(name, pinned=True)
    return ServerThread(create_app(manager)).start()


def record_deployment(plane: Any, spec: dict[str, Any], endpoints: list[str], tenant: str = "default") -> str:
    """Store a RUNNING serve job whose tasks run at ``endpoints`` (what the controller + workers record)."""
    from llmos.core.states import JobState, TaskState
    from llmos.store import jobs as repo

    with plane.store.session() as s:
        job = repo.insert_job(s, tenant=tenant, spec=spec, num_tasks=len(endpoints))
        job.attempt = 1
        repo.set_job_state(s, job, JobState.RUNNING)
        for i, ep in enumerate(endpoints):
            t = repo.insert_task(
                s, job_id=job.id, index=i, attempt=1, node_id="local", device_ids=[], cpus=1.0,
                memory_gib=1.0, log_path="",
            )  # fmt: skip
            repo.set_task_state(s, t, TaskState.RUNNING, now=time.time())
            t.endpoint = ep
        return str(job.id)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, gw_tiny_dir: Path, gw_lora_dir: Path) -> Iterator[Gateway]:
    from llmos.api.app import create_app
    from llmos.control.deployments import deployment_spec
    from llmos.control.plane import ControlPlane
    from llmos.serving.server import ServerThread
    from llmos.settings import Settings
    from llmos.store import tokens as tokrepo

    home = tmp_path_factory.mktemp("home")
    plane = ControlPlane(Settings(home=home))
    with plane.store.session() as s:
        _, token = tokrepo.create_token(s, tenant="default", role="user", name="test")
    replicas = [start_replica(gw_tiny_dir, gw_lora_dir, "chat") for _ in range(2)]
    spec = deployment_spec(str(gw_tiny_dir), replicas=2, adapters=[str(gw_lora_dir)], name="chat")
    job_id = record_deployment(plane, spec, [f"127.0.0.1:{r.port}" for r in replicas])
    # manage=False: the control loop does not run, so the recorded tasks stay as they are.
    server = ServerThread(create_app(plane, manage=False)).start()
    try:
        yield Gateway(server.url, token, plane, replicas, job_id)
    finally:
        server.stop()
        for r in replicas:
            r.stop()
        plane.stop()
