"""``TaskReporter``: what a runtime inside a task uses to talk to the control plane.

It reads the worker contract's environment (``LLMOS_URL``, ``LLMOS_TASK_TOKEN``,
``LLMOS_TASK_ID``; see docs/worker-contract.md) and POSTs reports to
``/v1/tasks/{task_id}/report``. It never raises and never blocks for long: if
the control plane is briefly unreachable, the important parts of a report
(checkpoint, error, endpoint) are kept and re-sent with the next one, and the
job carries on. Outside llmos (no environment) it is a no-op, so runtimes can
run standalone. Thread-safe.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

# Parts of a report that must not be lost to a transient failure.
_STICKY = ("checkpoint", "error", "endpoint")


class TaskReporter:
    def __init__(
        self,
        url: str | None,
        token: str | None,
        task_id: str | None,
        *,
        error_file: str | None = None,
        timeout_s: float = 3.0,
    ) -> None:
        self.url = (url or "").rstrip("/")
        self.token = token or ""
        self.task_id = task_id or ""
        self.error_file = error_file
        self.enabled = bool(self.url and self.token and self.task_id)
        self.stop_requested = False
        self.stop_reason: str | None = None
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._warned = False
        self._client = httpx.Client(timeout=timeout_s) if self.enabled else None
        self._hb_thread: threading.Thread | None = None
        self._hb_stop = threading.Event()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TaskReporter:
        env = os.environ if env is None else env
        return cls(
            env.get("LLMOS_URL"),
            env.get("LLMOS_TASK_TOKEN"),
            env.get("LLMOS_TASK_ID"),
            error_file=env.get("LLMOS_ERROR_FILE"),
        )

    # -- the report calls ----------------------------------------------------------------
    def heartbeat(self) -> None:
        self.report(heartbeat=True)

    def progress(self, step: int, total_steps: int | None = None) -> None:
        self.report(progress={"step": int(step), "total_steps": total_steps})

    def metrics(self, step: int | None = None, **values: float) -> None:
        """Report metrics (``loss``, ``tokens_per_s``, ``lr``...); with ``step`` also progress."""
        clean = {k: (float(v) if isinstance(v, int | float) else v) for k, v in values.items()}
        if step is not None:
            self.report(metrics=clean, progress={"step": int(step)})
        else:
            self.report(metrics=clean)

    def checkpoint(self, step: int, path: str) -> None:
        """A checkpoint is on disk at ``path``; a retry will get it as LLMOS_RESUME_CHECKPOINT."""
        self.report(checkpoint={"step": int(step), "path": str(path)})

    def message(self, text: str) -> None:
        self.report(message=text)

    def endpoint(self, host_port: str) -> None:
        """A ``serve`` replica announces where it listens (``host:port``) for the gateway."""
        self.report(endpoint=host_port)

    def fail(self, reason: str) -> None:
        """Declare why the task is failing (becomes the job's failure message).

        The runtime should exit non-zero afterwards. The reason is also written
        to ``LLMOS_ERROR_FILE`` so it survives an unreachable control plane.
        """
        if self.error_file:
            try:
                Path(self.error_file).parent.mkdir(parents=True, exist_ok=True)
                Path(self.error_file).write_text(reason)
            except OSError:
                pass
        self.report(error=reason)

    # -- plumbing ----------------------------------------------------------------------------
    def report(self, **fields: Any) -> bool:
        """Send one report; returns whether the control plane accepted it. Never raises."""
        if not self.enabled or self._client is None:
            return False
        with self._lock:
            body = {**self._pending, **{k: v for k, v in fields.items() if v is not None}}
            body = _json_safe(body)
            try:
                r = self._client.post(
                    f"{self.url}/v1/tasks/{self.task_id}/report",
                    json=body,
                    headers={"Authorization": f"Bearer {self.token}"},
                )
            except httpx.HTTPError as e:
                self._keep(body)
                self._warn(f"control plane unreachable ({e.__class__.__name__}); will retry with the next report")
                return False
            if r.status_code >= 500:
                self._keep(body)
                self._warn(f"control plane error {r.status_code}; will retry with the next report")
                return False
            self._pending = {}
            if r.status_code >= 400:
                # 409: the task already ended (e.g. being stopped); nothing to retry.
                self._warn(f"report rejected: {r.status_code} {r.text[:200]}")
                return False
            data = r.json()
            self.stop_requested = bool(data.get("stop"))
            self.stop_reason = data.get("stop_reason")
            return True

    def _keep(self, body: dict[str, Any]) -> None:
        self._pending = {k: body[k] for k in _STICKY if k in body}

    def _warn(self, text: str) -> None:
        if not self._warned:
            print(f"[llmos] {text}", file=sys.stderr, flush=True)
            self._warned = True

    def start_heartbeats(self, interval_s: float = 10.0) -> None:
        """Send a heartbeat every ``interval_s`` from a daemon thread until :meth:`close`."""
        if not self.enabled or self._hb_thread is not None:
            return

        def beat() -> None:
            while not self._hb_stop.wait(interval_s):
                self.heartbeat()

        self._hb_thread = threading.Thread(target=beat, name="llmos-heartbeat", daemon=True)
        self._hb_thread.start()

    def close(self) -> None:
        self._hb_stop.set()
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> TaskReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
