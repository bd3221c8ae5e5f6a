"""Prometheus metrics, one registry per app (no globals, so several apps can live in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

KNOWN_ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models")
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class Metrics:
    """Requests by status, tokens, TTFT and end-to-end latency, running/waiting requests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("swiftcli_requests", "HTTP requests to /v1 by endpoint and status code.",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("swiftcli_prompt_tokens", "Prompt tokens processed.", registry=r)
        self.generation_tokens = Counter("swiftcli_generation_tokens", "Tokens generated.", registry=r)
        self.ttft = Histogram("swiftcli_time_to_first_token_seconds", "Time from request to first token.",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("swiftcli_e2e_request_latency_seconds", "Time from request to last token.",
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.running = Gauge("swiftcli_num_requests_running", "Requests producing tokens.", registry=r)
        self.waiting = Gauge("swiftcli_num_requests_waiting", "Requests accepted, no token yet.", registry=r)
        self.engine_unfinished = Gauge("swiftcli_engine_unfinished_requests",
                                       "Requests the engine holds (running or queued).", registry=r)

    def watch_engine(self, count: Any) -> None:
        """Read the engine's own count of unfinished requests at each scrape."""
        self.engine_unfinished.set_function(count)

    def watch_replicas(self, replicas: Any) -> None:
        """Each data-parallel rank at each scrape: `replicas()` gives engines.data_parallel.ReplicaState's."""
        self.registry.register(_ReplicaCollector(replicas))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts /v1 responses by status code (pure ASGI, so streaming and disconnects are untouched)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            endpoint = path if path in KNOWN_ENDPOINTS else "other"  # bounded label values
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()


class _ReplicaCollector:
    """Per data-parallel rank: whether its process runs, and the requests in flight on it."""

    def __init__(self, replicas: Any) -> None:
        self.replicas = replicas

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        # deferred: prometheus_client loads only when needed (a light start-up)
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("swiftcli_engine_rank_up", "1 while the data-parallel engine rank runs.",
                               labels=["rank", "pid"])
        unfinished = GaugeMetricFamily("swiftcli_engine_rank_unfinished_requests",
                                       "Requests this server has in flight on each data-parallel rank.",
                                       labels=["rank"])
        for replica in self.replicas():
            up.add_metric([str(replica.rank), str(replica.pid)], 1.0 if replica.exitcode is None else 0.0)
            unfinished.add_metric([str(replica.rank)], float(replica.unfinished))
        yield up
        yield unfinished
