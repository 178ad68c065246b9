"""The replica server driven by the official ``openai`` client over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
import torch

GREEDY = {"temperature": 0.0}


@pytest.fixture(scope="module")
def client(replica: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{replica}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_list_adapters_with_parent(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"llmos-tiny", "tiny-lora"}
    assert models["tiny-lora"].model_extra["parent"] == "llmos-tiny"  # type: ignore[index]
    assert models["llmos-tiny"].model_extra["parent"] is None  # type: ignore[index]
    assert client.models.retrieve("tiny-lora").id == "tiny-lora"


def test_completion_usage_and_length(client: openai.OpenAI, tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    prompt = "The quick brown fox"
    r = client.completions.create(
        model="llmos-tiny", prompt=prompt, max_tokens=8, extra_body={"ignore_eos": True}, **GREEDY
    )
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert r.usage.prompt_tokens == len(tok(prompt)["input_ids"])
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8
    again = client.completions.create(
        model="llmos-tiny", prompt=prompt, max_tokens=8, extra_body={"ignore_eos": True}, **GREEDY
    )
    assert again.choices[0].text == r.choices[0].text


def test_greedy_completion_matches_transformers(client: openai.OpenAI, tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    ids = tok("Once upon a time", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=10, do_sample=False, min_new_tokens=10, pad_token_id=0)
    want = tok.decode(out[0, ids.shape[1] :])
    r = client.completions.create(
        model="llmos-tiny", prompt="Once upon a time", max_tokens=10, extra_body={"ignore_eos": True}, **GREEDY
    )
    assert r.choices[0].text == want


def test_streaming_completion_equals_plain_and_reports_usage(client: openai.OpenAI) -> None:
    kw = {"model": "llmos-tiny", "prompt": "hello world", "max_tokens": 12, "extra_body": {"ignore_eos": True}}
    plain = client.completions.create(**kw, **GREEDY)  # type: ignore[call-overload]
    chunks = list(
        client.completions.create(**kw, stream=True, stream_options={"include_usage": True}, **GREEDY)  # type: ignore[call-overload]
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == plain.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]


def test_chat_plain_and_stream(client: openai.OpenAI, tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is 2+2?"}]
    r = client.chat.completions.create(
        model="llmos-tiny", messages=messages, max_tokens=6, extra_body={"ignore_eos": True}, **GREEDY  # type: ignore[arg-type]
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.usage is not None
    want_prompt = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if isinstance(want_prompt, dict) or hasattr(want_prompt, "keys"):
        want_prompt = want_prompt["input_ids"]
    assert r.usage.prompt_tokens == len(want_prompt)
    assert r.usage.completion_tokens == 6
    stream = client.chat.completions.create(
        model="llmos-tiny", messages=messages, max_tokens=6, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}, **GREEDY,
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == r.usage.total_tokens


def test_chat_logprobs_and_n(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="llmos-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, n=3, seed=1,
        logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True, "top_k": 20},
    )  # fmt: skip
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert r.usage is not None and r.usage.completion_tokens == 12
    for c in r.choices:
        assert c.logprobs is not None and c.logprobs.content is not None
        assert len(c.logprobs.content) == 4
        assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in c.logprobs.content)


def test_adapter_by_name_changes_output(client: openai.OpenAI) -> None:
    kw = {"prompt": "The weather today is", "max_tokens": 8, "extra_body": {"ignore_eos": True}, **GREEDY}
    base = client.completions.create(model="llmos-tiny", **kw)  # type: ignore[call-overload]
    lora = client.completions.create(model="tiny-lora", **kw)  # type: ignore[call-overload]
    assert lora.model == "tiny-lora"
    assert lora.choices[0].text != base.choices[0].text


def test_echo_logprobs_match_transformers(client: openai.OpenAI, tiny_dir: Path) -> None:
    """lm-evaluation-harness loglikelihood: echo=True, max_tokens=0, logprobs=N."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    prompt = "Paris is the capital of France"
    r = client.completions.create(model="llmos-tiny", prompt=prompt, max_tokens=0, echo=True, logprobs=1, **GREEDY)
    choice = r.choices[0]
    assert choice.text == prompt
    assert r.usage is not None and r.usage.completion_tokens == 0
    lp = choice.logprobs
    assert lp is not None and lp.token_logprobs is not None and lp.tokens is not None
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits.log_softmax(-1)[0]
    want = [logits[i - 1, ids[0, i]].item() for i in range(1, ids.shape[1])]
    assert lp.token_logprobs[0] is None
    assert len(lp.token_logprobs) == ids.shape[1]
    assert lp.token_logprobs[1:] == pytest.approx(want, abs=1e-3)
    assert "".join(lp.tokens) == prompt
    assert lp.text_offset == sorted(lp.text_offset)


