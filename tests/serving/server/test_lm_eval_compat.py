"""lm-evaluation-harness compatibility: requests built exactly as lm-eval builds them.

``local-completions`` (lm_eval/models/openai_completions.py, api_models.py):

* loglikelihood: ``{"model", "prompt": [[context + continuation token ids], ...],
  "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True}``;
  it sorts ``choices`` by ``index``, zips them with the batch and reads
  ``sum(token_logprobs[ctxlen:-1])`` and ``is_greedy`` from ``top_logprobs[ctxlen:-1]``;
* generate_until: ``{"prompt", "model", "max_tokens", "temperature": 0, "stop", "seed": 1234}``
  and ``choices[i].text`` by index.

``local-chat-completions`` sends ``messages`` with ``max_tokens``, ``stop[:4]`` and
``seed`` and reads ``choices[i].message.content``. The figures are checked against
transformers on the same weights.
"""

from __future__ import annotations

from operator import itemgetter
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

CASES = [
    ("The capital of France is", " Paris"),
    ("Question: 2 + 2 =", " 4, of course"),
    ("Once upon a time there was", " a small dragon who liked tea"),
]


@pytest.fixture(scope="module")
def hf(tiny_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, local_files_only=True).eval()
    return tok, model


def _encode_pair(tok: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's TemplateAPI._encode_pair: trailing context spaces move to the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok.encode(context + continuation, add_special_tokens=False)
    context_enc = tok.encode(context, add_special_tokens=False)
    return context_enc, whole[len(context_enc):]


def _reference(model: Any, ids: list[int], ctxlen: int) -> tuple[float, bool]:
    with torch.no_grad():
        logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    total, greedy = 0.0, True
    for i in range(ctxlen, len(ids)):
        total += float(logp[i - 1, ids[i]])
        greedy = greedy and int(logp[i - 1].argmax()) == ids[i]
    return total, greedy


def _parse_logprobs(out: dict[str, Any], ctxlens: list[int]) -> list[tuple[float, bool]]:
    """lm-eval's LocalCompletionsAPI.parse_logprobs, verbatim in behaviour."""
    res = []
    for choice, ctxlen in zip(sorted(out["choices"], key=itemgetter("index")), ctxlens, strict=True):
        token_logprobs = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        top_logprobs = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        is_greedy = all(t == max(top.values()) for t, top in zip(token_logprobs, top_logprobs, strict=True))
        res.append((sum(token_logprobs), is_greedy))
    return res


def _post(url: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{url}{path}", json=payload, timeout=60)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_loglikelihood_token_lists_match_transformers(replica: str, hf: tuple[Any, Any]) -> None:
    tok, model = hf
    inps, ctxlens = [], []
    for context, continuation in CASES:
        ctx, cont = _encode_pair(tok, context, continuation)
        inps.append(ctx + cont)
        ctxlens.append(len(ctx))
    payload = {"model": "llmos-tiny", "prompt": inps, "temperature": 0, "max_tokens": 1, "logprobs": 1,
               "seed": 1234, "echo": True}
    out = _post(replica, "/v1/completions", payload)
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    for choice, ids in zip(out["choices"], inps, strict=True):
        lp = choice["logprobs"]
        # Echoed prompt + one generated token, every list the same length.
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(ids) + 1
        assert len(lp["text_offset"]) == len(ids) + 1 and lp["text_offset"] == sorted(lp["text_offset"])
        assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
        assert all(isinstance(t, dict) and 1 <= len(t) <= 2 for t in lp["top_logprobs"][1:])
    got = _parse_logprobs(out, ctxlens)
    for (ll, greedy), ids, ctxlen in zip(got, inps, ctxlens, strict=True):
        want_ll, want_greedy = _reference(model, ids, ctxlen)
        assert ll == pytest.approx(want_ll, abs=1e-3)
        assert greedy == want_greedy


def test_loglikelihood_is_greedy_true_on_the_models_own_continuation(replica: str, hf: tuple[Any, Any]) -> None:
    tok, model = hf
    ctx = tok.encode("Hello there, my friend", add_special_tokens=False)
    with torch.no_grad():
        out_ids = model.generate(torch.tensor([ctx]), max_new_tokens=4, min_new_tokens=4, do_sample=False,
                                 pad_token_id=0)[0].tolist()
    payload = {"model": "llmos-tiny", "prompt": [out_ids], "temperature": 0, "max_tokens": 1, "logprobs": 1,
               "seed": 1234, "echo": True}
    ((ll, greedy),) = _parse_logprobs(_post(replica, "/v1/completions", payload), [len(ctx)])
    assert greedy is True
    assert ll == pytest.approx(_reference(model, out_ids, len(ctx))[0], abs=1e-3)


def test_every_prompt_form_gives_one_choice_per_prompt_in_order(replica: str, hf: tuple[Any, Any]) -> None:
    tok, _ = hf
    texts = [c + x for c, x in CASES]
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    base = {"model": "llmos-tiny", "temperature": 0, "max_tokens": 0, "echo": True, "logprobs": 0}
    forms: list[tuple[Any, list[list[int]]]] = [
        (texts[0], [tok(texts[0])["input_ids"]]),
        (texts, [tok(t)["input_ids"] for t in texts]),
        (ids[1], [ids[1]]),
        (ids, ids),
    ]
    for prompt, want_ids in forms:
        out = _post(replica, "/v1/completions", {**base, "prompt": prompt})
        assert [c["index"] for c in out["choices"]] == list(range(len(want_ids)))
        for choice, w in zip(out["choices"], want_ids, strict=True):
            # max_tokens=0 + echo: exactly the prompt comes back, token for token.
            assert len(choice["logprobs"]["tokens"]) == len(w)
            assert choice["text"] == tok.decode(w)
        assert out["usage"]["prompt_tokens"] == sum(len(w) for w in want_ids)


def test_generate_until_stops_like_lm_eval_expects(replica: str, hf: tuple[Any, Any]) -> None:
    tok, model = hf
    context = "Question: what comes next?\nAnswer:"
    ctx = tok.encode(context, add_special_tokens=False)
    with torch.no_grad():
        full = model.generate(torch.tensor([ctx]), max_new_tokens=12, do_sample=False, pad_token_id=0)[0]
    greedy_text = tok.decode(full[len(ctx):], skip_special_tokens=True)
    assert len(greedy_text) > 4
    stop = greedy_text[3:6]  # a stop string the greedy continuation surely meets
    payload = {"prompt": [ctx], "model": "llmos-tiny", "max_tokens": 12, "temperature": 0,
               "stop": [stop, "\n\n"], "seed": 1234}
    out = _post(replica, "/v1/completions", payload)
    texts = [c["text"] for c in sorted(out["choices"], key=itemgetter("index"))]
    assert texts == [greedy_text[: greedy_text.index(stop)]]
    assert out["choices"][0]["finish_reason"] == "stop"
    # Without the stop: the whole greedy continuation, as lm-eval then cuts it itself.
    plain = _post(replica, "/v1/completions", {**payload, "stop": ["\x00never"]})
    assert plain["choices"][0]["text"] == greedy_text


def test_local_chat_completions_payload(replica: str, hf: tuple[Any, Any]) -> None:
    tok, model = hf
    messages = [{"role": "user", "content": "Say something."}]
    payload = {"messages": messages, "model": "llmos-tiny", "max_tokens": 8, "temperature": 0,
               "stop": ["\x00never"][:4], "seed": 1234}
    out = _post(replica, "/v1/chat/completions", payload)
    content = out["choices"][0]["message"]["content"]
    prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "input_ids"):
        prompt_ids = prompt_ids["input_ids"]
    with torch.no_grad():
        full = model.generate(torch.tensor([list(prompt_ids)]), max_new_tokens=8, do_sample=False, pad_token_id=0)[0]
    assert content == tok.decode(full[len(prompt_ids):], skip_special_tokens=True)
    assert out["usage"]["prompt_tokens"] == len(prompt_ids)


def test_remote_tokenizer_endpoints_as_lm_eval_probes_them(replica: str, hf: tuple[Any, Any]) -> None:
    """lm-eval's check_remote_tokenizer_support + RemoteTokenizer calls (server root, not /v1)."""
    tok, _ = hf
    info = httpx.get(f"{replica}/tokenizer_info", timeout=30).json()
    assert "eos_token" in info and info["eos_token"] == tok.eos_token
    assert info["chat_template"] == tok.chat_template
    text = "The quick brown fox"
    r = _post(replica, "/tokenize", {"prompt": text, "add_special_tokens": False})
    assert r["tokens"] == tok.encode(text, add_special_tokens=False) and r["count"] == len(r["tokens"])
    assert _post(replica, "/detokenize", {"tokens": r["tokens"]})["prompt"] == tok.decode(r["tokens"])
    # An adapter name resolves to its base's tokenizer; bad input is a 400 with the error body.
    assert _post(replica, "/tokenize", {"model": "tiny-lora", "prompt": text, "add_special_tokens": False}) == r
    bad = httpx.post(f"{replica}/detokenize", json={"tokens": [-1]}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    missing = httpx.post(f"{replica}/tokenize", json={"model": "nope", "prompt": "x"}, timeout=30)
    assert missing.status_code == 404 and "error" in missing.json()
