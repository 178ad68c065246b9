"""Trace readers: Gavel's 10-column format with its throughput JSON, and a generic CSV.

A trace is a list of :class:`TraceJob` plus a :class:`ThroughputModel`. Work
is in the throughput model's units (steps for Gavel traces, reference-seconds
for CSV traces given by ``duration_s``). Malformed input raises
:class:`llmos.errors.ValidationError` naming the file and line.
"""

from __future__ import annotations

import ast
import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmos.core.devices import canonical_device_type
from llmos.errors import ValidationError
from llmos.scheduler.throughput import ThroughputModel


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace: ``num_tasks`` tasks of ``devices_per_task`` devices each."""

    job_id: str
    arrival_s: float
    work: float
    workload: str
    num_tasks: int = 1
    devices_per_task: int = 1
    device_types: tuple[str, ...] = ()
    tenant: str = "default"
    priority: int = 0
    preemptible: bool = True
    estimated_duration_s: float | None = None
    cpus: float = 0.0
    memory_gib: float = 0.0
    # The work the job's spec asks for (Gavel's total_steps, passed to the command):
    # a live system knows it. ``None``: the spec names no work and policies must not
    # learn it (``work`` is the simulator's hidden truth).
    spec_steps: float | None = None

    def __post_init__(self) -> None:
        if self.arrival_s < 0 or not math.isfinite(self.arrival_s):
            raise ValueError(f"job {self.job_id}: arrival must be a finite time >= 0")
        if self.work <= 0 or not math.isfinite(self.work):
            raise ValueError(f"job {self.job_id}: work must be > 0")
        if self.num_tasks < 1 or self.devices_per_task < 0:
            raise ValueError(f"job {self.job_id}: need num_tasks >= 1 and devices_per_task >= 0")


@dataclass(frozen=True)
class Trace:
    jobs: tuple[TraceJob, ...]
    throughput: ThroughputModel = field(default_factory=ThroughputModel)


def gavel_workload(job_type: str, scale_factor: int) -> str:
    """The workload name llmos gives Gavel's (job type, scale factor) pair."""
    return job_type if scale_factor == 1 else f"{job_type} x{scale_factor}"


