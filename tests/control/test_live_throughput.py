"""The live scheduler's throughput model comes from what tasks report.

Real control plane, real subprocess: a command job reports its steps through
the worker contract; the snapshot the scheduler loop builds must then carry
the task's observed steps/s, its progress and spec steps, and a measured
throughput model for its workload (scaled by the catalog to types it never ran on).
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

from llmos.api.harness import run_control_plane
from llmos.control.snapshot import build_snapshot
from llmos.store import jobs as repo
from llmos.store.tables import JobRow

WORKER = """
    import os, sys, time
    from llmos.client import TaskReporter
    rep = TaskReporter.from_env()
    for step in range(0, 60, 10):           # 10 steps every 0.1 s: about 100 steps/s
        rep.report(progress={"step": step, "total_steps": 200}, metrics={"loss": 1.0 / (1 + step)})
        time.sleep(0.1)
    open(sys.argv[1], "w").write("reported")
    while not os.path.exists(sys.argv[2]):  # hold the device until the test has looked
        time.sleep(0.05)
"""


def test_snapshot_carries_measured_throughput_and_progress(tmp_path: Path) -> None:
    reported, release = tmp_path / "reported", tmp_path / "release"
    with run_control_plane(tmp_path / "home", loop_interval_s=0.05, node_cpus=2) as cp:
        c = cp.client()
        job = c.submit({
            "kind": "command", "name": "stepper",
            "command": [sys.executable, "-c", textwrap.dedent(WORKER), str(reported), str(release)],
        })
        deadline = time.monotonic() + 60
        while not reported.exists():
            assert time.monotonic() < deadline, c.job(job["id"])
            time.sleep(0.05)
        time.sleep(0.3)  # the last report is in flight when the file appears
        nodes = list(cp.plane.backend.inventory())
        with cp.plane.store.session() as s:
            active = repo.active_tasks(s)
            snap = build_snapshot(s, nodes, active, [], time.time())
        (task,) = [t for t in snap.running if t.job_id == job["id"]]
        assert task.workload == "command:stepper"
        assert task.spec_steps == 200 and task.steps_done == 50
        # 50 steps over ~0.5 s of reports; generous bounds for a loaded 2-core machine.
        assert task.observed_throughput is not None and 20 < task.observed_throughput <= 110
        model = snap.throughput
        assert model is not None
        assert model.measured("command:stepper", "cpu") == task.observed_throughput
        # Every type of the cluster has a figure (types it never ran on are scaled from the catalog).
        assert set(model.table["command:stepper"]) == {d.type for n in nodes for d in n.devices} | {"cpu"}
        release.write_text("go")
        done = c.wait(job["id"], timeout_s=60)
        assert done["state"] == "SUCCEEDED", done
        # Finished jobs keep feeding the model: the measurement outlives the task.
        with cp.plane.store.session() as s:
            pending = [s.get(JobRow, job["id"])]
            snap2 = build_snapshot(s, nodes, [], [p for p in pending if p is not None], time.time())
        assert snap2.throughput is not None
        assert snap2.throughput.measured("command:stepper", "cpu") == task.observed_throughput
        (pj,) = snap2.pending
        assert pj.spec_steps is None and pj.steps_done == 0.0  # a command spec names no steps
