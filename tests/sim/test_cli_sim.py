"""``llmos sim`` as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def llmos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmos.cli.app", *args], capture_output=True, text=True,
                          timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_list_policies() -> None:
    out = llmos("sim", "--list-policies")
    assert out.returncode == 0, out.stderr
    for name in ("default", "fifo", "gavel", "tiresias", "drf", "priority", "objective"):
        assert name in out.stdout


def test_csv_trace_json_last_line(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,duration_s,gang_size,device_types,tenant\n0,100,1,v100,a\n0,50,2,v100|k80,b\n")
    out = llmos("sim", "--trace", str(trace), "--trace-format", "csv", "--cluster", "v100=2,k80=2",
                "--policy", "priority", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["jobs"] == 2 and result["finished"] == 2
    assert result["avg_jct_s"] == 75.0  # both start at once: 100 s and 50 s
    for key in ("p99_jct_s", "makespan_s", "utilization", "worst_rho", "tenant_share"):
        assert key in result


def test_bad_input_is_one_line_error_not_a_traceback(tmp_path: Path) -> None:
    out = llmos("sim", "--trace", str(tmp_path / "nope.trace"), "--throughputs", str(tmp_path / "x.json"))
    assert out.returncode == 1
    assert out.stderr.startswith("error:") and "Traceback" not in out.stderr
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,duration_s\n0,10\n")
    out = llmos("sim", "--trace", str(trace), "--trace-format", "csv", "--cluster", "v100=x")
    assert out.returncode == 1 and "count 'x' is not an integer" in out.stderr
    out = llmos("sim", "--trace", str(trace), "--trace-format", "csv", "--policy", "nope")
    assert out.returncode == 1 and "unknown scheduler profile" in out.stderr
