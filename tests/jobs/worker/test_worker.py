"""One worker's life on a seconds-scale schedule, against an emulator served over HTTP from this process.

SIGTERM in the middle of the first load (exit 0, the run log says interrupted, only whole pages
committed); a restart resumes from the committed window; the mirror follows the portal; reports
appear; /metrics equals the run log; /healthz turns 503 on a failed run and 200 again when the
next tick succeeds; no log line holds the webhook code.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mappings import tables
from tests.conftest import WEBHOOK_CODE
from tests.jobs.worker.conftest import assert_mirror, client_of, eventually, rows, runs, table_count, write_config

DEALS = 300  # more than the probe's first page: the first load of deals takes a second request


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:  # noqa: S310 - loopback
        text = reply.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def health(port: int) -> tuple[int, dict[str, Any]]:
    """``/healthz``: (status, body)."""
    try:
        with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:  # noqa: S310 - loopback
            return reply.status, json.loads(reply.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    """One sample's value (0 when it is not there yet)."""
    return samples.get((name, tuple(sorted({"portal": "acme", **labels}.items()))), 0.0)


def run_log_matches(samples: dict[Any, float], engine: Any, worker: str, http_requests: int) -> list[str]:
    """What differs between the scraped figures and the run log of this worker (empty: they match)."""
    mine = [r for r in runs(engine) if r.worker == worker]
    syncs = [r for r in mine if r.jobs == {"sync"} and r.finished is not None]
    reports = [r for r in mine if r.jobs == {"report"}]
    problems = []
    ok_syncs = [r for r in syncs if set(r.statuses.values()) == {"ok"}]
    if metric(samples, "b24sync_job_runs_total", job="sync", status="ok") != len(ok_syncs):
        problems.append(f"sync runs: {metric(samples, 'b24sync_job_runs_total', job='sync', status='ok')} != {len(ok_syncs)}")
    ok_reports = [r for r in reports if r.statuses.get("funnels") == "ok"]
    if metric(samples, "b24sync_job_runs_total", job="report", status="ok") != len(ok_reports):
        problems.append("report runs differ")
    log = [r for r in rows(engine, tables.b24sync_run) if r["worker"] == worker and r["job"] == "sync"]
    for entity in ("deal", "lead", "deal_stage_history", "user"):
        for change in ("fetched", "inserted", "updated"):
            want = sum(r[change] for r in log if r["entity"] == entity)
            if metric(samples, "b24sync_rows_total", entity=entity, change=change) != want:
                problems.append(f"{entity} {change}: {metric(samples, 'b24sync_rows_total', entity=entity, change=change)} != {want}")
    if metric(samples, "b24sync_http_requests_total") != http_requests:
        problems.append(f"HTTP requests: {metric(samples, 'b24sync_http_requests_total')} != {http_requests}")
    last = max((r.finished for r in ok_syncs), default=None)
    success = metric(samples, "b24sync_last_success_timestamp_seconds", job="sync")
    if last is None or not last.timestamp() <= success <= last.timestamp() + 5:
        problems.append(f"last success {success} is not the last ok run's end {last}")
    return problems


