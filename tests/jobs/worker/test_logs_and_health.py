"""The worker's log lines (text, JSON) never carry a secret; ``Health`` and ``Metrics`` count runs as documented."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from urllib.error import HTTPError
from urllib.request import urlopen

from prometheus_client import generate_latest

from jobs.metrics import Health, Metrics, MetricsServer
from jobs.sync.result import StreamResult
from jobs.worker.logs import FIELDS, JsonFormatter, TextFormatter
from jobs.worker.runs import JobRun

WEBHOOK = "https://acme.bitrix24.ru/rest/1/s3cretc0de4321/"


def record(message: str, *args: object, fields: dict | None = None) -> logging.LogRecord:
    """A record made the way a logger makes it (through the record factory that masks secrets)."""
    return logging.getLogger("jobs.worker").makeRecord("jobs.worker", logging.INFO, __file__, 1, message, args, None,
                                                       extra={FIELDS: fields} if fields else None)


def test_json_lines_mask_secrets_in_the_message_and_in_the_fields() -> None:
    line = JsonFormatter().format(record("calling %s", WEBHOOK, fields={"event": "job", "error": f"refused at {WEBHOOK}",
                                                                         "mirror": "postgresql://u:***@db/x"}))
    data = json.loads(line)
    assert "s3cretc0de4321" not in line
    assert data["level"] == "info" and data["logger"] == "jobs.worker" and data["event"] == "job"
    assert data["time"].endswith("Z") and "/rest/1/***" in data["message"] and "/rest/1/***" in data["error"]


def test_text_lines_mask_secrets() -> None:
    line = TextFormatter().format(record("calling %s", WEBHOOK))
    assert "s3cretc0de4321" not in line and line.endswith("info jobs.worker: calling https://acme.bitrix24.ru/rest/1/***/")


def run(job: str, status: str, **counts: int) -> JobRun:
    """A finished run of portal ``acme``."""
    return JobRun("acme", job, datetime.now(timezone.utc), status=status, seconds=1.5,
                  entities={"deal": StreamResult(**counts)} if counts else {})


def test_health_is_the_last_run_of_every_job_and_the_scheduler() -> None:
    health = Health()
    assert health.check()[0] is False  # not running yet
    health.running = True
    health.record(run("sync", "ok"))
    assert health.check()[0] is True
    health.record(run("report", "failed"))
    healthy, body = health.check()
    assert not healthy and body["failed"] == ["acme report"]
    health.record(run("report", "skipped"))  # a skip says nothing
    assert health.check()[0] is False
    health.record(run("report", "ok"))
    assert health.check()[0] is True
    health.running = False
    assert health.check()[1]["scheduler"] == "stopped"


def test_metrics_count_runs_rows_failures_and_serve_healthz() -> None:
    metrics = Metrics()
    health = Health(running=True)
    for finished in (run("sync", "ok", fetched=5, inserted=3, updated=2), run("sync", "failed"), run("sync", "skipped")):
        metrics.observe(finished)
        health.record(finished)
    text = generate_latest(metrics.registry).decode()
    assert 'b24sync_job_runs_total{job="sync",portal="acme",status="ok"} 1.0' in text
    assert 'b24sync_job_runs_total{job="sync",portal="acme",status="skipped"} 1.0' in text
    assert 'b24sync_job_failures_total{job="sync",portal="acme"} 1.0' in text
    assert 'b24sync_rows_total{change="inserted",entity="deal",portal="acme"} 3.0' in text
    assert 'b24sync_job_duration_seconds_count{job="sync",portal="acme"} 2.0' in text  # skipped runs are not timed
    server = MetricsServer(metrics, health, "127.0.0.1", 0).start()
    try:
        try:
            urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10)  # noqa: S310 - loopback
            raise AssertionError("healthz should answer 503 after a failed run")
        except HTTPError as exc:
            assert exc.code == 503 and json.loads(exc.read())["failed"] == ["acme sync"]
        with urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:  # noqa: S310 - loopback
            assert b"b24sync_scheduler_running 0.0" in reply.read()
    finally:
        server.stop()
