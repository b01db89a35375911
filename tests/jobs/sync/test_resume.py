"""Atomic progress: pages commit with their state; a killed, stopped or failed run resumes where it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connector.emulator.registry import ApiError
from jobs.sync import run_sync, state as st
from jobs.sync.result import INTERRUPTED
from mappings import db, tables
from tests.jobs.sync.conftest import assert_mirror, client_of, count, rows, sync

ROOT = Path(__file__).resolve().parents[3]


def _deal_state(engine: Any) -> st.StreamState:
    with engine.connect() as conn:
        return st.load(conn, "deal")


def test_a_sync_killed_with_sigkill_resumes_where_it_stopped(make_emulator: Any, mirror_url: str) -> None:
    server = make_emulator(seed=9, deals=300, latency=1.5)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "jobs.cli", "sync", "--webhook", server.url, "--db", mirror_url, "--format", "json"]
    engine = db.open_engine(mirror_url)
    try:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill it once some pages are in, not all
            time.sleep(0.05)
            if db.current(engine) == db.head() and count(engine, tables.crm_deal) > 0:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        partial = count(engine, tables.crm_deal)
        assert 0 < partial < len(server.portal.records["deal"])
        state = _deal_state(engine)
        assert state.window_open and state.window_last_id  # the window's position was committed with its pages
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        with engine.connect() as conn:
            statuses = {r[0] for r in conn.execute(sa.select(tables.b24sync_run.c.status))}
        assert "interrupted" in statuses  # the killed run's rows are closed by the next one
        assert_mirror(engine, server.app)
    finally:
        engine.dispose()


def test_a_failed_page_is_never_committed(make_emulator: Any, mirror_engine: Any, wrap_method: Any) -> None:
    app = make_emulator(seed=9, deals=400, http=False)
    calls: list[int] = []
    broken = [True]

    def fails_past_the_first_batch(call: Any, handler: Any) -> Any:
        bound = (call.param("filter") or {}).get(">ID")
        if broken[0] and bound not in (None, "", 0, "0") and int(bound) > 300:
            calls.append(int(bound))
            raise ApiError("", "Access denied.", 403)  # a fatal command error, never retried
        return handler(call)

    wrap_method("crm.deal.list", fails_past_the_first_batch)
    result = sync(app, mirror_engine)
    assert result.status == "failed" and result.entities["deal"].status == "failed" and calls
    assert result.entities["lead"].status == "ok"  # the other streams went on
    stored = {r["id"] for r in rows(mirror_engine, tables.crm_deal)}
    state = _deal_state(mirror_engine)
    assert stored and max(stored) <= state.window_last_id <= 300 and state.cursor_at is None
    broken[0] = False
    assert sync(app, mirror_engine).ok
    assert_mirror(mirror_engine, app)


def test_stop_commits_and_returns_interrupted(make_emulator: Any, mirror_engine: Any) -> None:
    server = make_emulator(seed=9, deals=400, latency=0.5)
    stop = threading.Event()

    class StopAfterAPage:
        def begin(self, *args: Any) -> None:
            """Nothing."""

        def advance(self, stream: str, rows: int, position: Any) -> None:
            if stream == "deal":
                stop.set()

        def end(self, *args: Any) -> None:
            """Nothing."""

    client = client_of(server)
    result = run_sync(client, mirror_engine, stop=stop, progress=StopAfterAPage())
    assert result.status == INTERRUPTED
    assert 0 < count(mirror_engine, tables.crm_deal) < len(server.portal.records["deal"])
    assert _deal_state(mirror_engine).window_open
    assert sync(server, mirror_engine).ok
    assert_mirror(mirror_engine, server.app)


def test_the_run_log_keeps_ninety_days_and_the_last_row_of_each_stream(make_emulator: Any, mirror_engine: Any) -> None:
    from datetime import datetime, timedelta, timezone

    app = make_emulator(seed=3, deals=20, http=False)
    assert sync(app, mirror_engine, entities="deal").ok
    long_ago = datetime.now(timezone.utc) - timedelta(days=200)
    recent = datetime.now(timezone.utc) - timedelta(days=10)
    old = {"job": "sync", "status": "ok", "started_at": long_ago, "finished_at": long_ago}
    with mirror_engine.begin() as conn:
        conn.execute(tables.b24sync_run.insert(), [
            {**old, "run_id": "old-deal", "entity": "deal"},
            {**old, "run_id": "recent-deal", "entity": "deal", "started_at": recent, "finished_at": recent},
            {**old, "run_id": "old-company", "entity": "company"},  # the only row of its stream: kept
            {**old, "run_id": "older-company", "entity": "company", "started_at": long_ago - timedelta(days=1)},
        ])
    assert sync(app, mirror_engine, entities="deal").ok
    runs = {r["run_id"] for r in rows(mirror_engine, tables.b24sync_run)}
    assert "old-deal" not in runs and "older-company" not in runs
    assert {"recent-deal", "old-company"} <= runs
    assert len({r["run_id"] for r in rows(mirror_engine, tables.b24sync_run) if r["entity"] == "deal"}) == 3
