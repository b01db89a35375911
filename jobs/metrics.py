"""The worker's health for operators: Prometheus metrics (official ``prometheus_client``) and ``/healthz``.

``Metrics`` counts job runs, rows and failures as they finish and reads live figures (lag, HTTP
requests, 503/429 replies, next runs) at scrape time; ``Health`` says whether the scheduler runs and
the last runs did not fail; ``serve`` answers ``/metrics`` and ``/healthz`` on one port.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CHANGES = ("fetched", "inserted", "updated", "deleted")
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_COUNTERS = (("requests", "b24sync_http_requests", "HTTP requests sent to the portal"),
                 ("503", "b24sync_http_503", "503 QUERY_LIMIT_EXCEEDED replies from the portal (the request was retried)"),
                 ("429", "b24sync_http_429", "429 OPERATION_TIME_LIMIT replies from the portal (the method was paused)"))


class Metrics:
    """Every figure the worker exports, in a registry of its own (``registry``)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        labels = ["portal", "job"]
        self.runs = Counter("b24sync_job_runs", "Job runs by outcome: ok, failed, interrupted, skipped (lease held elsewhere)",
                            [*labels, "status"], registry=self.registry)
        self.failures = Counter("b24sync_job_failures", "Job runs that failed", labels, registry=self.registry)
        self.duration = Histogram("b24sync_job_duration_seconds", "Wall time of job runs (skipped ones left out)", labels,
                                  buckets=DURATION_BUCKETS, registry=self.registry)
        self.rows = Counter("b24sync_rows", "Rows of the mirror handled by syncs, by entity and change "
                            "(fetched from the portal; inserted, updated, marked deleted)", ["portal", "entity", "change"],
                            registry=self.registry)
        self.last_success = Gauge("b24sync_last_success_timestamp_seconds", "Unix time the last successful run of a job ended",
                                  labels, registry=self.registry)
        self.last_run = Gauge("b24sync_last_run_timestamp_seconds", "Unix time the last run of a job ended (any outcome but skipped)",
                              labels, registry=self.registry)
        self._lock = threading.Lock()
        self._complete: dict[tuple[str, str], float] = {}
        self._clients: dict[str, Any] = {}
        self._next_runs: Callable[[], Iterable[tuple[str, str, datetime | None]]] = lambda: ()
        self._running: Callable[[], bool] = lambda: False
        self.registry.register(_Live(self))

    # ---------------------------------------------------------------- fed by the worker

    def observe(self, run: Any) -> None:
        """Count one finished ``JobRun``."""
        self.runs.labels(run.portal, run.job, run.status).inc()
        if run.status == "skipped":
            return
        self.duration.labels(run.portal, run.job).observe(run.seconds)
        ended = time.time()
        self.last_run.labels(run.portal, run.job).set(ended)
        if run.status == "failed":
            self.failures.labels(run.portal, run.job).inc()
        elif run.status == "ok":
            self.last_success.labels(run.portal, run.job).set(ended)
        for entity, result in run.entities.items():
            for change in CHANGES:
                value = getattr(result, change)
                if value:
                    self.rows.labels(run.portal, entity, change).inc(value)

    def set_complete(self, portal: str, entity: str, moment: datetime | None) -> None:
        """The moment up to which ``entity``'s mirror holds every change (``b24sync_lag_seconds`` counts from it)."""
        with self._lock:
            if moment is None:
                self._complete.pop((portal, entity), None)
            else:
                self._complete[(portal, entity)] = moment.timestamp()

    def watch_client(self, portal: str, client: Any) -> None:
        """Export a portal client's HTTP counters (requests, 503, 429) as they grow."""
        with self._lock:
            self._clients[portal] = client

    def watch_scheduler(self, running: Callable[[], bool], next_runs: Callable[[], Iterable[tuple[str, str, datetime | None]]]) -> None:
        """Export whether the scheduler runs and when each job runs next."""
        self._running, self._next_runs = running, next_runs

    # ---------------------------------------------------------------- read at scrape time

    def live(self) -> Iterator[Metric]:
        """The figures computed when Prometheus asks: lag, HTTP counters, next runs, scheduler state."""
        now = time.time()
        lag = GaugeMetricFamily("b24sync_lag_seconds", "Seconds since the moment up to which the mirror holds every change "
                                "of the entity (the start of its last successful sync)", labels=["portal", "entity"])
        with self._lock:
            complete = dict(self._complete)
            clients = dict(self._clients)
        for (portal, entity), moment in sorted(complete.items()):
            lag.add_metric([portal, entity], max(0.0, now - moment))
        yield lag
        for key, name, text in HTTP_COUNTERS:
            family = CounterMetricFamily(name, text, labels=["portal"])
            for portal, client in sorted(clients.items()):
                family.add_metric([portal], float(getattr(client, "counters", {}).get(key, 0)))
            yield family
        upcoming = GaugeMetricFamily("b24sync_next_run_timestamp_seconds", "Unix time a job runs next", labels=["portal", "job"])
        for portal, job, moment in self._next_runs():
            if moment is not None:
                upcoming.add_metric([portal, job], moment.timestamp())
        yield upcoming
        yield GaugeMetricFamily("b24sync_scheduler_running", "1 while the worker's scheduler runs", value=1.0 if self._running() else 0.0)


class _Live:
    """A collector that asks ``Metrics.live`` at every scrape."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        """The live figures."""
        return self.metrics.live()


@dataclass
class Health:
    """``/healthz``: healthy while the scheduler runs and the last run of every job did not fail."""

    running: bool = False
    last: dict[tuple[str, str], Any] = field(default_factory=dict)  # (portal, job) -> the last JobRun that was not skipped
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, run: Any) -> None:
        """Remember a finished run (a skipped one says nothing about health)."""
        if run.status != "skipped":
            with self._lock:
                self.last[(run.portal, run.job)] = run

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON body of ``/healthz``)."""
        with self._lock:
            last = dict(self.last)
        failed = sorted(f"{portal} {job}" for (portal, job), run in last.items() if run.status == "failed")
        healthy = self.running and not failed
        jobs = [{"portal": portal, "job": job, "status": run.status, "started_at": run.started_at.isoformat(), "error": run.error}
                for (portal, job), run in sorted(last.items())]
        return healthy, {"healthy": healthy, "scheduler": "running" if self.running else "stopped", "failed": failed, "jobs": jobs}


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Scrapes are not logged."""


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 or 503, JSON) served in a background thread."""

    def __init__(self, metrics: Metrics, health: Health, host: str = "0.0.0.0", port: int = 0):
        self.metrics = metrics
        self.health = health
        self._prometheus = make_wsgi_app(metrics.registry)
        self._httpd = make_server(host, port, self._route, server_class=_ThreadingServer, handler_class=_QuietHandler)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="b24sync-metrics", daemon=True)

    def _route(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/healthz":
            healthy, body = self.health.check()
            data = (json.dumps(body, ensure_ascii=False) + "\n").encode()
            start_response("200 OK" if healthy else "503 Service Unavailable",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if path in ("/metrics", "/"):
            return self._prometheus(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    def start(self) -> "MetricsServer":
        """Serve in a daemon thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
