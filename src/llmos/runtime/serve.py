"""The worker of a ``serve`` task: one replica of a deployment.

Contract (docs/worker-contract.md): the spec is read from ``LLMOS_SPEC_PATH``;
the replica loads and pins its model (adapters attached), binds a free port
on ``LLMOS_SERVE_HOST`` (default 127.0.0.1), and only then reports its
endpoint ``host:port`` to the control plane through :class:`TaskReporter`, so
the gateway never routes to a replica that cannot answer yet. It heartbeats
while serving; it exits 0 when the control plane asks it to stop and 143 on
a signal (see :mod:`llmos.control.deployments` for why); a model that cannot be resolved or loaded is declared with
``reporter.fail`` and exits 1.

Model references: an existing directory is used as it is; anything else is a
registry reference (``name[:version|tag]``) resolved in ``LLMOS_HOME``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from llmos.client.reporter import TaskReporter
from llmos.core.jobs import ServeSpec, parse_job_spec
from llmos.errors import LLMOSError, ValidationError

log = logging.getLogger("llmos.runtime.serve")


def resolve_model_dir(ref: str, home: str | Path | None) -> Path:
    """A local directory for ``ref``: the path itself, or a registry checkout."""
    p = Path(ref).expanduser()
    if p.is_dir():
        return p
    if home is None:
        raise ValidationError(f"{ref!r} is not a directory and LLMOS_HOME is not set to look it up")
    from llmos.models.registry import ModelRegistry

    return ModelRegistry.open(home, os.environ.get("LLMOS_DATABASE_URL")).path(ref)


def adapter_name(ref: str) -> str:
    """The name an adapter is served under: its reference as written, or a directory's name."""
    p = Path(ref).expanduser()
    return p.name if p.is_dir() else ref


def build_manager(spec: ServeSpec, home: str | Path | None) -> Any:
    from llmos.serving.server import ManagerConfig, ModelManager, ModelSpec

    base_dir = resolve_model_dir(spec.model, home)
    loras = tuple((adapter_name(a), resolve_model_dir(a, home)) for a in spec.adapters)
    manager = ModelManager(ManagerConfig())
    manager.register(
        ModelSpec(
            spec.name, base_dir, loras=loras, pinned=True, max_num_seqs=spec.max_num_seqs,
            kv_cache_gib=spec.kv_cache_gib,
        )
    )  # fmt: skip
    return manager


def run(spec: ServeSpec, reporter: TaskReporter, *, home: str | Path | None, host: str = "127.0.0.1") -> int:
    """Serve until stopped; returns the process exit code."""
    from llmos.serving.server import ServerThread, create_app

    try:
        manager = build_manager(spec, home)
        manager.preload(spec.name, pinned=True)
    except LLMOSError as e:
        reporter.fail(f"cannot serve {spec.model}: {e.message}")
        return 1
    server = ServerThread(create_app(manager), host=host, port=0, log_level="warning")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    try:
        endpoint = f"{host}:{server.port}"
        reporter.endpoint(endpoint)
        reporter.start_heartbeats(interval_s=5.0)
        print(f"[llmos] replica of {spec.name} serving on http://{endpoint}/v1", flush=True)
        while not stop.wait(1.0):
            # Heartbeat replies carry the control plane's stop requests.
            if reporter.stop_requested:
                return 0
        # Stopped by a signal. The controller maps a stop it ordered to CANCELLED or
        # PREEMPTED whatever the exit code; any other kill must count as a failure so
        # the deployment's retry brings the replica back.
        return 0 if reporter.stop_requested else 143
    finally:
        server.stop()
        reporter.close()


def main(env: Mapping[str, str] | None = None) -> int:
    """Entry of ``python -m llmos.runtime`` for ``kind: serve``."""
    env = os.environ if env is None else env
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    reporter = TaskReporter.from_env(env)
    try:
        spec = parse_job_spec(json.loads(Path(env["LLMOS_SPEC_PATH"]).read_text()))
    except (KeyError, OSError, json.JSONDecodeError, LLMOSError) as e:
        reporter.fail(f"cannot read the serve spec: {e}")
        return 1
    if not isinstance(spec, ServeSpec):
        reporter.fail(f"the serve runtime got a {spec.kind} spec")
        return 1
    return run(spec, reporter, home=env.get("LLMOS_HOME"), host=env.get("LLMOS_SERVE_HOST", "127.0.0.1"))


if __name__ == "__main__":
    sys.exit(main())