@pytest.mark.parametrize("mirror_backend", ["sqlite"])
def test_a_worker_stops_cleanly_resumes_follows_the_portal_and_reports(make_emulator: Any, serve: Any, make_mirror: Any,
                                                                       start_worker: Any, tmp_path: Any) -> None:
    app = make_emulator(seed=31, deals=DEALS, http=False)
    total = len(app.portal.records["deal"])
    served = serve(app, delay=2.0)
    url, engine = make_mirror(upgraded=False)
    config = write_config(tmp_path, "acme", served.url, url, sync_every_seconds=1, reports_dir="reports")
    reports = tmp_path / "reports"

    # SIGTERM while the first run waits for its first reply: it commits the first page of every stream and stops
    first = start_worker("--config", str(config), name="first")
    first.wait_for(lambda w: served.log.begun, "the first request")
    assert first.stop() == 0
    [stopped] = runs(engine)
    assert stopped.statuses["deal"] == "interrupted" and stopped.finished is not None
    assert [e["status"] for e in first.jobs(job="sync") if e["status"] != "skipped"] == ["interrupted"]
    assert {e["error"] for e in first.jobs(job="sync", status="skipped")} <= {"the previous run of this job is still running"}
    assert [e["event"] for e in first.events() if e.get("event") in ("signal", "stopped")] == ["signal", "stopped"]
    kept = [r["id"] for r in rows(engine, tables.crm_deal)]
    assert 0 < len(kept) < total
    assert kept == sorted(app.portal.records["deal"])[: len(kept)]  # whole pages, in keyset order, nothing else
    [state] = rows(engine, tables.b24sync_state, tables.b24sync_state.c.stream == "deal")
    assert state["window_last_id"] == kept[-1] and state["window_cap"] is not None  # the window's position, committed
    assert not reports.exists() or not list(reports.iterdir())  # no report after an interrupted sync

    # restart: the open window continues from where it stopped; then every second a sync, and a report after it
    served.log.delay = 0.0
    before = len(served.log.requests)
    second = start_worker("--config", str(config), "--metrics-port", "0", "--metrics-host", "127.0.0.1", name="second")
    port = second.wait_for(lambda w: next((e["port"] for e in w.events() if e.get("event") == "metrics"), None), "the metrics port")
    name = second.wait_for(lambda w: next((e["worker"] for e in w.events() if e.get("event") == "started"), None), "the start")
    second.wait_for(lambda w: w.jobs(job="sync", status="ok"), "a successful sync")
    resumed = next(r for r in runs(engine) if r.worker == name)
    assert 0 < resumed.fetched["deal"] <= total - len(kept) + 1  # the rest of the window, not the whole portal again
    assert table_count(engine, tables.crm_deal) == total
    assert_mirror(engine, app)

    second.wait_for(lambda w: (reports / "deal-funnel-default.html").exists() and (reports / "lead-funnel.csv").exists(),
                    "the reports")
    names = {p.name for p in reports.iterdir()}
    assert {"deal-funnel-default.html", "deal-funnel-default.csv", "lead-funnel.html", "lead-funnel.csv"} <= names
    assert any(re.fullmatch(r"deal-funnel-default-\d{4}-\d{2}-\d{2}\.html", n) for n in names)
    assert any(re.fullmatch(r"lead-funnel-\d{4}-\d{2}-\d{2}\.csv", n) for n in names)
    assert not [n for n in names if n.endswith(".tmp")]
    assert "<svg" in (reports / "deal-funnel-default.html").read_text(encoding="utf-8")

    # the mirror follows the portal
    client = client_of(app)
    deal = sorted(app.portal.records["deal"])[7]
    client.call("crm.deal.update", {"id": deal, "fields": {"TITLE": "Renamed on the portal"}})
    lead = int(client.result("crm.lead.add", {"fields": {"TITLE": "A new lead", "SOURCE_ID": "WEB"}}))
    eventually(lambda: [r["title"] for r in rows(engine, tables.crm_deal, tables.crm_deal.c.id == deal)] == ["Renamed on the portal"]
               and rows(engine, tables.crm_lead, tables.crm_lead.c.id == lead), "the change in the mirror", alive=second)

    # /metrics says what the run log says (polled: a run in flight makes them differ for a moment)
    eventually(lambda: not run_log_matches(scrape(port), engine, name, len(served.log.requests) - before),
               "metrics equal to the run log", alive=second)
    samples = scrape(port)
    assert metric(samples, "b24sync_lag_seconds", entity="deal") >= 0 and ("b24sync_lag_seconds", (("entity", "deal"), ("portal", "acme"))) in samples
    assert samples[("b24sync_scheduler_running", ())] == 1
    assert health(port)[0] == 200

    # a failed run is logged, counted and retried at the next tick; the worker lives on
    del app.webhooks[WEBHOOK_CODE]
    failed = second.wait_for(lambda w: w.jobs(job="sync", status="failed"), "a failed sync")[0]
    assert "refused the credentials" in failed["error"]
    status, body = health(port)
    assert status == 503 and body["failed"] == ["acme sync"]
    assert metric(scrape(port), "b24sync_job_failures_total", job="sync") >= 1
    app.add_webhook(WEBHOOK_CODE)
    eventually(lambda: health(port)[0] == 200, "healthy again after the next tick", alive=second)

    assert second.stop() == 0
    for worker in (first, second):
        text = worker.text()
        assert WEBHOOK_CODE not in text
        for event in worker.jobs():
            assert {"portal", "job", "status", "seconds", "fetched", "inserted", "updated", "deleted", "requests"} <= set(event)


def test_sigusr1_dumps_the_stacks_and_a_second_signal_exits_at_once(make_emulator: Any, serve: Any, make_mirror: Any,
                                                                    start_worker: Any, tmp_path: Any) -> None:
    import signal
    import time

    from jobs.errors import EXIT_INTERRUPTED

    app = make_emulator(seed=32, deals=DEALS, http=False)
    served = serve(app, delay=60.0)  # every reply takes a minute: the first stop cannot finish in time
    url, engine = make_mirror(upgraded=False)
    config = write_config(tmp_path, "acme", served.url, url, sync_every_seconds=1)
    worker = start_worker("--config", str(config), name="hung")
    worker.wait_for(lambda w: served.log.begun, "the first request")

    worker.process.send_signal(signal.SIGUSR1)  # a look inside: every thread's stack, and the worker lives on
    # the dump is written while we read: wait until it shows where the sync waits (in the transport)
    worker.wait_for(lambda w: "Thread 0x" in w.text() and "transport.py" in w.text(), "the stack dump")
    assert worker.process.poll() is None

    worker.process.send_signal(signal.SIGTERM)  # waits for a reply that takes a minute ...
    worker.wait_for(lambda w: any(e.get("event") == "signal" for e in w.events()), "the first signal logged")
    began = time.monotonic()
    assert worker.stop(signal.SIGTERM) == EXIT_INTERRUPTED  # ... the second one does not wait
    assert time.monotonic() - began < 30
    assert "second signal" in worker.text()

    served.log.delay = 0.0  # what was committed stays; the next worker completes the mirror
    again = start_worker("--config", str(config), name="again")
    again.wait_for(lambda w: w.jobs(job="sync", status="ok"), "a successful sync")
    assert again.stop() == 0
    assert table_count(engine, tables.crm_deal) == len(app.portal.records["deal"])
    assert_mirror(engine, app)
