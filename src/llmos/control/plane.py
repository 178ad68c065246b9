"""The control plane of one process: store + backend + controller + loop thread.

``ControlPlane(settings).start()`` migrates the store, picks the backend by
name, adopts tasks left running by a previous process and starts the loop.
``stop()`` stops the loop and leaves running tasks running (a later start
adopts them). Thread-safe: :meth:`wake` may be called from any thread.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from llmos.backends.base import ExecutionBackend
from llmos.control.controller import JobController
from llmos.control.metrics import PlaneMetrics
from llmos.errors import Conflict, ValidationError
from llmos.settings import Settings
from llmos.store import Store

log = logging.getLogger("llmos.control")


def make_backend(settings: Settings) -> ExecutionBackend:
    """The backend named by ``settings.backend`` (an explicit registry, no magic)."""
    if settings.backend == "local":
        from llmos.backends.local import LocalBackend

        return LocalBackend(
            Path(settings.home),
            node_id=settings.node_id,
            cpu_devices=settings.cpu_devices,
            node_cpus=settings.node_cpus,
            node_memory_gib=settings.node_memory_gib,
        )
    if settings.backend == "ray":
        try:
            from llmos.backends import ray as ray_backend
        except ImportError as e:
            raise ValidationError(f"backend 'ray' is not available: {e}") from e
        return ray_backend.make_backend(settings)
    raise ValidationError(f"unknown backend {settings.backend!r}; expected 'local' or 'ray'")


class ControlPlane:
    def __init__(
        self,
        settings: Settings,
        *,
        url: str | None = None,
        store: Store | None = None,
        backend: ExecutionBackend | None = None,
    ) -> None:
        self.settings = settings
        Path(settings.home).mkdir(parents=True, exist_ok=True)
        self.url = url or settings.effective_url
        self.store = store or Store(settings.effective_database_url)
        self.backend = backend or make_backend(settings)
        self.metrics = PlaneMetrics()
        self.controller = JobController(
            self.store, self.backend, settings, url=self.url,
            on_schedule=self.metrics.schedule_seconds.observe,
            on_job_started=self.metrics.job_wait_seconds.observe,
        )
        self.metrics.attach(self.store, self.controller)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._lock_fd: int | None = None

    def set_url(self, url: str) -> None:
        """Where tasks reach the API (known only once the server has bound its port)."""
        self.url = url
        self.controller.url = url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Adopt tasks of a previous run, then start the loop. Idempotent."""
        if self._started:
            return
        self.lock_home()
        self._started = True
        self.controller.recover()
        self._thread = threading.Thread(target=self._run, name="llmos-control-loop", daemon=True)
        self._thread.start()

    def lock_home(self) -> None:
        """One control plane per home: two would both launch the same pending jobs. Idempotent.

        An exclusive ``flock`` held for the life of the process; the kernel drops it
        when the process dies (even by SIGKILL), so a restart never finds it stale.
        """
        import fcntl

        if self._lock_fd is not None:
            return
        path = Path(self.settings.home) / "control-plane.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise Conflict(
                f"another llmos control plane is already running with LLMOS_HOME={self.settings.home}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        interval = self.settings.loop_interval_s
        while not self._stopping.is_set():
            try:
                self.controller.tick()
            except Exception:  # a bad tick must not kill the loop; the next one retries
                log.exception("control loop tick failed")
            self._wake.wait(interval)
            self._wake.clear()

    def stop(self, *, close_store: bool = True) -> None:
        """Stop the loop; tasks keep running. Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.backend.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        if close_store:
            self.store.close()
