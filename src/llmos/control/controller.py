"""The job controller: applies scheduler plans and reconciles jobs with their tasks.

Contract: one thread (the control loop) calls :meth:`JobController.recover`
once at start, then :meth:`JobController.tick` repeatedly. Every decision is
re-derived from the store each tick, so the process can be killed at any
instant: a task row is committed (STARTING) *before* the backend launches it,
its handle right after, and :meth:`recover` adopts what the store says runs.

Job outcomes:

* all tasks of the current attempt SUCCEEDED -> job SUCCEEDED;
* a task FAILED or LOST -> the gang's other tasks are stopped, then the job
  retries (back to PENDING after ``retry_backoff_s * 2**(failures-1)``) while
  ``failures <= max_retries``, else FAILED with the task's declared error
  reason (or its exit code) as message;
* a task that reported a heartbeat and then stays silent longer than its
  ``heartbeat_timeout_s`` while its process lives is hung: stopped
  (SIGTERM, then SIGKILL after ``stop_grace_s``) and FAILED with reason
  "no heartbeat for N s", so the job retries from its checkpoint. Tasks that
  never report (plain commands) are never judged by heartbeats;
* a task PREEMPTED -> the others are stopped, the job goes back to PENDING
  without counting a failure and resumes from its last checkpoint;
* ``cancel_requested`` -> tasks stopped with grace, job CANCELLED.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmos.backends.base import ExecutionBackend, TaskHandle, TaskLaunch, TaskStatus
from llmos.control import launch as L
from llmos.control.snapshot import build_snapshot
from llmos.core.devices import Node
from llmos.core.states import JobState, TaskState
from llmos.errors import BackendError
from llmos.scheduler import Placement, Plan, make_scheduler
from llmos.settings import Settings
from llmos.store import Store
from llmos.store import jobs as repo
from llmos.store import tokens as tokrepo
from llmos.store.nodes import upsert_nodes
from llmos.store.tables import JobRow, TaskRow

log = logging.getLogger("llmos.control")

# Why the controller stopped a task; decides the task's final state.
STOP_CANCEL = "cancel"  # the user cancelled the job
STOP_GANG = "gang"  # a sibling failed; the whole gang restarts
STOP_PREEMPT = "preempt"  # the scheduler needs the room
STOP_RESTART = "restart"  # recorded but never launched before a control-plane crash
STOP_HUNG = "hung"  # heartbeats stopped while the process lives: a failure, retried

_REQUEUE = {STOP_PREEMPT, STOP_RESTART}


@dataclass
class ControllerStats:
    """What the last tick saw; read by the metrics collector (no store access needed)."""

    devices_total: dict[str, int]
    devices_allocated: dict[str, int]
    last_schedule_s: float = 0.0


def handle_of(task: TaskRow) -> TaskHandle | None:
    h = task.handle
    if not h:
        return None
    return TaskHandle(task_id=task.id, backend=h.get("backend", ""), node_id=task.node_id, ref=h.get("ref", {}))


class JobController:
    def __init__(
        self,
        store: Store,
        backend: ExecutionBackend,
        settings: Settings,
        *,
        url: str,
        on_schedule: Callable[[float], None] | None = None,
        on_job_started: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.backend = backend
        self.settings = settings
        self.home = Path(settings.home)
        self.url = url
        self.scheduler = make_scheduler(settings.scheduler_profile)
        self.clock = clock
        self._on_schedule = on_schedule
        self._on_job_started = on_job_started
        self._nodes: tuple[Node, ...] = ()
        self._nodes_at = float("-inf")
        self.stats = ControllerStats({}, {})
        # Silence is measured from no earlier than this: while the control plane was down
        # workers could not report, so their old heartbeats prove nothing.
        self._watch_since = clock()

    # -- inventory ---------------------------------------------------------------------
    @property
    def known_nodes(self) -> tuple[Node, ...]:
        """The last inventory (no refresh); safe to read from any thread."""
        return self._nodes

    def nodes(self, *, force: bool = False) -> tuple[Node, ...]:
        now = time.monotonic()
        if force or now - self._nodes_at >= self.settings.inventory_refresh_s:
            self._nodes = tuple(self.backend.inventory())
            self._nodes_at = now
            with self.store.session() as s:
                upsert_nodes(s, self._nodes, backend=self.backend.name)
        return self._nodes

    # -- restart -----------------------------------------------------------------------
    def recover(self) -> None:
        """Adopt every task the store says is active; settle those that ended meanwhile."""
        self._watch_since = self.clock()
        self.nodes(force=True)
        with self.store.session() as s:
            active = repo.active_tasks(s)
        for task in active:
            handle = handle_of(task) or TaskHandle(task.id, self.backend.name, task.node_id, {})
            try:
                status = self.backend.adopt(handle)
            except BackendError as e:
                status = TaskStatus(task.id, TaskState.LOST, None, str(e))
            if status.state == TaskState.LOST and status.message == "never started":
                with self.store.session() as s:
                    row = repo.get_task(s, task.id)
                    row.stop_reason = row.stop_reason or STOP_RESTART
            log.info("adopted task %s: %s", task.id, status.state.value)
            self._apply_status(status)
            if status.state == TaskState.RUNNING and task.stop_reason:
                # A stop was in progress when the old process died: finish it.
                with self.store.session() as s:
                    row = repo.get_task(s, task.id)
                    self._stop(s, row, task.stop_reason, self.settings.stop_grace_s)

    # -- the loop body -----------------------------------------------------------------
    def tick(self) -> None:
        for status in self.backend.poll():
            self._apply_status(status)
        now = self.clock()
        self._reconcile(now)
        self._schedule(self.clock())

    def _apply_status(self, status: TaskStatus) -> None:
        with self.store.session() as s:
            task = s.get(TaskRow, status.task_id)
            if task is None or TaskState(task.state).terminal:
                return
            now = self.clock()
            if status.state == TaskState.RUNNING:
                repo.set_task_state(s, task, TaskState.RUNNING, now=now)
                return
            final = status.state
            if final == TaskState.LOST:
                # A lost task usually means a lost node: refresh the inventory before the
                # next placement, or the retry may be placed on the dead node.
                self._nodes_at = float("-inf")
            reason = task.stop_reason
            # Once stopped by the controller, the reason decides, whatever the exit code: a
            # runtime that checkpoints on SIGTERM and exits 0 has not finished its work.
            if reason in (STOP_CANCEL, STOP_GANG):
                final = TaskState.CANCELLED
            elif reason in _REQUEUE:
                final = TaskState.PREEMPTED
            elif reason == STOP_HUNG:
                # Whatever the exit code (a runtime may exit 0 on SIGTERM), it did not finish.
                final = TaskState.FAILED
            message = status.message
            if final in (TaskState.FAILED, TaskState.LOST):
                declared = task.error_reason or self._declared_error(task.id)
                if declared:
                    task.error_reason = declared
                    message = declared
                elif status.exit_code is not None:
                    message = message or f"exited with code {status.exit_code}"
            repo.set_task_state(s, task, final, exit_code=status.exit_code, message=message, now=now)
            tokrepo.revoke_task_tokens(s, task.id)
            job = s.get(JobRow, task.job_id)
            if job is not None and task.started_at is not None and job.num_tasks:
                job.attained_service_s += max(0.0, now - task.started_at) / job.num_tasks

    def _declared_error(self, task_id: str) -> str:
        path = L.error_file(self.home, task_id)
        try:
            return path.read_text().strip()[:2000] if path.exists() else ""
        except OSError:
            return ""

    def _stop(self, s: Session, task: TaskRow, reason: str, grace_s: float) -> None:
        if task.stop_reason is None:
            task.stop_reason = reason
            repo.add_event(s, task.job_id, "stop", f"stopping task {task.index} ({reason})", task_id=task.id)
        handle = handle_of(task)
        if handle is None:
            # Recorded but never launched: nothing runs, settle it here.
            final = TaskState.CANCELLED if reason in (STOP_CANCEL, STOP_GANG) else TaskState.PREEMPTED
            repo.set_task_state(s, task, final, message=f"stopped before launch ({reason})")
            return
        try:
            self.backend.stop(handle, grace_s)
        except BackendError as e:
            log.warning("stop %s failed: %s", task.id, e)

    def _reconcile(self, now: float) -> None:
        with self.store.session() as s:
            jobs = repo.jobs_in_states(s, [JobState.PENDING.value, JobState.RUNNING.value])
            running_ids = [j.id for j in jobs if j.state == JobState.RUNNING.value]
            by_job: dict[str, list[TaskRow]] = defaultdict(list)
            if running_ids:
                for t in s.execute(select(TaskRow).where(TaskRow.job_id.in_(running_ids))).scalars():
                    by_job[t.job_id].append(t)
            for job in jobs:
                if job.state == JobState.PENDING.value:
                    if job.cancel_requested:
                        repo.set_job_state(s, job, JobState.CANCELLED, message="cancelled while pending", now=now)
                    continue
                tasks = sorted((t for t in by_job[job.id] if t.attempt == job.attempt), key=lambda t: t.index)
                self._reconcile_running(s, job, tasks, now)

    def _reconcile_running(self, s: Session, job: JobRow, tasks: list[TaskRow], now: float) -> None:
        active = [t for t in tasks if not TaskState(t.state).terminal]
        grace = self.settings.stop_grace_s
        if job.cancel_requested:
            for t in active:
                self._stop(s, t, STOP_CANCEL, grace)
            if not any(not TaskState(t.state).terminal for t in tasks):
                repo.set_job_state(s, job, JobState.CANCELLED, message="cancelled by user", now=now)
            return
        for t in active:
            self._check_heartbeat(s, t, now)
        failed = [t for t in tasks if t.state in (TaskState.FAILED.value, TaskState.LOST.value)]
        requeued = [t for t in tasks if t.state == TaskState.PREEMPTED.value]
        if failed or requeued:
            for t in active:
                self._stop(s, t, STOP_GANG if failed else STOP_PREEMPT, grace)
            if any(not TaskState(t.state).terminal for t in tasks):
                return
            if failed:
                self._job_failed(s, job, failed[0], now)
            else:
                reasons = {t.stop_reason for t in requeued}
                if STOP_PREEMPT in reasons:
                    job.preemptions += 1
                why = "preempted" if STOP_PREEMPT in reasons else "control plane restarted before launch"
                repo.set_job_state(s, job, JobState.PENDING, message=f"{why}; requeued", now=now)
            return
        if tasks and all(t.state == TaskState.SUCCEEDED.value for t in tasks):
            job.message = ""
            repo.set_job_state(s, job, JobState.SUCCEEDED, now=now)

    def _check_heartbeat(self, s: Session, task: TaskRow, now: float) -> None:
        """Stop ``task`` as hung if it reported once and has been silent past its timeout."""
        timeout = task.heartbeat_timeout_s
        if (
            not timeout or timeout <= 0 or task.heartbeat_at is None or task.stop_reason is not None
            or task.state != TaskState.RUNNING.value
        ):
            return
        silent_s = now - max(task.heartbeat_at, self._watch_since)
        if silent_s <= timeout:
            return
        reason = f"no heartbeat for {timeout:g} s"
        task.error_reason = reason
        log.warning("task %s is hung (%s); stopping it", task.id, reason)
        repo.add_event(s, task.job_id, "hung", f"task {task.index}: {reason}", task_id=task.id, now=now)
        self._stop(s, task, STOP_HUNG, self.settings.stop_grace_s)

    def _job_failed(self, s: Session, job: JobRow, task: TaskRow, now: float) -> None:
        job.failures += 1
        what = task.message or f"task {task.index} {task.state.lower()}"
        detail = f"task {task.index} (attempt {task.attempt}): {what}"
        max_retries = int(job.spec.get("max_retries", 0))
        if job.failures <= max_retries:
            base = float(job.spec.get("retry_backoff_s", 1.0))
            backoff = min(self.settings.max_retry_backoff_s, base * 2 ** (job.failures - 1))
            job.not_before = now + backoff
            msg = f"retry {job.failures} of {max_retries} in {backoff:g}s after failure: {detail}"
            repo.set_job_state(s, job, JobState.PENDING, message=msg, now=now)
        else:
            suffix = f" (after {max_retries} retries)" if max_retries else ""
            repo.set_job_state(s, job, JobState.FAILED, message=detail + suffix, now=now)

    # -- scheduling --------------------------------------------------------------------
    def _schedule(self, now: float) -> None:
        nodes = self.nodes()
        with self.store.session() as s:
            active = repo.active_tasks(s)
            pending = [
                j for j in repo.jobs_in_states(s, [JobState.PENDING.value]) if not j.cancel_requested
            ]
            eligible = [j for j in pending if j.not_before <= now]
            snapshot = build_snapshot(s, nodes, active, eligible, now)
        self._update_device_stats(nodes, active)
        plan = Plan()
        if eligible:
            t0 = time.perf_counter()
            plan = self.scheduler.schedule(snapshot, now)
            took = time.perf_counter() - t0
            self.stats.last_schedule_s = took
            if self._on_schedule:
                self._on_schedule(took)
        for pre in plan.preemptions:
            with self.store.session() as s:
                task = s.get(TaskRow, pre.task_id)
                if task is not None and not TaskState(task.state).terminal:
                    repo.add_event(s, task.job_id, "preempt", pre.reason, task_id=task.id)
                    self._stop(s, task, STOP_PREEMPT, pre.grace_s)
        placed = set()
        for placement in plan.placements:
            placed.add(placement.job_id)
            self._start(placement, nodes, now)
        if not pending:
            return
        with self.store.session() as s:
            # One query for all still-pending rows (not one per job): this runs every tick.
            for row in repo.jobs_in_states(s, [JobState.PENDING.value]):
                if row.id in placed:
                    continue
                if row.not_before > now:
                    why = f"retrying after backoff, not before {time.strftime('%H:%M:%S', time.localtime(row.not_before))}"
                else:
                    why = plan.pending_reasons.get(row.id, "waiting for the next scheduling pass")
                if row.pending_reason != why:
                    row.pending_reason = why

    def _update_device_stats(self, nodes: Sequence[Node], active: Sequence[TaskRow]) -> None:
        total: dict[str, int] = defaultdict(int)
        types: dict[tuple[str, str], str] = {}
        for n in nodes:
            for d in n.devices:
                total[d.type] += 1
                types[(n.id, d.id)] = d.type
        alloc: dict[str, int] = defaultdict(int)
        for t in active:
            for dev_id in t.device_ids:
                alloc[types.get((t.node_id, dev_id), "unknown")] += 1
        self.stats.devices_total = dict(total)
        self.stats.devices_allocated = dict(alloc)

    def _start(self, placement: Placement, nodes: Sequence[Node], now: float) -> None:
        """Record the attempt's tasks (STARTING), then launch them one by one."""
        addr = {n.id: n.labels.get("address", "127.0.0.1") for n in nodes}
        launches: list[TaskLaunch] = []
        with self.store.session() as s:
            job = repo.get_job(s, placement.job_id, for_update=True)
            if job.state != JobState.PENDING.value or job.cancel_requested:
                return
            job.attempt += 1
            job.pending_reason = ""
            first_start = job.started_at is None
            repo.set_job_state(s, job, JobState.RUNNING, message="", now=now)
            job.message = ""
            L.write_spec(self.home, job.id, job.spec)
            master = placement.tasks[0].node_id if placement.tasks else ""
            master_port = L.free_port()
            for tp in placement.tasks:
                log_file = L.log_path(self.home, job.id, tp.task_index, job.attempt)
                task = repo.insert_task(
                    s, job_id=job.id, index=tp.task_index, attempt=job.attempt, node_id=tp.node_id,
                    device_ids=tp.device_ids, cpus=tp.cpus, memory_gib=tp.memory_gib,
                    log_path=str(log_file), now=now,
                )
                task.heartbeat_timeout_s = self.settings.heartbeat_timeout_s
                _, secret = tokrepo.create_token(s, tenant=job.tenant, role=tokrepo.TASK_ROLE,
                                                 name=f"task {task.id}", task_id=task.id, now=now)
                env = L.task_env(
                    home=self.home, url=self.url, token=secret, job_id=job.id, task_id=task.id,
                    index=tp.task_index, num_tasks=job.num_tasks, attempt=job.attempt, spec=job.spec,
                    cpus=tp.cpus, master_addr=addr.get(master, "127.0.0.1"), master_port=master_port,
                    checkpoint=job.checkpoint or {},
                )
                node = next((n for n in nodes if n.id == tp.node_id), None)
                by_id = {d.id: d.index for d in node.devices} if node else {}
                launches.append(TaskLaunch(
                    task_id=task.id, job_id=job.id, attempt=job.attempt, node_id=tp.node_id,
                    device_ids=tuple(tp.device_ids), device_indices=tuple(by_id.get(d, 0) for d in tp.device_ids),
                    cpus=tp.cpus, memory_gib=tp.memory_gib, command=tuple(L.task_command(job.spec)),
                    env=env, workdir=job.spec.get("workdir"), log_path=str(log_file),
                    gang_size=job.num_tasks, gang_index=tp.task_index,
                ))
            wait_s = now - job.submitted_at
        if first_start and self._on_job_started:
            self._on_job_started(wait_s)
        for spec in launches:
            self._launch_one(spec)

    def _launch_one(self, spec: TaskLaunch) -> None:
        try:
            handle = self.backend.launch(spec)
        except Exception as e:  # BackendError, or an OSError the backend did not wrap
            why = e.message if isinstance(e, BackendError) else f"{type(e).__name__}: {e}"
            log.warning("launch of %s failed: %s", spec.task_id, why)
            with self.store.session() as s:
                task = repo.get_task(s, spec.task_id)
                repo.set_task_state(s, task, TaskState.FAILED, message=f"launch failed: {why}")
            return
        with self.store.session() as s:
            task = repo.get_task(s, spec.task_id)
            task.handle = {"backend": handle.backend, "ref": dict(handle.ref)}
            if task.state == TaskState.STARTING.value:
                repo.set_task_state(s, task, TaskState.RUNNING)

