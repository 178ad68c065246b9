"""Start and stop a throw-away multi-node Ray cluster on this machine.

Used by the tests, the benchmark and anyone trying the Ray backend on one
box: each node is a real ``ray start --block`` process (head or worker) with
its own temp dir and resources, exactly what ``ray start`` on separate hosts
would give. :meth:`LocalRayCluster.stop` kills only the processes this object
started (the ``ray start`` processes and everything below them), never a
global ``ray stop``: other Ray clusters on the machine are left alone.

Not thread-safe; one owner starts and stops it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from llmos.errors import BackendError

# Fast failure detection: the defaults take ~30 s to declare a dead node, which
# is right for a datacenter and far too slow for a test on one machine.
FAST_HEALTH_CHECK = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}


@dataclass(frozen=True)
class RayNodeConfig:
    """One node of the local cluster. ``resources`` are Ray custom resources,
    e.g. ``{"V100": 1}`` to advertise a V100 the scheduler can place on."""

    num_cpus: int = 1
    resources: Mapping[str, float] = field(default_factory=dict)
    num_gpus: int = 0
    object_store_memory_mb: int = 100

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("num_cpus and num_gpus must be >= 0")
        if self.object_store_memory_mb < 75:
            raise ValueError("Ray needs object_store_memory_mb >= 75")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_executable() -> str:
    candidate = Path(sys.executable).with_name("ray")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found is None:
        raise BackendError("the `ray` command is not installed; pip install 'llmos[ray]'")
    return found


@dataclass
class _Started:
    proc: subprocess.Popen[bytes]
    temp_dir: str
    config: RayNodeConfig


class LocalRayCluster:
    """A head node plus worker nodes, all on this machine.

    ``start()`` returns once every node has registered with the head (checked
    through the GCS), so a backend connecting right after sees them all.
    """

    def __init__(
        self,
        head: RayNodeConfig | None = None,
        workers: tuple[RayNodeConfig, ...] = (),
        start_timeout_s: float = 120.0,
        system_config: Mapping[str, int] | None = None,
    ) -> None:
        self.head_config = head or RayNodeConfig()
        self.worker_configs = workers
        self.start_timeout_s = start_timeout_s
        self.system_config = dict(FAST_HEALTH_CHECK if system_config is None else system_config)
        self.port = 0
        self._nodes: list[_Started] = []

    @property
    def address(self) -> str:
        """``host:port`` of the GCS; what ``ray start --address`` and ``ray.init`` take."""
        if not self.port:
            raise BackendError("the local Ray cluster is not started")
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalRayCluster:
        try:
            self.port = free_port()
            self._start_node(self.head_config, head=True)
            self._wait_port()
            for cfg in self.worker_configs:
                self._start_node(cfg, head=False)
            self.wait_for_nodes(1 + len(self.worker_configs))
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, config: RayNodeConfig) -> int:
        """Start one more worker node; returns its position (for :meth:`kill_raylet`)."""
        target = self.alive_node_count() + 1
        self._start_node(config, head=False)
        self.wait_for_nodes(target)
        return len(self._nodes) - 1

    def _start_node(self, cfg: RayNodeConfig, head: bool) -> None:
        # Short path: Ray puts Unix sockets under the temp dir (108-byte limit).
        temp_dir = tempfile.mkdtemp(prefix="llmray", dir="/tmp")
        args = [
            _ray_executable(),
            "start",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cfg.num_cpus}",
            f"--num-gpus={cfg.num_gpus}",
            f"--object-store-memory={cfg.object_store_memory_mb * 1024 * 1024}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ]
        if cfg.resources:
            args.append(f"--resources={json.dumps(dict(cfg.resources))}")
        if head:
            args += [f"--port={self.port}", "--head", "--include-dashboard=false"]
            if self.system_config:
                args.append(f"--system-config={json.dumps(self.system_config)}")
        else:
            args.append(f"--address={self.address}")
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        env.pop("RAY_ADDRESS", None)
        with open(os.path.join(temp_dir, "ray-start.log"), "wb") as log:
            # Own session: a Ctrl-C in the test runner's terminal must not reach Ray
            # before our orderly stop.
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._nodes.append(_Started(proc, temp_dir, cfg))

    def _wait_port(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise BackendError(f"Ray head did not open port {self.port} in {self.start_timeout_s:g}s")

    def _check_alive(self) -> None:
        for n in self._nodes:
            if n.proc.poll() is not None:
                log = Path(n.temp_dir, "ray-start.log").read_text(errors="replace")[-2000:]
                raise BackendError(f"`ray start` exited with {n.proc.returncode}:\n{log}")

    def wait_for_nodes(self, count: int) -> None:
        """Block until the GCS lists ``count`` alive nodes."""
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.alive_node_count() >= count:
                return
            time.sleep(0.3)
        raise BackendError(f"only {self.alive_node_count()} of {count} Ray nodes came up")

    def alive_node_count(self) -> int:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]  # needs no ray.init()

        try:
            infos = GcsClient(address=self.address).get_all_node_info(timeout=5)
        except Exception:
            return 0
        return sum(1 for info in infos.values() if info.state == 0)  # 0 == ALIVE

    def node_processes(self, position: int) -> list[psutil.Process]:
        """The ``ray start`` process of node ``position`` and all its descendants."""
        try:
            root = psutil.Process(self._nodes[position].proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill_raylet(self, position: int) -> int:
        """SIGKILL the raylet of node ``position`` (0 is the head); returns its pid.

        This is what a crashed machine looks like to Ray: the GCS stops
        hearing from the node and declares it dead.
        """
        for p in self.node_processes(position):
            with contextlib.suppress(psutil.Error):
                if p.name() == "raylet":
                    p.kill()
                    return p.pid
        raise BackendError(f"no raylet found for node {position}")

    def stop(self) -> None:
        """Kill every process this cluster started, workers first. Idempotent."""
        for position in reversed(range(len(self._nodes))):
            self._kill_node(position)
        for n in self._nodes:
            shutil.rmtree(n.temp_dir, ignore_errors=True)
        self._nodes.clear()
        self.port = 0

    def _kill_node(self, position: int) -> None:
        node = self._nodes[position]
        procs = self.node_processes(position)
        # Worker processes re-parented away from the tree still name our temp dir.
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any(node.temp_dir in arg for arg in p.info["cmdline"] or ()):
                    procs.append(p)
        # SIGKILL, not SIGTERM: a terminating node first tries to drain itself
        # through the GCS and waits up to 30 s for a head that may be gone.
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.proc.wait(timeout=5)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# The cluster tests use: a CPU-only head and a worker advertising one V100 as a
# custom resource, two CPUs each (the machine running the suite may have two
# cores in all: Ray CPUs are accounting units, not pinned cores).
TEST_HEAD = RayNodeConfig(num_cpus=2)
TEST_WORKER = RayNodeConfig(num_cpus=2, resources={"V100": 1})

_shared: LocalRayCluster | None = None


def shared_test_cluster() -> LocalRayCluster:
    """One two-node cluster per process, started on first use and stopped at exit.

    Starting Ray costs ~10 s on a busy machine, so every test directory's
    fixture asks for this one instead of starting its own. The worker node is
    position 1 (see :meth:`LocalRayCluster.kill_raylet`); a test that kills it
    must call :func:`restore_test_worker` afterwards.
    """
    global _shared
    if _shared is None or not _shared.port:
        _shared = LocalRayCluster(TEST_HEAD, (TEST_WORKER,)).start()
        atexit.register(stop_shared_test_cluster)
    return _shared


def restore_test_worker() -> None:
    """Bring the shared cluster back to its two live nodes after a test killed one."""
    if _shared is not None and _shared.alive_node_count() < 2:
        _shared.add_worker(TEST_WORKER)


def stop_shared_test_cluster() -> None:
    global _shared
    if _shared is not None:
        with contextlib.suppress(Exception):
            import ray

            ray.shutdown()  # disconnect this process's driver before its cluster goes
        _shared.stop()
        _shared = None


def backend_settings(name: str) -> dict[str, str]:
    """Settings overrides that run a control plane on backend ``name`` in tests.

    ``"local"`` -> ``{}``; ``"ray"`` -> the shared two-node test cluster. Use with
    ``llmos.api.harness.run_control_plane(home, **backend_settings(name))``.
    """
    if name == "local":
        return {}
    if name == "ray":
        return {"backend": "ray", "ray_address": shared_test_cluster().address}
    raise ValueError(f"unknown backend {name!r}; expected 'local' or 'ray'")
