"""Control-plane benchmark: submit->running latency and API job creations per second.

    .venv/bin/python benchmarks/control_plane.py [--jobs 200] [--threads 4]

Starts a real ``llmos up`` (subprocess, SQLite under a temp LLMOS_HOME, local
backend) and drives it over HTTP with ``llmos.client.Client``:

1. burst: ``--jobs`` trivial ``command`` jobs (``true``) submitted as fast as
   ``--threads`` client threads can -> API job creations per second, and the
   submit->running latency of every job under that burst;
2. paced: ``--jobs`` jobs submitted one at a time, 20 ms apart -> submit->running
   latency of a control plane that is not saturated.

Latency is ``started_at - submitted_at`` of each job, both stamped by the server
(the time from the API storing the job to the task's process being started).
The node advertises ample CPUs so no job waits for capacity: the figure is the
control plane's own overhead. Both phases run in the same process, side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

from llmos.client import Client
from llmos.control.launch import free_port

JOB = {"kind": "command", "name": "noop", "command": ["true"], "resources": {"cpus": 0.1, "memory_gib": 0.01}}


def _percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def _wait_all(c: Client, ids: list[str], timeout_s: float = 600) -> list[dict[str, object]]:
    out = []
    for job_id in ids:
        out.append(c.wait(job_id, timeout_s=timeout_s, poll_s=0.05))
    return out


def _latencies(jobs: list[dict[str, object]]) -> list[float]:
    bad = [j for j in jobs if j["state"] != "SUCCEEDED"]
    if bad:
        raise SystemExit(f"{len(bad)} jobs did not succeed, e.g. {bad[0]['state']}: {bad[0]['message']}")
    return [float(j["started_at"]) - float(j["submitted_at"]) for j in jobs]  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="llmos-bench-"))
    port = free_port()
    env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_NODE_CPUS": "100000", "LLMOS_NODE_MEMORY_GIB": "100000",
           "LLMOS_LOOP_INTERVAL_S": "0.2"}
    env.pop("LLMOS_TOKEN", None)
    up = subprocess.Popen([sys.executable, "-m", "llmos.cli.app", "up", "--port", str(port)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if up.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("llmos up did not start")
            time.sleep(0.1)
        token = yaml.safe_load((home / "config").read_text())["token"]
        c = Client(url, token)
        c.submit(JOB)  # warm-up (imports, first inventory, SQLite pages)
        time.sleep(0.5)

        # Phase 1: burst.
        ids: list[str] = []
        lock = threading.Lock()
        per_thread = [args.jobs // args.threads + (1 if i < args.jobs % args.threads else 0) for i in range(args.threads)]

        def submit(n: int) -> None:
            cl = Client(url, token)
            for _ in range(n):
                j = cl.submit(JOB)
                with lock:
                    ids.append(str(j["id"]))
            cl.close()

        threads = [threading.Thread(target=submit, args=(n,)) for n in per_thread]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        burst_s = time.perf_counter() - t0
        creations_per_s = args.jobs / burst_s
        burst_lat = _latencies(_wait_all(c, ids))

        # Phase 2: paced.
        paced_ids = []
        for _ in range(args.jobs):
            paced_ids.append(str(c.submit(JOB)["id"]))
            time.sleep(0.02)
        paced_lat = _latencies(_wait_all(c, paced_ids))

        print("llmos control-plane benchmark")
        print(f"  command : {sys.executable} benchmarks/control_plane.py --jobs {args.jobs} --threads {args.threads}")
        print(f"  machine : {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"SQLite store, local backend, loop interval 0.2 s (woken on submit)")
        print(f"  API job creations/s   : {creations_per_s:8.1f}  ({args.jobs} POST /v1/jobs from {args.threads} "
              f"client threads in {burst_s:.2f} s)")
        print(f"  submit->running burst : p50 {statistics.median(burst_lat) * 1000:7.1f} ms   "
              f"p99 {_percentile(burst_lat, 99) * 1000:7.1f} ms   ({args.jobs} jobs submitted at once)")
        print(f"  submit->running paced : p50 {statistics.median(paced_lat) * 1000:7.1f} ms   "
              f"p99 {_percentile(paced_lat, 99) * 1000:7.1f} ms   ({args.jobs} jobs, one every 20 ms)")
        return 0
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


if __name__ == "__main__":
    sys.exit(main())
