"""``make run``: start ``llmos up``, submit ``examples/hello.yaml``, watch it, then keep serving.

Uses ``LLMOS_HOME`` if set, else ``./.llmos-run``; port ``LLMOS_PORT`` or 8000
(any free port if 8000 is taken). With ``LLMOS_DEMO_EXIT=1`` it stops the
control plane and exits once the job has ended (exit 1 unless it SUCCEEDED).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

console = Console(highlight=False)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port() -> int:
    want = int(os.environ.get("LLMOS_PORT", "8000"))
    if want and _port_free(want):
        return want
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _example() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        p = base / "examples" / "hello.yaml"
        if p.exists():
            return p
    raise SystemExit("examples/hello.yaml not found; run from the repository root")


def main() -> int:
    import httpx

    from llmos.client import Client
    from llmos.client.config import read_config

    home = Path(os.environ.get("LLMOS_HOME") or Path.cwd() / ".llmos-run").resolve()
    home.mkdir(parents=True, exist_ok=True)
    port = _pick_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LLMOS_HOME": str(home)}
    for k in ("LLMOS_URL", "LLMOS_TOKEN"):
        env.pop(k, None)
    log = open(home / "up.log", "ab")  # noqa: SIM115 - lives as long as the server
    console.print(f"[bold]$ llmos up --port {port}[/]   (LLMOS_HOME={home}, server log: {home / 'up.log'})")
    up = subprocess.Popen([sys.executable, "-m", "llmos.cli.app", "up", "--port", str(port)],
                          env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if up.poll() is not None or time.monotonic() > deadline:
                console.print(f"[red]llmos up failed[/]; see {home / 'up.log'}")
                return 1
            time.sleep(0.1)
        cfg = read_config(home)
        console.print(f"control plane up at [bold]{url}[/]; admin token stored in {home / 'config'}")
        client = Client(url, cfg.get("token"))
        example = _example()
        console.print(f"[bold]$ llmos submit {example.relative_to(Path.cwd()) if example.is_relative_to(Path.cwd()) else example}[/]")
        job = client.submit(example)
        t0 = time.monotonic()
        state = job["state"]
        console.print(f"  {0.0:6.2f}s  {job['id']}  {state}")
        while state not in ("SUCCEEDED", "FAILED", "CANCELLED"):
            time.sleep(0.05)
            j = client.job(job["id"])
            if j["state"] != state:
                state = j["state"]
                console.print(f"  {time.monotonic() - t0:6.2f}s  {job['id']}  {state}  {j['message']}")
        console.print(f"[bold]$ llmos logs {job['id']}[/]")
        console.print(client.logs_text(job["id"]), end="", markup=False)
        ok = state == "SUCCEEDED"
        if os.environ.get("LLMOS_DEMO_EXIT") == "1":
            return 0 if ok else 1
        console.print(
            f"\nThe API keeps serving at [bold]{url}[/] (Ctrl-C stops it). In another shell:\n"
            f"  export LLMOS_HOME={home}\n"
            f"  .venv/bin/llmos jobs\n"
            f"  .venv/bin/llmos job {job['id']}\n"
            f"  .venv/bin/llmos submit examples/hello.yaml --wait\n"
            f"  curl -H \"Authorization: Bearer $(grep token $LLMOS_HOME/config | cut -d' ' -f2)\" {url}/metrics"
        )
        with contextlib.suppress(KeyboardInterrupt):
            up.wait()
        return 0 if ok else 1
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=20)
            except subprocess.TimeoutExpired:
                up.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
