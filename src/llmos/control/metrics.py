"""Prometheus metrics of one control plane, on its own registry.

Counts that live in the store (jobs by state, queue length) are read at scrape
time by a collector, so they are right even after a restart; latencies are
histograms fed by the loop.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from llmos.control.controller import JobController
from llmos.core.states import JobState
from llmos.store import Store
from llmos.store import jobs as repo

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StoreCollector(Collector):
    def __init__(self, store: Store, controller: JobController) -> None:
        self.store = store
        self.controller = controller

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.store.session() as s:
            counts = repo.count_jobs_by_state(s)
        jobs = GaugeMetricFamily("llmos_jobs", "Jobs by state", labels=["state"])
        for st in JobState:
            jobs.add_metric([st.value], counts.get(st.value, 0))
        yield jobs
        yield GaugeMetricFamily(
            "llmos_queue_length", "Jobs waiting for placement (PENDING)", value=counts.get(JobState.PENDING.value, 0)
        )
        stats = self.controller.stats
        dev = GaugeMetricFamily("llmos_devices", "Devices by type and status", labels=["type", "status"])
        for dtype, total in sorted(stats.devices_total.items()):
            used = stats.devices_allocated.get(dtype, 0)
            dev.add_metric([dtype, "allocated"], used)
            dev.add_metric([dtype, "free"], max(0, total - used))
        yield dev


class PlaneMetrics:
    """The registry plus the histograms the loop observes into."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.schedule_seconds = Histogram(
            "llmos_scheduling_latency_seconds",
            "Duration of one scheduler pass (snapshot -> plan)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.job_wait_seconds = Histogram(
            "llmos_job_wait_seconds",
            "Time from submission to first start of a job",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=self.registry,
        )

    def attach(self, store: Store, controller: JobController) -> None:
        self.registry.register(_StoreCollector(store, controller))

    def render(self) -> bytes:
        return generate_latest(self.registry)