def test_errors_have_openai_shape(client: openai.OpenAI, replica: str) -> None:
    with pytest.raises(openai.NotFoundError) as e404:
        client.completions.create(model="no-such-model", prompt="x")
    assert e404.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", stream=True)
    bad_calls = [
        lambda: client.completions.create(model="llmos-tiny", prompt="x", temperature=7),
        lambda: client.completions.create(model="llmos-tiny", prompt="x", n=0),
        lambda: client.completions.create(model="llmos-tiny", prompt="x", max_tokens=100000),
        lambda: client.completions.create(model="llmos-tiny", prompt="x", max_tokens=0),
        lambda: client.completions.create(model="llmos-tiny", prompt=[[999999]]),
        lambda: client.completions.create(model="llmos-tiny", prompt="x", logprobs=50),
        lambda: client.completions.create(model="llmos-tiny", prompt="x", frequency_penalty=1.0),
        lambda: client.chat.completions.create(model="llmos-tiny", messages=[]),
        lambda: client.chat.completions.create(model="llmos-tiny", messages=[{"role": "wizard", "content": "x"}]),  # type: ignore[list-item]
        lambda: client.completions.create(
            model="llmos-tiny", prompt="x", max_tokens=2, stream=True, extra_body={"min_tokens": 5, "top_k": -7}
        ),
    ]
    for call in bad_calls:
        with pytest.raises(openai.BadRequestError) as e400:
            call()
        body = e400.value.body
        assert isinstance(body, dict) and body["message"] and body["type"] and body["code"]
    # Not JSON at all, and the wrong JSON type: still 400 with the error body, never a 500.
    raw = httpx.post(f"{replica}/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert raw.status_code == 400 and set(raw.json()["error"]) >= {"message", "type", "code"}
    raw = httpx.post(f"{replica}/v1/chat/completions", json=["a list"])
    assert raw.status_code == 400 and "error" in raw.json()
    assert httpx.get(f"{replica}/v1/nothing-here").status_code == 404


def test_lora_load_unload_by_api(client: openai.OpenAI, replica: str, lora_dir: Path) -> None:
    r = httpx.post(f"{replica}/v1/load_lora_adapter", json={"lora_name": "again", "lora_path": str(lora_dir)})
    assert r.status_code == 200, r.text
    assert {m.id for m in client.models.list().data} == {"llmos-tiny", "tiny-lora", "again"}
    out = client.completions.create(model="again", prompt="The weather today is", max_tokens=8,
                                    extra_body={"ignore_eos": True}, **GREEDY)  # fmt: skip
    ref = client.completions.create(model="tiny-lora", prompt="The weather today is", max_tokens=8,
                                    extra_body={"ignore_eos": True}, **GREEDY)  # fmt: skip
    assert out.choices[0].text == ref.choices[0].text
    dup = httpx.post(f"{replica}/v1/load_lora_adapter", json={"lora_name": "again", "lora_path": str(lora_dir)})
    assert dup.status_code == 400
    nodir = httpx.post(f"{replica}/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/nonexistent"})
    assert nodir.status_code == 400 and "error" in nodir.json()
    assert httpx.post(f"{replica}/v1/unload_lora_adapter", json={"lora_name": "again"}).status_code == 200
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="again", prompt="x", max_tokens=2)
    assert httpx.post(f"{replica}/v1/unload_lora_adapter", json={"lora_name": "again"}).status_code == 404


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_health_and_prefix_cache(client: openai.OpenAI, replica: str) -> None:
    assert httpx.get(f"{replica}/health").json()["status"] == "ok"
    before = httpx.get(f"{replica}/metrics").text
    shared = " ".join(f"word{i}" for i in range(120))  # well over 256 tokens
    for suffix in (" first", " second"):
        client.completions.create(model="llmos-tiny", prompt=shared + suffix, max_tokens=2, **GREEDY)
    after = httpx.get(f"{replica}/metrics").text
    for name in (
        "llmos:num_requests_running", "llmos:num_requests_waiting", "llmos:kv_cache_usage_perc",
        "llmos:time_to_first_token_seconds_count", "llmos:inter_token_latency_seconds_count",
        "llmos:e2e_request_latency_seconds_count", "llmos:prompt_tokens_total", "llmos:generation_tokens_total",
        "llmos:prefix_cache_queries_total", "llmos:prefix_cache_hits_total",
    ):  # fmt: skip
        assert name in after, name
    hits = _metric(after, "llmos:prefix_cache_hits_total") - _metric(before, "llmos:prefix_cache_hits_total")
    assert hits >= 256
    assert _metric(after, "llmos:e2e_request_latency_seconds_count") >= 2


def test_client_disconnect_aborts_request(client: openai.OpenAI, replica: str) -> None:
    stream = client.completions.create(
        model="llmos-tiny", prompt="go on", max_tokens=400, stream=True, extra_body={"ignore_eos": True}
    )
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = _metric(httpx.get(f"{replica}/metrics").text, "llmos:num_requests_running")
        if running == 0:
            break
        time.sleep(0.1)
    assert running == 0
