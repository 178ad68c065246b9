"""Job commands: submit, jobs, job, logs, cancel."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from llmos.cli._common import TokenOpt, UrlOpt, ago, client, console, styled, ts
from llmos.errors import ValidationError

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def submit(
    file: Annotated[Path, typer.Argument(help="job spec (YAML or JSON)")],
    wait: Annotated[bool, typer.Option("--wait", "-w", help="wait until the job ends; exit 1 unless it SUCCEEDED")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit a job spec."""
    try:
        text = file.read_text()
    except OSError as e:
        raise ValidationError(f"cannot read {file}: {e.strerror or e}") from None
    c = client(url, token)
    job = c.submit(text)
    console.print(f"submitted [bold]{job['id']}[/] ({job['kind']} {job['name']!r}) {styled(job['state'])}")
    if not wait:
        return
    last, reason = job["state"], ""
    while last not in TERMINAL:
        time.sleep(0.2)
        job = c.job(job["id"])
        if job["state"] != last:
            last = job["state"]
            extra = f": {job['message']}" if job.get("message") else ""
            console.print(f"{job['id']} {styled(last)}{extra}")
        if last == "PENDING" and job["pending_reason"] and job["pending_reason"] != reason:
            reason = job["pending_reason"]
            console.print(f"{job['id']} waiting: {reason}")
    if last != "SUCCEEDED":
        raise typer.Exit(1)


def jobs(
    state: Annotated[list[str] | None, typer.Option("--state", "-s", help="filter by state (repeatable)")] = None,
    kind: Annotated[str | None, typer.Option("--kind")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 50,
    offset: Annotated[int, typer.Option("--offset")] = 0,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List jobs of your tenant, newest first."""
    page = client(url, token).jobs(state, kind=kind, limit=limit, offset=offset)
    now = time.time()
    table = Table(title=f"jobs ({len(page['items'])} of {page['total']})", title_justify="left")
    for col in ("ID", "NAME", "KIND", "STATE", "PRIO", "SUBMITTED", "INFO"):
        table.add_column(col, no_wrap=col != "INFO")
    for j in page["items"]:
        info = j["pending_reason"] if j["state"] == "PENDING" else j["message"]
        if j["state"] == "RUNNING" and j["progress"].get("step") is not None:
            tot = j["progress"].get("total_steps")
            info = f"step {j['progress']['step']}" + (f"/{tot}" if tot else "")
        table.add_row(j["id"], j["name"], j["kind"], styled(j["state"]), str(j["priority"]),
                      ago(j["submitted_at"], now), info or "")
    console.print(table)


def _kv(label: str, value: Any) -> None:
    console.print(f"[bold]{label:<14}[/] {value}")


def job(
    job_id: Annotated[str, typer.Argument(help="job id")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show one job: state, why it is pending, progress, metrics, tasks, recent events."""
    c = client(url, token)
    j = c.job(job_id)
    _kv("job", f"{j['id']} ({j['kind']} {j['name']!r}, tenant {j['tenant']})")
    _kv("state", styled(j["state"]) + (" (cancel requested)" if j["cancel_requested"] and j["state"] not in TERMINAL else ""))
    if j["state"] == "PENDING" and j["pending_reason"]:
        _kv("pending", j["pending_reason"])
    if j["message"]:
        _kv("message", j["message"])
    _kv("submitted", ts(j["submitted_at"]))
    _kv("started", ts(j["started_at"]))
    _kv("finished", ts(j["finished_at"]))
    _kv("attempts", f"{j['attempt']} (failures {j['failures']}, preemptions {j['preemptions']}, "
                    f"max_retries {j['spec'].get('max_retries', 0)})")
    if j["progress"]:
        p = j["progress"]
        _kv("progress", f"step {p.get('step')}" + (f" / {p['total_steps']}" if p.get("total_steps") else ""))
    if j["metrics"]:
        shown = {k: v for k, v in j["metrics"].items() if k != "at"}
        _kv("metrics", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    if j["checkpoint"]:
        _kv("checkpoint", f"step {j['checkpoint'].get('step')} at {j['checkpoint'].get('path')}")
    if j["tasks"]:
        table = Table(title="tasks", title_justify="left")
        for col in ("TASK", "ATTEMPT", "STATE", "NODE", "DEVICES", "EXIT", "ENDPOINT", "MESSAGE"):
            table.add_column(col)
        for t in j["tasks"]:
            table.add_row(str(t["index"]), str(t["attempt"]), styled(t["state"]), t["node_id"],
                          ",".join(t["device_ids"]) or "-", "-" if t["exit_code"] is None else str(t["exit_code"]),
                          t["endpoint"] or "-", t["error_reason"] or t["message"])
        console.print(table)
    events = c.events(job_id)[-10:]
    if events:
        console.print("[bold]recent events[/]")
        for e in events:
            console.print(f"  {ts(e['at'])}  {e['kind']:<10} {e['message']}")


def logs(
    job_id: Annotated[str, typer.Argument(help="job id")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream until the job ends")] = False,
    task: Annotated[int, typer.Option("--task", help="task index")] = 0,
    attempt: Annotated[int | None, typer.Option("--attempt", help="attempt (default: latest)")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print a task's log (stdout and stderr of the latest attempt)."""
    import sys

    for chunk in client(url, token).logs(job_id, task=task, attempt=attempt, follow=follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def cancel(
    job_id: Annotated[str, typer.Argument(help="job id")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel a job (its tasks get SIGTERM, then SIGKILL after the grace period)."""
    j = client(url, token).cancel(job_id)
    note = "" if j["state"] in TERMINAL else " (stopping)"
    console.print(f"{j['id']} {styled(j['state'])}{note}")


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(jobs)
    app.command()(job)
    app.command()(logs)
    app.command()(cancel)
