"""The control plane's OpenAI gateway, driven by the official ``openai`` client.

Replicas are real replica servers on 127.0.0.1; the deployment and its tasks
are real rows in the control plane's SQLite store, as the controller and the
workers' endpoint reports leave them.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import openai
import pytest

GREEDY: dict[str, Any] = {"temperature": 0.0, "extra_body": {"ignore_eos": True}}


def _metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def client(gateway: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.token, max_retries=0, timeout=60)


def test_models_lists_deployment_and_adapter(client: openai.OpenAI) -> None:
    models = {m.id: m.model_extra for m in client.models.list().data}
    assert set(models) == {"chat", "tiny-lora"}
    assert models["tiny-lora"]["parent"] == "chat"  # type: ignore[index]
    assert models["chat"]["replicas"] == 2  # type: ignore[index]


def test_completions_chat_stream_and_adapter_through_gateway(client: openai.OpenAI, gateway: Any) -> None:
    direct = openai.OpenAI(base_url=f"{gateway.replicas[1].url}/v1", api_key="x", max_retries=0)
    via = client.completions.create(model="chat", prompt="Hello there", max_tokens=6, **GREEDY)
    ref = direct.completions.create(model="chat", prompt="Hello there", max_tokens=6, **GREEDY)
    assert via.choices[0].text == ref.choices[0].text
    assert via.usage is not None and via.usage.completion_tokens == 6

    chunks = list(
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True,
            stream_options={"include_usage": True}, **GREEDY,
        )
    )  # fmt: skip
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 1

    lora = client.completions.create(model="tiny-lora", prompt="Hello there", max_tokens=6, **GREEDY)
    assert lora.model == "tiny-lora"
    assert lora.choices[0].text != via.choices[0].text


def test_gateway_errors(client: openai.OpenAI, gateway: Any) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.completions.create(model="nope", prompt="x")
    assert nf.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):  # validated by the replica, passed through
        client.completions.create(model="chat", prompt="x", temperature=9)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat", messages=[], stream=True)
    anonymous = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="not-a-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.completions.create(model="chat", prompt="x")
    r = httpx.post(f"{gateway.url}/v1/completions", content=b"[1, 2]",
                   headers={"Authorization": f"Bearer {gateway.token}"})  # fmt: skip
    assert r.status_code == 400 and set(r.json()["error"]) >= {"message", "type", "code"}


def test_least_outstanding_and_prefix_affinity(client: openai.OpenAI, gateway: Any) -> None:
    r0, r1 = (r.url for r in gateway.replicas)
    # Hold replica 0 busy with a long stream, then send a new request: it goes to the idle replica 1.
    first_token = threading.Event()
    done = threading.Event()

    def long_stream() -> None:
        s = client.completions.create(model="chat", prompt="keep going", max_tokens=300, stream=True, **GREEDY)
        for _ in s:
            first_token.set()
        done.set()

    before = (_metric(r0, "llmos:request_success_total"), _metric(r1, "llmos:request_success_total"))
    t = threading.Thread(target=long_stream)
    t.start()
    assert first_token.wait(30)
    shared = "The history of the region is long and complicated. " * 8
    client.completions.create(model="chat", prompt=shared + "First,", max_tokens=2, **GREEDY)
    hits_before = _metric(r1, "llmos:prefix_cache_hits_total")
    # Same prefix: affinity keeps it on replica 1, where the prefix blocks are cached.
    client.completions.create(model="chat", prompt=shared + "Second,", max_tokens=2, **GREEDY)
    assert _metric(r1, "llmos:prefix_cache_hits_total") > hits_before
    t.join(60)
    assert done.is_set()
    after = (_metric(r0, "llmos:request_success_total"), _metric(r1, "llmos:request_success_total"))
    assert after[0] - before[0] == 1  # the long stream
    assert after[1] - before[1] == 2  # both prefix requests


def test_retry_on_another_replica_when_one_dies(client: openai.OpenAI, gateway: Any) -> None:
    # Replica 0 is first in line (ties go to the lowest task id); kill it.
    gateway.replicas[0].stop()
    r = client.completions.create(model="chat", prompt="still there?", max_tokens=3, **GREEDY)
    assert r.usage is not None and r.usage.completion_tokens == 3
    chunks = list(client.completions.create(model="chat", prompt="and streaming?", max_tokens=3, stream=True, **GREEDY))
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    gateway.replicas[1].stop()
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model="chat", prompt="anyone?", max_tokens=3)
    assert e.value.status_code == 503
