"""Must show 5: bad data fails fast with a clear 4xx error at submit, before any device is held."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llmos.api.harness import RunningPlane
from llmos.models.registry import ModelRegistry
from llmos.runtime.trainer import TrainConfig, apply_lora, save_trained


def _post(cp: RunningPlane, spec: dict) -> httpx.Response:
    return httpx.post(f"{cp.url}/v1/jobs", json=spec, headers={"Authorization": f"Bearer {cp.admin_token}"})


def _finetune(**kw: object) -> dict:
    return {"kind": "finetune", "name": "ft", "base_model": "tiny:1", "dataset": "builtin:addition", **kw}


@pytest.fixture(scope="module")
def wrong_adapter(cp_registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter made for llmos-small, registered against a small base."""
    from llmos.models.family import create_model, create_model_dir

    tmp = tmp_path_factory.mktemp("wrong")
    if not cp_registry._exists("small"):
        cp_registry.register(create_model_dir("llmos-small", tmp / "small"), "small")
        peft = apply_lora(create_model("llmos-small"), TrainConfig(steps=1, method="lora", lora_r=2))
        cp_registry.register(save_trained(peft, tmp / "a"), "small-adapter", base="small:1")
    return tmp


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (_finetune(base_model="nope:1"), "unknown base model 'nope:1'"),
        (_finetune(dataset="builtin:poetry"), "unknown built-in dataset"),
        ({"kind": "train", "name": "t", "model": "llmos-giant"}, "unknown model config"),
        ({"kind": "eval", "name": "e", "model": "tiny", "tasks": ["vibes"]}, "unknown eval task"),
        ({"kind": "batch", "name": "b", "model": "ghost", "input": "/x.jsonl", "output": "/y.jsonl"},
         "unknown model 'ghost'"),
    ],
)
def test_bad_model_job_is_a_400_and_creates_nothing(cp: RunningPlane, cp_registry: ModelRegistry, spec: dict,
                                                    needle: str) -> None:
    before = cp.client().jobs()["total"]
    r = _post(cp, spec)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["type"] == "ValidationError"
    assert cp.client().jobs()["total"] == before


def test_bad_data_files_are_refused(cp: RunningPlane, cp_registry: ModelRegistry, tmp_path: Path) -> None:
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"prompt": "1+1", "completion": "2"}\n{"prompt": "2+2", "completion": \n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    no_answer = tmp_path / "noanswer.jsonl"
    no_answer.write_text('{"prompt": "hi"}\n')
    cases = [
        (_finetune(dataset=str(malformed)), "bad.jsonl:2: malformed JSON"),
        (_finetune(dataset=str(empty)), "is empty"),
        (_finetune(dataset=str(no_answer)), "'prompt' and 'completion'"),
        (_finetune(dataset=str(tmp_path / "missing.jsonl")), "not found"),
        ({"kind": "batch", "name": "b", "model": "tiny", "input": str(empty), "output": str(tmp_path / "o.jsonl")},
         "is empty"),
    ]
    for spec, needle in cases:
        r = _post(cp, spec)
        assert r.status_code == 400 and needle in r.json()["error"]["message"], (spec, r.text)


def test_adapter_for_the_wrong_base_is_refused(cp: RunningPlane, cp_registry: ModelRegistry,
                                               wrong_adapter: Path) -> None:
    r = _post(cp, {"kind": "serve", "name": "s", "model": "tiny:1", "adapters": ["small-adapter:1"]})
    assert r.status_code == 400
    assert "trained for base small:1, not tiny:1" in r.json()["error"]["message"]
    r = _post(cp, _finetune(base_model="small-adapter:1"))
    assert r.status_code == 400 and "is an adapter" in r.json()["error"]["message"]


def test_good_spec_gets_a_memory_estimate(cp: RunningPlane, cp_registry: ModelRegistry) -> None:
    r = _post(cp, _finetune(steps=1, batch_size=2, seq_len=32, name="estimate-only"))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["spec"]["estimated_memory_gib"] > 0
    cp.client().cancel(job["id"])
