"""The model memory manager: on-demand loading, LRU eviction under a budget, pinning, keep-alive."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from llmos.errors import ValidationError
from llmos.serving.server import ManagerConfig, ModelManager, ModelSpec, ServerThread, create_app

KV_GIB = 0.05


def _loaded(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"] if m["loaded"]}


def _ask(client: openai.OpenAI, model: str) -> str:
    r = client.completions.create(model=model, prompt="abc", max_tokens=3, temperature=0.0)
    return r.choices[0].text


def test_lru_eviction_pinning_and_keep_alive(tiny_dir: Path, tiny_dir_b: Path) -> None:
    one = ModelSpec("a", tiny_dir, kv_cache_gib=KV_GIB).estimated_memory_gib()
    # Room for one model, not two.
    manager = ModelManager(ManagerConfig(memory_budget_gib=one * 1.5, default_keep_alive_s=-1))
    manager.register(ModelSpec("a", tiny_dir, kv_cache_gib=KV_GIB, max_num_seqs=4))
    manager.register(ModelSpec("b", tiny_dir_b, kv_cache_gib=KV_GIB, max_num_seqs=4, keep_alive_s=0.3))
    with ServerThread(create_app(manager, reap_interval_s=0.1)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        assert _loaded(server.url) == set()  # nothing loads before it is asked for
        out_a = _ask(client, "a")
        assert _loaded(server.url) == {"a"}
        out_b = _ask(client, "b")  # evicts idle "a"
        assert _loaded(server.url) == {"b"}
        assert out_a != out_b  # different weights really served
        assert _ask(client, "a") == out_a  # reloaded on demand, same answer
        assert _loaded(server.url) == {"a"}

        # Pinned "a" cannot be evicted: "b" does not fit, a 429 in OpenAI's shape.
        r = httpx.post(f"{server.url}/llmos/models/load", json={"model": "a", "pinned": True})
        assert r.status_code == 200 and r.json()["pinned"] is True
        with pytest.raises(openai.RateLimitError) as e:
            _ask(client, "b")
        assert e.value.body["code"] == "resource_exhausted"  # type: ignore[index]

        # Unpin and unload a; b (keep_alive 0.3 s) loads, then is reaped when idle.
        httpx.post(f"{server.url}/llmos/models/load", json={"model": "a", "pinned": False})
        assert httpx.post(f"{server.url}/llmos/models/unload", json={"model": "a"}).json()["was_loaded"]
        _ask(client, "b")
        deadline = time.monotonic() + 10
        while "b" in _loaded(server.url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _loaded(server.url) == set()
        assert httpx.post(f"{server.url}/llmos/models/unload", json={"model": "zzz"}).status_code == 404


def test_model_too_big_for_budget_and_bad_specs(tiny_dir: Path, tmp_path: Path) -> None:
    manager = ModelManager(ManagerConfig(memory_budget_gib=0.01))
    manager.register(ModelSpec("a", tiny_dir, kv_cache_gib=KV_GIB))
    with ServerThread(create_app(manager)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError, match="budget"):
            _ask(client, "a")
    with pytest.raises(ValidationError, match=r"no config\.json"):
        ModelSpec("x", tmp_path)
    with pytest.raises(ValidationError, match="already in use"):
        manager.register(ModelSpec("a", tiny_dir))


def test_corrupt_model_is_an_error_body_not_a_crash(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    manager = ModelManager(ManagerConfig())
    manager.register(ModelSpec("broken", broken, kv_cache_gib=KV_GIB))
    with ServerThread(create_app(manager)) as server:
        r = httpx.post(f"{server.url}/v1/completions", json={"model": "broken", "prompt": "x", "max_tokens": 2})
        assert r.status_code in (400, 503), r.text
        assert r.json()["error"]["code"] in ("model_load_failed", "invalid_request")
        assert httpx.get(f"{server.url}/health").status_code == 200
