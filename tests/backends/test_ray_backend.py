"""The Ray backend against a real two-node Ray cluster on 127.0.0.1.

Each task really runs: a subprocess of a Ray actor on the chosen node. Where it
ran is checked from the process tree (the task's ancestors include that node's
raylet), not from anything the backend says about itself.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from llmos.backends.base import TaskHandle, TaskLaunch, TaskStatus
from llmos.core.devices import CPU, Node
from llmos.core.states import TaskState

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# The task writes who it is and where it runs, then optionally sleeps.
PROBE = """
import json, os, sys, time
import psutil
me = psutil.Process()
out = {
    "pid": me.pid,
    "pgid": os.getpgid(0),
    "ancestors": [p.pid for p in me.parents()],
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "node": os.environ.get("LLMOS_NODE_ID"),
    "home": os.environ.get("LLMOS_HOME"),
    "ray_vars": sorted(k for k in os.environ if k.startswith("RAY_")),
    "cwd": os.getcwd(),
    "serve_host": os.environ.get("LLMOS_SERVE_HOST"),
}
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
print("probe ran", flush=True)
time.sleep(float(sys.argv[2]))
sys.exit(int(sys.argv[3]))
"""


def probe_cmd(out: Path, sleep_s: float = 0.0, code: int = 0) -> tuple[str, ...]:
    return (sys.executable, "-c", PROBE, str(out), str(sleep_s), str(code))


def nodes_by_role(backend: Any) -> tuple[Node, Node]:
    """(CPU-only head, V100 worker) among the live nodes."""
    alive = [n for n in backend.inventory() if n.alive]
    v100 = [n for n in alive if n.devices_of_type("V100")]
    cpu_only = [n for n in alive if not n.devices_of_type("V100")]
    assert v100 and cpu_only, alive
    return cpu_only[0], v100[0]


def launch_of(task_id: str, node: Node, command: Sequence[str], tmp: Path, **kw: Any) -> TaskLaunch:
    return TaskLaunch(
        task_id=task_id,
        job_id=kw.pop("job_id", "job-" + task_id),
        attempt=kw.pop("attempt", 1),
        node_id=node.id,
        device_ids=kw.pop("device_ids", ()),
        device_indices=(),
        cpus=kw.pop("cpus", 0.5),
        memory_gib=kw.pop("memory_gib", 0.1),
        command=tuple(command),
        env=kw.pop("env", {"LLMOS_TEST": "1"}),
        log_path=str(tmp / f"{task_id}.log"),
        **kw,
    )


def wait_for(backend: Any, task_ids: set[str], timeout_s: float = 60.0) -> dict[str, TaskStatus]:
    got: dict[str, TaskStatus] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not task_ids <= set(got):
        for st in backend.poll():
            got[st.task_id] = st
        time.sleep(0.1)
    assert task_ids <= set(got), f"no outcome for {task_ids - set(got)} within {timeout_s}s"
    return got


def raylet_pid(cluster: Any, position: int) -> int:
    return next(p.pid for p in cluster.node_processes(position) if p.name() == "raylet")


def test_inventory_maps_ray_nodes_to_llmos_devices(ray_backend: Any) -> None:
    head, worker = nodes_by_role(ray_backend)
    assert worker.devices_of_type("V100")[0].id == "v100-0"
    assert worker.devices_of_type("V100")[0].memory_gib == 16.0
    # CPU-only nodes advertise one `cpu` device per Ray CPU, as the local backend does per core.
    assert [d.id for d in head.devices_of_type(CPU)] == ["cpu0", "cpu1"]
    assert head.cpus == 2.0 and worker.cpus == 2.0
    assert head.memory_gib > 0 and head.labels["backend"] == "ray"
    assert head.id.startswith("ray-") and head.id != worker.id


def test_task_runs_on_the_chosen_node_with_its_devices(ray_backend: Any, ray_cluster: Any, tmp_path: Path) -> None:
    _, worker = nodes_by_role(ray_backend)
    out = tmp_path / "probe.json"
    launch = launch_of("t-place", worker, probe_cmd(out), tmp_path, device_ids=("v100-0", "cpu0"))
    handle = ray_backend.launch(launch)
    assert handle.backend == "ray" and handle.node_id == worker.id
    st = wait_for(ray_backend, {"t-place"})["t-place"]
    assert st.state == TaskState.SUCCEEDED and st.exit_code == 0, st
    info = json.loads(out.read_text())
    assert raylet_pid(ray_cluster, 1) in info["ancestors"]  # under the V100 node's raylet
    assert raylet_pid(ray_cluster, 0) not in info["ancestors"]
    # Its own process group (led by the reaper, its parent), so a stop reaches all it starts.
    assert info["pgid"] == info["ancestors"][0] != info["ancestors"][1]
    assert info["cuda"] == "" and info["node"] == worker.id and info["ray_vars"] == []
    assert info["home"] == str(tmp_path / "home")
    assert info["serve_host"] is None  # same host as the control plane: replicas keep 127.0.0.1
    assert info["cwd"] == str(tmp_path / "home" / "runs" / "t-place")  # same default workdir as local
    assert "probe ran" in (tmp_path / "t-place.log").read_text()
    exit_rec = json.loads((tmp_path / "home" / "runs" / "t-place" / "exit.json").read_text())
    assert exit_rec["exit_code"] == 0


def test_failures_report_exit_codes(ray_backend: Any, tmp_path: Path) -> None:
    head, _ = nodes_by_role(ray_backend)
    ray_backend.launch(launch_of("t-fail", head, probe_cmd(tmp_path / "f.json", 0, 3), tmp_path))
    ray_backend.launch(launch_of("t-nobin", head, ["/nonexistent/llmos-binary"], tmp_path))
    got = wait_for(ray_backend, {"t-fail", "t-nobin"})
    assert got["t-fail"].state == TaskState.FAILED and got["t-fail"].exit_code == 3
    assert got["t-nobin"].state == TaskState.FAILED and got["t-nobin"].exit_code == 127
    assert "cannot start" in (tmp_path / "t-nobin.log").read_text()


def test_launching_the_same_attempt_twice_is_refused(ray_backend: Any, tmp_path: Path) -> None:
    from llmos.errors import BackendError

    head, _ = nodes_by_role(ray_backend)
    launch = launch_of("t-twice", head, ["true"], tmp_path)
    ray_backend.launch(launch)
    with pytest.raises(BackendError, match="already launched"):
        ray_backend.launch(launch)
    with pytest.raises(BackendError, match="no device"):
        ray_backend.launch(launch_of("t-nodev", head, ["true"], tmp_path, device_ids=("v100-0",)))
    assert wait_for(ray_backend, {"t-twice"})["t-twice"].state == TaskState.SUCCEEDED


def test_stop_is_sigterm_then_sigkill_after_grace(ray_backend: Any, tmp_path: Path) -> None:
    head, _ = nodes_by_role(ray_backend)
    stubborn = (sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")
    polite = (sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)")
    h1 = ray_backend.launch(launch_of("t-stubborn", head, stubborn, tmp_path))
    h2 = ray_backend.launch(launch_of("t-polite", head, polite, tmp_path))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = [(tmp_path / f"{t}.log") for t in ("t-stubborn", "t-polite")]
        if all(p.exists() and "ready" in p.read_text() for p in logs):
            break
        time.sleep(0.1)
    t0 = time.monotonic()
    ray_backend.stop(h1, grace_s=1.0)
    ray_backend.stop(h2, grace_s=30.0)
    ray_backend.stop(h2, grace_s=30.0)  # idempotent
    got = wait_for(ray_backend, {"t-stubborn", "t-polite"})
    assert time.monotonic() - t0 < 20
    assert got["t-polite"].exit_code == 143 and "SIGTERM" in got["t-polite"].message
    assert got["t-stubborn"].exit_code == 137 and "SIGKILL" in got["t-stubborn"].message
    ray_backend.stop(h1, grace_s=1.0)  # stopping an ended task is a no-op


def test_gang_spans_both_nodes_in_one_placement_group(ray_backend: Any, ray_cluster: Any, tmp_path: Path) -> None:
    import ray

    head, worker = nodes_by_role(ray_backend)
    # Two CPUs each: neither node can hold both members.
    members = [
        launch_of(f"g-{i}", node, probe_cmd(tmp_path / f"g{i}.json", 1.0), tmp_path,
                  job_id="job-gang", cpus=2.0, gang_size=2, gang_index=i)
        for i, node in enumerate((head, worker))
    ]
    h0 = ray_backend.launch(members[0])
    assert not (tmp_path / "home" / "runs" / "g-0" / "launch.json").exists()  # held until the gang is complete
    h1 = ray_backend.launch(members[1])
    assert h0.ref["gang"] == h1.ref["gang"] == "llmos-gang-job-gang-a1"
    pg = ray.util.get_placement_group("llmos-gang-job-gang-a1")
    assert pg.wait(30)
    got = wait_for(ray_backend, {"g-0", "g-1"})
    assert all(s.state == TaskState.SUCCEEDED for s in got.values()), got
    info = [json.loads((tmp_path / f"g{i}.json").read_text()) for i in (0, 1)]
    assert raylet_pid(ray_cluster, 0) in info[0]["ancestors"]
    assert raylet_pid(ray_cluster, 1) in info[1]["ancestors"]
    # The reservation is released once every member ended.
    table = ray.util.placement_group_table(pg)
    assert table["state"] == "REMOVED"


def test_adopt_after_control_plane_restart(ray_cluster: Any, tmp_path: Path) -> None:
    from llmos.backends.ray import RayBackend

    home = tmp_path / "home"
    first = RayBackend(home, address=ray_cluster.address)
    head, _ = nodes_by_role(first)
    out = tmp_path / "a.json"
    handle = first.launch(launch_of("t-adopt", head, probe_cmd(out, 2.0, 0), tmp_path))
    first.close()  # the control plane goes away; the detached actor keeps the task running
    restored = TaskHandle(**json.loads(json.dumps(handle.__dict__)))  # as stored in the DB
    second = RayBackend(home, address=ray_cluster.address)
    assert second.adopt(restored).state == TaskState.RUNNING
    st = wait_for(second, {"t-adopt"})["t-adopt"]
    assert st.state == TaskState.SUCCEEDED
    # Adopting again after it ended: the outcome comes from RUN_DIR/exit.json.
    assert second.adopt(restored).state == TaskState.SUCCEEDED
    gone = TaskHandle("t-never", "ray", head.id, {"actor": "llmos-t-never-a1", "run_dir": str(tmp_path / "x")})
    assert second.adopt(gone).state == TaskState.LOST
    second.close()


def test_task_dies_with_its_actor(ray_backend: Any, tmp_path: Path) -> None:
    """If the actor process goes (as when its node dies), its task process goes too."""
    import ray

    head, _ = nodes_by_role(ray_backend)
    out = tmp_path / "orphan.json"
    ray_backend.launch(launch_of("t-orphan", head, probe_cmd(out, 60.0), tmp_path))
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = json.loads(out.read_text())["pid"]
    assert psutil.pid_exists(pid)
    ray.kill(ray.get_actor("llmos-t-orphan-a1", namespace="llmos"), no_restart=True)
    st = wait_for(ray_backend, {"t-orphan"})["t-orphan"]
    assert st.state == TaskState.LOST
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert not alive



def test_a_gang_that_cannot_start_settles_its_held_members(ray_backend: Any, tmp_path: Path) -> None:
    """Member 1's launch fails: member 0, held back for the gang, ends LOST when stopped; no actor ran."""
    from llmos.errors import BackendError

    head, worker = nodes_by_role(ray_backend)
    ok = launch_of("bad-gang-0", worker, ["true"], tmp_path, job_id="job-bad", gang_size=2, gang_index=0)
    bad = launch_of("bad-gang-1", head, ["true"], tmp_path, job_id="job-bad", gang_size=2, gang_index=1,
                    device_ids=("v100-0",))  # the head has no V100
    h0 = ray_backend.launch(ok)
    with pytest.raises(BackendError, match="no device"):
        ray_backend.launch(bad)
    ray_backend.stop(h0, grace_s=5.0)  # what the controller does to the siblings of a failed member
    got = wait_for(ray_backend, {"bad-gang-0"}, timeout_s=5)
    assert got["bad-gang-0"].state == TaskState.LOST
    assert not (tmp_path / "home" / "runs" / "bad-gang-0" / "launch.json").exists()
