"""Task launch latency and throughput: the Ray backend vs the local backend, side by side.

What is measured (both backends, same machine, same run, interleaved so that
machine noise hits both alike):

* latency: ``launch()`` of one no-op task (``true``) until ``poll()`` reports it
  SUCCEEDED — everything llmos adds to a task's life (process or actor
  start, log file, exit record, observation). Median and p90 over ``--reps``.
* launch call: how long ``launch()`` itself blocks the controller (median).
* throughput: ``--burst`` no-op tasks launched back to back, until the last
  is reported done; tasks per second.

The Ray side runs on a fresh local Ray cluster started by this script (one
head node, ``--ray-cpus`` CPUs, killed at the end) unless ``--ray-address``
names a running one. Run::

    .venv/bin/python benchmarks/ray_backend.py            # defaults: --reps 10 --burst 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llmos.backends.base import TaskLaunch
from llmos.backends.local import LocalBackend
from llmos.core.states import TaskState

CPUS_PER_TASK = 0.1  # small, so that a burst is not throttled by Ray's CPU accounting


def launch_spec(backend: Any, task_id: str, logs: Path) -> TaskLaunch:
    node = next(n for n in backend.inventory() if n.alive)
    return TaskLaunch(
        task_id=task_id, job_id="bench", attempt=1, node_id=node.id, device_ids=(), device_indices=(),
        cpus=CPUS_PER_TASK, memory_gib=0.01, command=("true",), log_path=str(logs / f"{task_id}.log"),
    )


def wait_done(backend: Any, ids: set[str], timeout_s: float = 300.0) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while not ids <= seen:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {len(ids - seen)} tasks")
        for st in backend.poll():
            if st.state != TaskState.SUCCEEDED:
                raise SystemExit(f"task {st.task_id} ended {st.state}: {st.message}")
            seen.add(st.task_id)
        time.sleep(0.005)


def one_latency(backend: Any, task_id: str, logs: Path) -> tuple[float, float]:
    spec = launch_spec(backend, task_id, logs)
    t0 = time.perf_counter()
    backend.launch(spec)
    t1 = time.perf_counter()
    wait_done(backend, {task_id})
    return time.perf_counter() - t0, t1 - t0


def burst(backend: Any, prefix: str, n: int, logs: Path) -> float:
    specs = [launch_spec(backend, f"{prefix}-{i}", logs) for i in range(n)]
    t0 = time.perf_counter()
    for s in specs:
        backend.launch(s)
    wait_done(backend, {s.task_id for s in specs})
    return n / (time.perf_counter() - t0)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--ray-address", default=None, help="use a running Ray cluster instead of starting one")
    ap.add_argument("--ray-cpus", type=int, default=2)
    args = ap.parse_args(argv)

    from llmos.backends.ray import RayBackend
    from llmos.backends.ray_cluster import LocalRayCluster, RayNodeConfig

    cluster = None
    with tempfile.TemporaryDirectory(prefix="llmos-bench-") as tmp:
        root = Path(tmp)
        try:
            address = args.ray_address
            if address is None:
                t0 = time.perf_counter()
                cluster = LocalRayCluster(RayNodeConfig(num_cpus=args.ray_cpus)).start()
                address = cluster.address
                print(f"started a local one-node Ray cluster at {address} in {time.perf_counter() - t0:.1f}s")
            backends = {
                "local": LocalBackend(root / "local"),
                "ray": RayBackend(root / "ray", address=address),
            }
            logs = root / "logs"
            logs.mkdir()
            # Warm-up: the first Ray actor pays for starting a worker process pool.
            for name, b in backends.items():
                one_latency(b, f"{name}-warm", logs)
            lat: dict[str, list[float]] = {k: [] for k in backends}
            call: dict[str, list[float]] = {k: [] for k in backends}
            for i in range(args.reps):
                for name, b in backends.items():  # interleaved: noise hits both
                    total, launch_s = one_latency(b, f"{name}-lat-{i}", logs)
                    lat[name].append(total)
                    call[name].append(launch_s)
            thr = {name: burst(b, f"{name}-burst", args.burst, logs) for name, b in backends.items()}
            for b in backends.values():
                b.close()
        finally:
            if cluster is not None:
                cluster.stop()

    def q(xs: list[float], p: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]

    print()
    print(f"no-op task (`true`), {args.reps} reps interleaved, burst of {args.burst}, {CPUS_PER_TASK} CPU per task")
    print(f"{'':32}{'local':>12}{'ray':>12}{'ray/local':>12}")
    rows = [
        ("launch->done latency p50 (ms)", {k: 1000 * statistics.median(v) for k, v in lat.items()}),
        ("launch->done latency p90 (ms)", {k: 1000 * q(v, 0.9) for k, v in lat.items()}),
        ("launch() call p50 (ms)", {k: 1000 * statistics.median(v) for k, v in call.items()}),
        ("burst throughput (tasks/s)", thr),
    ]
    for label, vals in rows:
        print(f"{label:32}{vals['local']:12.1f}{vals['ray']:12.1f}{vals['ray'] / vals['local']:12.2f}")
    print(f"\ncommand: {' '.join([Path(sys.executable).name, 'benchmarks/ray_backend.py', *argv])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
