"""``llmos sim``: run a trace through the scheduler in the discrete-event simulator.

Needs no control plane, database or GPU. The Rich progress bar lives here so
:mod:`llmos.sim` itself stays importable without Rich.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmos.errors import ValidationError

if TYPE_CHECKING:
    from llmos.core.devices import Node
    from llmos.scheduler import Scheduler
    from llmos.sim import SimConfig, SimResult, Trace


def sim(
    trace: Annotated[Path | None, typer.Option("--trace", help="trace file")] = None,
    trace_format: Annotated[str, typer.Option("--trace-format", help="gavel | csv")] = "gavel",
    throughputs: Annotated[Path | None, typer.Option(
        "--throughputs", help="throughput JSON (Gavel's format); required for gavel traces")] = None,
    cluster: Annotated[str, typer.Option("--cluster", help="devices per type, e.g. v100=12,p100=12,k80=12")]
    = "v100=12,p100=12,k80=12",
    devices_per_node: Annotated[int, typer.Option("--devices-per-node", help="devices per simulated node")] = 1,
    policy: Annotated[str, typer.Option("--policy", help="scheduler profile (see --list-policies)")] = "default",
    round_s: Annotated[float | None, typer.Option(
        "--round-s", help="schedule only at round boundaries this far apart (Gavel: 360)")] = None,
    restart_overhead_s: Annotated[float, typer.Option(
        "--restart-overhead-s", help="seconds of no progress after each preemption/migration restart")] = 30.0,
    tick_s: Annotated[float, typer.Option("--tick-s", help="event mode: rerun the scheduler this often")] = 360.0,
    node_mtbf_s: Annotated[float | None, typer.Option(
        "--node-mtbf-s", help="mean time between failures of each node (default: no failures)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed for node failures")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")] = False,
    list_policies: Annotated[bool, typer.Option("--list-policies", help="list scheduler profiles and exit")]
    = False,
) -> None:
    """Simulate a trace under a scheduling policy and report JCTs, utilisation and fairness."""
    from rich.console import Console
    from rich.table import Table

    from llmos.scheduler import make_scheduler
    from llmos.scheduler.registry import DEFAULT_PROFILE, PROFILES
    from llmos.sim import (
        SimConfig,
        build_cluster,
        parse_cluster_spec,
        read_csv_trace,
        read_gavel_throughputs,
        read_gavel_trace,
    )

    console = Console(highlight=False)
    if list_policies:
        table = Table("policy", "what it does", box=None)
        table.add_row("default", f"alias of {DEFAULT_PROFILE} (best on the dev trace, see docs/scheduler.md)")
        for name in sorted(PROFILES):
            table.add_row(name, PROFILES[name].description)
        console.print(table)
        return
    if trace is None:
        raise ValidationError("--trace is required (or use --list-policies)")
    if trace_format not in ("gavel", "csv"):
        raise ValidationError(f"--trace-format must be gavel or csv, not {trace_format!r}")
    model = read_gavel_throughputs(throughputs) if throughputs is not None else None
    if trace_format == "gavel":
        if model is None:
            raise ValidationError("a gavel trace needs --throughputs FILE")
        tr = read_gavel_trace(trace, model)
    else:
        tr = read_csv_trace(trace, model)
    nodes = build_cluster(parse_cluster_spec(cluster), devices_per_node=devices_per_node)
    scheduler = make_scheduler(policy)
    try:
        config = SimConfig(round_s=round_s, restart_overhead_s=restart_overhead_s, tick_s=tick_s,
                           node_mtbf_s=node_mtbf_s, seed=seed)
    except ValueError as e:
        raise ValidationError(str(e)) from None
    result = _run_with_progress(tr, nodes, scheduler, config, show=not as_json)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    table = Table(title=f"{result.policy} on {trace.name} ({result.finished}/{result.jobs} jobs finished)",
                  box=None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("avg JCT", _h(result.avg_jct_s)), ("p50 JCT", _h(result.p50_jct_s)), ("p99 JCT", _h(result.p99_jct_s)),
        ("makespan", _h(result.makespan_s)), ("utilization", f"{result.utilization:.3f}"),
        ("worst / avg finish-time fairness ρ", f"{result.worst_rho:.2f} / {result.avg_rho:.2f}"),
        ("preemptions", str(result.preemptions)), ("scheduler calls", str(result.scheduler_calls)),
        ("wall time", f"{result.wall_s:.1f} s"),
    ]
    rows += [(f"share of tenant {k}", f"{v:.3f}") for k, v in result.tenant_share.items()]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)


def _h(seconds: float) -> str:
    return f"{seconds:,.0f} s ({seconds / 3600:.2f} h)"


def _run_with_progress(trace: Trace, nodes: tuple[Node, ...], scheduler: Scheduler, config: SimConfig,
                       show: bool) -> SimResult:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from llmos.sim import simulate

    if not show:
        return simulate(trace, nodes, scheduler, config)
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} jobs"),
                  TextColumn("sim time {task.fields[t]}"), TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task("sim", total=len(trace.jobs), t="0h")

        def report(done: int, total: int, t: float) -> None:
            bar.update(task, completed=done, t=f"{t / 3600:.0f}h")

        return simulate(trace, nodes, scheduler, config, progress=report)


def register(app: typer.Typer) -> None:
    app.command("sim")(sim)
