"""The tiny supervisor every local task runs under.

``python -m llmos.backends._supervisor RUN_DIR -- CMD...`` starts ``CMD`` in the
supervisor's own process group (the backend made it a session leader), waits
for it and writes ``RUN_DIR/exit.json`` atomically with the exit code. The
control plane may die meanwhile: the supervisor does not depend on it, so a
restarted control plane learns the outcome from the file instead of guessing,
and never has to run a task twice.

SIGTERM sent to the group reaches the command directly; the supervisor only
ignores it so that it survives to record how the command ended. SIGKILL of the
group kills both, and then no ``exit.json`` exists: the backend knows it killed
the task itself.

Only the standard library is imported (it runs as ``python -I -S <this file>``):
it starts once per task, so it must start fast and not depend on site-packages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def write_json_atomic(path: Path, data: dict[str, object]) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one.

    No fsync: the rename is atomic against process crashes, the failure this
    guards against; an OS crash kills the tasks too, and costs ms per launch.
    """
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m llmos.backends._supervisor RUN_DIR -- CMD...", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    cmd = argv[2:]
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    affinity = os.environ.pop("LLMOS_CPU_AFFINITY", "")
    if affinity and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(c) for c in affinity.split(",") if c})
        except OSError as e:  # cores gone offline, container limits: run unpinned
            print(f"[llmos] warning: cannot set CPU affinity {affinity}: {e}", file=sys.stderr, flush=True)
    try:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    except OSError as e:
        print(f"[llmos] cannot start {cmd[0]!r}: {e}", file=sys.stderr, flush=True)
        write_json_atomic(run_dir / "exit.json", {"exit_code": 127, "finished_at": time.time(),
                                                  "message": f"cannot start {cmd[0]!r}: {e.strerror or e}"})
        return 0
    write_json_atomic(run_dir / "child.json", {"pid": child.pid})
    rc = child.wait()  # PEP 475: retried across our ignored signals
    message = ""
    if rc < 0:
        message = f"killed by signal {signal.Signals(-rc).name}"
        rc = 128 - rc
    write_json_atomic(run_dir / "exit.json", {"exit_code": rc, "finished_at": time.time(), "message": message})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
