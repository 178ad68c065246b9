"""Must show: llmos.scheduler imports and schedules with torch, sqlalchemy, fastapi and ray unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("torch", "sqlalchemy", "fastapi", "ray", "transformers", "starlette", "uvicorn", "httpx")

SCRIPT = textwrap.dedent(
    f"""
    import sys
    BLOCKED = {BLOCKED!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker does not work")

    import llmos.sim  # the simulator shares the rule
    from llmos.core.devices import Device, Node
    from llmos.core.resources import ResourceRequest
    from llmos.scheduler import ClusterSnapshot, PendingJob, make_scheduler

    node = Node("n1", cpus=8, memory_gib=32, devices=(Device("gpu0", "A100-80G", 0, 80.0),))
    job = PendingJob("j1", "t", ResourceRequest(devices=1, device_types=("A100-80G",)))
    plan = make_scheduler("default").schedule(ClusterSnapshot(nodes=(node,), pending=(job,)), now=0.0)
    assert [p.job_id for p in plan.placements] == ["j1"], plan
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok")
    """
)


def test_scheduler_imports_without_heavy_dependencies() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
