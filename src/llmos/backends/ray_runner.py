"""The body of the Ray actor that runs one task attempt as a subprocess.

:class:`TaskProcess` is plain Python (no Ray import at module level) so it can
be tested on its own; :mod:`llmos.backends.ray` turns it into a detached Ray
actor pinned to the node the scheduler chose. It mirrors what the local
backend does for a task: the command runs in its own process group (so a stop
reaches every process it started), stdout and stderr go to the attempt's log
file, stop is SIGTERM to the group then SIGKILL after the grace period. The
actor plays the part of the local backend's supervisor: when the command ends
it writes ``RUN_DIR/exit.json`` (same format, exit code ``128 + signal`` for a
signal), so a control plane restarted after the actor is gone can still learn
the outcome from the shared ``LLMOS_HOME``.

One thing the local backend does not need: if the actor itself dies (its
node's raylet was killed, the node lost power), the task must die with it,
otherwise the rescheduled attempt would run next to an orphan. The command
runs under a tiny reaper (:data:`REAPER`, stdlib only, ``python -I -S``) that
the kernel sends SIGHUP when the actor goes (``PR_SET_PDEATHSIG``, set from a
thread that lives exactly as long as the reaper); the reaper then SIGKILLs
its whole process group, grandchildren included. When Ray itself SIGKILLs the
dying worker's children (it does on ``ray.kill`` and worker exit), the reaper
cannot react; the command then dies through its own ``PR_SET_PDEATHSIG``, but
processes the command started in the background may outlive it. Run the work
as the command itself (``python -m llmos.runtime`` does), not behind ``sh &``.

Thread-safety: ``wait`` blocks in one actor thread while ``status`` and
``stop`` are served by others (the actor runs with ``max_concurrency`` > 1);
the shared fields are written once under ``_lock``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmos.backends._supervisor import write_json_atomic

_PR_SET_PDEATHSIG = 1
# Resolved before any fork: looking libc up inside preexec_fn could take the
# dynamic loader's lock while another (gRPC) thread holds it.
_PRCTL: Any = None
if sys.platform.startswith("linux"):
    try:
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _PRCTL = None

# Exit code reported when the command could not even be started (as a shell does).
EXIT_NOT_STARTED = 127
# Ray's worker environment describes the Ray worker, not the task: a task that
# itself calls ray.init() must not think it is that worker.
_DROPPED_ENV_PREFIXES = ("RAY_",)


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGHUP)


# argv: ACTOR_PID CMD... Runs CMD in the reaper's process group and exits the way
# CMD did (same code, or killed by the same signal). SIGTERM/SIGINT to the group
# reach CMD; the reaper ignores them so it lives to report. SIGHUP (its parent,
# the actor, died) kills the group.
REAPER = r"""
import os, signal, sys
def kill_group(*_):
    os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGHUP, kill_group)
if os.getppid() != int(sys.argv[1]):
    kill_group()  # the actor died before PDEATHSIG was armed
cmd = sys.argv[2:]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    try:
        # Ray SIGKILLs a dying worker's children (this reaper among them): then CMD goes too.
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        sys.stderr.write("[llmos] cannot start %r: %s\n" % (cmd[0], e.strerror or e))
        sys.stderr.flush()
        os._exit(127)
_, status = os.waitpid(pid, 0)
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)
os._exit(os.WEXITSTATUS(status))
"""


def task_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The subprocess environment: the node's environment minus Ray internals, plus ``extra``."""
    env = {k: v for k, v in base.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    env.update(extra)
    return env


class TaskProcess:
    """One running task command. Created on the node that runs it.

    ``start_timeout_s`` bounds how long the constructor waits for ``Popen`` to
    return; a command that cannot be executed (missing binary, bad workdir)
    does not raise: it is recorded as exited with :data:`EXIT_NOT_STARTED`
    and the reason is written to the log file, exactly like a task that
    failed at once.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: str,
        run_dir: str,
        workdir: str | None = None,
        use_ray_gpu_ids: bool = False,
        start_timeout_s: float = 30.0,
    ) -> None:
        extra = dict(env)
        if use_ray_gpu_ids:
            # Ray picked the physical GPUs this actor holds; the task must see exactly those.
            import ray

            extra["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in ray.get_gpu_ids())
        self._command = list(command)
        self._env = task_environment(os.environ, extra)
        self._log_path = log_path
        self._run_dir = Path(run_dir)
        self._workdir = workdir
        self._message = ""
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._exit_code: int | None = None
        self._started_at = time.time()
        self._stop_requested = False
        self._started = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmos-task", daemon=True)
        self._thread.start()
        self._started.wait(start_timeout_s)

    def _open_log(self) -> Any:
        if not self._log_path:
            return open(os.devnull, "ab")
        os.makedirs(os.path.dirname(self._log_path) or ".", exist_ok=True)
        return open(self._log_path, "ab", buffering=0)

    def _run(self) -> None:
        try:
            log = self._open_log()
        except OSError as e:
            self._finish(EXIT_NOT_STARTED, f"cannot open log file {self._log_path}: {e}")
            return
        with log:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", REAPER, str(os.getpid()), *self._command],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._workdir or None,
                    env=self._env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except OSError as e:
                message = f"cannot start {self._command[0]!r}: {e.strerror or e}"
                log.write(f"[llmos] {message}\n".encode())
                self._finish(EXIT_NOT_STARTED, message)
                return
            with self._lock:
                self._proc = proc
            self._started.set()
            # This thread stays alive while the reaper runs: PDEATHSIG fires when
            # the *thread* that forked it ends, so it must not end early.
            code = proc.wait()
        message = ""
        if code < 0:
            # Same convention as the local supervisor (and a shell): 128 + signal number.
            message = f"killed by signal {signal.Signals(-code).name}"
            code = 128 - code
        self._finish(code, message)

    def _finish(self, code: int, message: str) -> None:
        try:
            self._run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(
                self._run_dir / "exit.json",
                {"exit_code": code, "finished_at": time.time(), "message": message},
            )
        except OSError as e:  # the outcome still reaches the backend through wait()
            print(f"[llmos] cannot write {self._run_dir}/exit.json: {e}", file=sys.stderr)
        with self._lock:
            self._exit_code = code
            self._message = message
        self._started.set()
        self._done.set()

    def wait(self) -> dict[str, Any]:
        """Block until the command exits: ``{"exit_code": int, "message": str}``."""
        self._done.wait()
        with self._lock:
            return {"exit_code": self._exit_code, "message": self._message}

    def status(self) -> dict[str, Any]:
        """A JSON-able view: pid, host, whether it runs, exit code, stop requested."""
        with self._lock:
            proc, code = self._proc, self._exit_code
        return {
            "pid": proc.pid if proc is not None else None,
            "hostname": socket.gethostname(),
            "running": code is None,
            "exit_code": code,
            "stop_requested": self._stop_requested,
            "started_at": self._started_at,
        }

    def stop(self, grace_s: float) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``. Idempotent.

        Returns the exit code, or None if the process outlived even SIGKILL
        for a few seconds (a process stuck in the kernel).
        """
        self._stop_requested = True
        with self._lock:
            proc = self._proc
        if proc is None or self._done.is_set():
            return self._exit_code
        self._signal_group(proc.pid, signal.SIGTERM)
        if not self._done.wait(max(grace_s, 0.0)):
            self._signal_group(proc.pid, signal.SIGKILL)
            self._done.wait(5.0)
        return self._exit_code

    @staticmethod
    def _signal_group(pid: int, sig: int) -> None:
        # The group may already be gone: a stop racing a natural exit is not an error.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