def read_gavel_throughputs(path: str | Path) -> ThroughputModel:
    """Gavel's ``simulation_throughputs.json``: type → "(job_type, scale)" → {"null": steps/s}.

    Only solo ("null") throughputs of the consolidated types are used;
    ``*_unconsolidated`` entries and co-location pairs are ignored.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValidationError(f"cannot read throughputs {p}: {e}") from None
    if not isinstance(raw, dict):
        raise ValidationError(f"{p}: expected a JSON object of device types")
    table: dict[str, dict[str, float]] = {}
    for gpu, per_job in raw.items():
        if "unconsolidated" in gpu or not isinstance(per_job, dict):
            continue
        try:
            dtype = canonical_device_type(gpu)
        except KeyError as e:
            raise ValidationError(f"{p}: {e.args[0]}") from None
        for key, entry in per_job.items():
            try:
                job_type, scale = ast.literal_eval(key)
                solo = float(entry["null"])
            except (ValueError, SyntaxError, TypeError, KeyError):
                raise ValidationError(f"{p}: bad entry {key!r} under {gpu!r}") from None
            table.setdefault(gavel_workload(str(job_type), int(scale)), {})[dtype] = solo
    return ThroughputModel(table)


def read_gavel_trace(path: str | Path, throughputs: ThroughputModel) -> Trace:
    """Gavel's tab-separated 10-column trace (job_type, command, working_dir,
    num_steps_arg, needs_data_dir, total_steps, scale_factor, priority_weight,
    SLO, arrival_time). A gang of ``scale_factor`` one-device tasks; the job may
    run on every type its workload has a throughput for."""
    p = Path(path)
    lines = _read_lines(p)
    jobs: list[TraceJob] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        cols = line.rstrip("\n").split("\t")
        if len(cols) != 10:
            raise ValidationError(f"{p}:{n}: expected 10 tab-separated columns, got {len(cols)}")
        try:
            steps = float(cols[5])
            scale = int(cols[6])
            arrival = float(cols[9])
        except ValueError:
            raise ValidationError(f"{p}:{n}: total_steps, scale_factor and arrival_time must be numbers") from None
        workload = gavel_workload(cols[0], scale)
        types = tuple(t for t, v in throughputs.table.get(workload, {}).items() if v > 0)
        if not types:
            raise ValidationError(f"{p}:{n}: no throughput for workload {workload!r} in the throughputs file")
        try:
            jobs.append(TraceJob(f"job{len(jobs)}", arrival, steps, workload, num_tasks=scale,
                                 devices_per_task=1, device_types=types, spec_steps=steps))
        except ValueError as e:
            raise ValidationError(f"{p}:{n}: {e}") from None
    if not jobs:
        raise ValidationError(f"{p}: the trace has no jobs")
    return Trace(tuple(jobs), throughputs)


CSV_COLUMNS = ("arrival_s", "work", "duration_s", "gang_size", "devices_per_task", "device_types",
               "tenant", "priority", "workload", "preemptible", "estimated_duration_s", "spec_steps")


def read_csv_trace(path: str | Path, throughputs: ThroughputModel | None = None) -> Trace:
    """A generic CSV with a header. Columns (only ``arrival_s`` and one of
    ``work``/``duration_s`` are required): arrival_s, work | duration_s,
    gang_size (tasks, default 1), devices_per_task (default 1), device_types
    (``|``-separated, default any type the throughputs know or V100), tenant,
    priority, workload, preemptible, estimated_duration_s, spec_steps (the
    work the job's spec names, which policies may see; `work` stays hidden).

    ``duration_s`` without a throughputs file means "seconds on any allowed
    type" (every type runs it at 1 unit/s).
    """
    p = Path(path)
    text = "".join(_read_lines(p))
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise ValidationError(f"{p}: the CSV trace has no rows (a header line is required)")
    unknown = set(rows[0]) - set(CSV_COLUMNS)
    if unknown:
        raise ValidationError(f"{p}: unknown columns {sorted(unknown)}; known: {', '.join(CSV_COLUMNS)}")
    model: dict[str, dict[str, float]] = {k: dict(v) for k, v in (throughputs.table if throughputs else {}).items()}
    jobs: list[TraceJob] = []
    for n, row in enumerate(rows, 2):
        try:
            jobs.append(_csv_job(row, len(jobs), model))
        except (ValueError, KeyError) as e:
            raise ValidationError(f"{p}:{n}: {e}") from None
    return Trace(tuple(jobs), ThroughputModel(model))


def _csv_job(row: Mapping[str, str], index: int, model: dict[str, dict[str, float]]) -> TraceJob:
    def get(name: str, default: str = "") -> str:
        v = row.get(name)
        return v.strip() if v and v.strip() else default

    if not get("arrival_s"):
        raise ValueError("arrival_s is required")
    work, duration = get("work"), get("duration_s")
    if bool(work) == bool(duration):
        raise ValueError("give exactly one of work and duration_s")
    types_text = get("device_types")
    types = tuple(canonical_device_type(t) for t in types_text.split("|") if t.strip()) if types_text else ()
    workload = get("workload", "")
    if duration:
        # Seconds on any allowed type: a private workload running at 1 unit/s everywhere.
        workload = workload or f"csv-{index}"
        if workload not in model:
            model[workload] = {t: 1.0 for t in (types or ("V100",))}
        amount = float(duration)
    else:
        if not workload:
            raise ValueError("a row with work needs a workload with throughputs (or use duration_s)")
        if workload not in model:
            raise ValueError(f"no throughput for workload {workload!r}")
        amount = float(work)
    if not types:
        types = tuple(t for t, v in model[workload].items() if v > 0)
    est = get("estimated_duration_s")
    spec = get("spec_steps")
    return TraceJob(
        job_id=f"job{index}", arrival_s=float(get("arrival_s")), work=amount, workload=workload,
        num_tasks=int(get("gang_size", "1")), devices_per_task=int(get("devices_per_task", "1")),
        device_types=types, tenant=get("tenant", "default"), priority=int(get("priority", "0")),
        preemptible=get("preemptible", "true").lower() in ("1", "true", "yes"),
        estimated_duration_s=float(est) if est else None,
        spec_steps=float(spec) if spec else None,
    )


def _read_lines(p: Path) -> Sequence[str]:
    try:
        with p.open() as f:
            return f.readlines()
    except OSError as e:
        raise ValidationError(f"cannot read trace {p}: {e.strerror or e}") from None
