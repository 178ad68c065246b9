"""``llmos serve`` as a real subprocess, like ``vllm serve``; and its input errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from llmos.serving.server.runner import free_port


def _llmos(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmos.cli.app", *args]


def test_llmos_serve_subprocess(tiny_dir: Path, lora_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = _llmos("serve", str(tiny_dir), "--name", "tiny", "--port", str(port), "--lora", f"my-lora={lora_dir}",
                 "--max-num-seqs", "4", "--kv-cache-gib", "0.03")  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "llmos serve did not come up"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        assert {m.id for m in client.models.list().data} == {"tiny", "my-lora"}
        r = client.completions.create(model="my-lora", prompt="hi", max_tokens=3, temperature=0,
                                      extra_body={"ignore_eos": True})  # fmt: skip
        assert r.usage is not None and r.usage.completion_tokens == 3
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert "serving tiny" in out
    assert "Traceback" not in out


def test_llmos_serve_bad_input_is_a_message(tmp_path: Path) -> None:
    for args, needle in (
        (("serve", str(tmp_path / "missing")), "is not a directory"),
        (("serve", str(tmp_path)), "no config.json"),
        (("serve", str(tmp_path), "--lora", "nolora"), "NAME=DIR"),
    ):
        r = subprocess.run(_llmos(*args), capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert needle in r.stderr + r.stdout, r.stderr
        assert "Traceback" not in r.stderr
