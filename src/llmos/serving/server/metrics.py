"""Prometheus metrics of a replica, with vLLM's names under the ``llmos:`` prefix.

Engine figures (running/waiting requests, KV-cache usage, prefix-cache counters)
are read at scrape time from the snapshot each engine loop publishes after a
step; request latencies and token counts are observed by the request handlers.
Every app owns its registry, so several servers in one process (tests) do not
collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmos.serving.server.engine_loop import EngineLoop

PREFIX = "llmos:"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip


class _EngineCollector(Collector):
    def __init__(self, loops: Callable[[], Iterable[EngineLoop]]) -> None:
        self._loops = loops

    def collect(self) -> Iterable[Metric]:
        running = GaugeMetricFamily(
            f"{PREFIX}num_requests_running", "Requests in the running batch", labels=["model_name"]
        )
        waiting = GaugeMetricFamily(
            f"{PREFIX}num_requests_waiting", "Requests waiting to run", labels=["model_name"]
        )
        kv = GaugeMetricFamily(
            f"{PREFIX}kv_cache_usage_perc", "KV-cache usage, 1 = full", labels=["model_name"]
        )
        queries = CounterMetricFamily(
            f"{PREFIX}prefix_cache_queries",
            "Prompt tokens looked up in the prefix cache",
            labels=["model_name"],
        )
        hits = CounterMetricFamily(
            f"{PREFIX}prefix_cache_hits", "Prompt tokens found in the prefix cache", labels=["model_name"]
        )
        preempt = CounterMetricFamily(
            f"{PREFIX}num_preemptions", "Sequences preempted for lack of KV blocks", labels=["model_name"]
        )
        for loop in self._loops():
            s = loop.snapshot
            running.add_metric([loop.name], s.num_running)
            waiting.add_metric([loop.name], s.num_waiting)
            kv.add_metric([loop.name], s.kv_cache_usage)
            queries.add_metric([loop.name], s.prefix_cache_queries)
            hits.add_metric([loop.name], s.prefix_cache_hits)
            preempt.add_metric([loop.name], s.num_preemptions)
        yield from (running, waiting, kv, queries, hits, preempt)


class ServerMetrics:
    """The metrics of one replica app; handlers call the ``observe_*`` methods."""

    def __init__(self, loops: Callable[[], Iterable[EngineLoop]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(loops))
        labels = ["model_name"]
        self.ttft = Histogram(
            f"{PREFIX}time_to_first_token_seconds", "Time to first token", labels,
            buckets=_LATENCY_BUCKETS_S, registry=self.registry,
        )  # fmt: skip
        self.itl = Histogram(
            f"{PREFIX}inter_token_latency_seconds", "Time between output tokens", labels,
            buckets=_LATENCY_BUCKETS_S, registry=self.registry,
        )  # fmt: skip
        self.e2e = Histogram(
            f"{PREFIX}e2e_request_latency_seconds", "Request latency, arrival to last token", labels,
            buckets=_LATENCY_BUCKETS_S, registry=self.registry,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            f"{PREFIX}prompt_tokens", "Prompt tokens processed", labels, registry=self.registry
        )
        self.generation_tokens = Counter(
            f"{PREFIX}generation_tokens", "Tokens generated", labels, registry=self.registry
        )
        self.requests = Counter(
            f"{PREFIX}request_success", "Requests finished, by reason", ["model_name", "finished_reason"],
            registry=self.registry,
        )  # fmt: skip

    def observe_first_token(self, model: str, seconds: float) -> None:
        self.ttft.labels(model).observe(seconds)

    def observe_tokens(self, model: str, seconds: float, num_tokens: int) -> None:
        """An output delta of ``num_tokens`` tokens arrived ``seconds`` after the previous one."""
        if num_tokens <= 0:
            return
        per_token = seconds / num_tokens
        hist = self.itl.labels(model)
        for _ in range(num_tokens):
            hist.observe(per_token)

    def observe_finished(
        self, model: str, e2e_s: float, prompt_tokens: int, output_tokens: int, reason: str | None
    ) -> None:
        self.e2e.labels(model).observe(e2e_s)
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generation_tokens.labels(model).inc(output_tokens)
        self.requests.labels(model, reason or "unknown").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
