"""Incremental runs: cursor from the data, capped at portal time, inclusive re-read, one request when nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connector.emulator import new_portal
from jobs.sync import state as st
from mappings import tables
from tests.conftest import FakeClock
from tests.jobs.sync.conftest import assert_mirror, client_of, requests_of, rows, snapshot, sync

ROOT = Path(__file__).resolve().parents[3]
UTC = timezone.utc


def portal_with_clock(tz: str = "+03:00") -> tuple[Any, FakeClock]:
    """A fresh portal whose clock only moves when the test says so."""
    portal = new_portal(tz)
    clock = FakeClock()
    portal.clock = clock
    return portal, clock


def deal_state(engine: Any) -> st.StreamState:
    with engine.connect() as conn:
        return st.load(conn, "deal")


def test_a_run_with_no_change_costs_one_request_and_writes_nothing(make_emulator: Any, mirror_engine: Any) -> None:
    server = make_emulator(seed=5, deals=150)
    assert sync(server, mirror_engine).ok
    before, served = snapshot(mirror_engine), requests_of(server)
    result = sync(server, mirror_engine)
    assert result.ok and result.requests == 1 and requests_of(server) - served == 1
    assert result.written == 0
    assert snapshot(mirror_engine) == before  # every table but the run log, synced_at included


def test_an_edit_in_the_same_second_as_the_cursor_is_picked_up(make_emulator: Any, mirror_engine: Any) -> None:
    portal, clock = portal_with_clock()
    app = make_emulator(portal, http=False, clock=clock)
    client = client_of(app)
    first = client.result("crm.deal.add", {"fields": {"TITLE": "first"}})
    second = client.result("crm.deal.add", {"fields": {"TITLE": "second"}})
    assert sync(app, mirror_engine).ok
    cursor = deal_state(mirror_engine).cursor_at
    assert cursor == datetime.fromtimestamp(clock.now, UTC).replace(microsecond=0)
    # the same second, an ID below the last one read, then the last one again
    client.call("crm.deal.update", {"id": first, "fields": {"TITLE": "first, edited in the same second"}})
    client.call("crm.deal.update", {"id": second, "fields": {"COMMENTS": "also"}})
    result = sync(app, mirror_engine)
    assert result.ok and result.entities["deal"].updated == 2
    titles = {r["id"]: (r["title"], r["comments"]) for r in rows(mirror_engine, tables.crm_deal)}
    assert titles == {first: ("first, edited in the same second", None), second: ("second", "also")}
    assert deal_state(mirror_engine).cursor_at == cursor


def test_a_change_during_the_run_is_read_by_the_next_one(make_emulator: Any, mirror_engine: Any, wrap_method: Any) -> None:
    portal, clock = portal_with_clock()
    app = make_emulator(portal, http=False, clock=clock)
    client = client_of(app)
    ids = [client.result("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(120)]
    assert sync(app, mirror_engine).ok
    clock.advance(60)
    client.batch([("crm.deal.update", {"id": i, "fields": {"COMMENTS": "changed before the run"}}) for i in ids[:80]])
    changed: list[int] = []

    def change_a_record_already_read(call: Any, handler: Any) -> Any:
        bound = (call.param("filter") or {}).get(">ID")
        if not changed and bound not in (None, "", 0, "0"):  # the run is past its first page
            clock.advance(1)
            client.call("crm.deal.update", {"id": ids[3], "fields": {"TITLE": "changed during the run"}})
            changed.append(ids[3])
        return handler(call)

    wrap_method("crm.deal.list", change_a_record_already_read)
    result = sync(app, mirror_engine)
    assert result.ok and changed and result.entities["deal"].updated == 80
    assert deal_state(mirror_engine).cursor_at <= datetime.fromtimestamp(clock.now - 1, UTC)  # the cap: when the run began
    assert sync(app, mirror_engine).ok
    by_id = {r["id"]: r["title"] for r in rows(mirror_engine, tables.crm_deal)}
    assert by_id[ids[3]] == "changed during the run"
    assert_mirror(mirror_engine, app)


def test_a_cursor_in_the_future_fetches_nothing_and_keeps_the_state(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    client.result("crm.deal.add", {"fields": {"TITLE": "a"}})
    assert sync(app, mirror_engine).ok
    state = deal_state(mirror_engine)
    future = datetime.now(UTC) + timedelta(days=3)
    state.cursor_at = future
    with mirror_engine.begin() as conn:
        st.save(conn, state)
    kept = deal_state(mirror_engine)
    result = sync(app, mirror_engine)
    assert result.ok and result.entities["deal"].fetched == 0 and result.entities["deal"].written == 0
    assert deal_state(mirror_engine) == kept


def test_a_future_date_modify_cannot_push_the_cursor_past_changes_to_come(make_emulator: Any, mirror_engine: Any) -> None:
    portal, clock = portal_with_clock()
    app = make_emulator(portal, http=False, clock=clock)
    client = client_of(app)
    early = client.result("crm.deal.add", {"fields": {"TITLE": "early"}})
    start = clock.now
    clock.advance(86_400)  # someone's clock ran a day ahead when this deal was saved
    client.result("crm.deal.add", {"fields": {"TITLE": "from the future"}})
    clock.now = start + 10
    assert sync(app, mirror_engine).ok
    state = deal_state(mirror_engine)
    assert state.cursor_at <= datetime.fromtimestamp(clock.now, UTC)  # capped at the portal's time of the run
    clock.advance(30)
    client.call("crm.deal.update", {"id": early, "fields": {"TITLE": "edited later, still before the future one"}})
    assert sync(app, mirror_engine).ok
    titles = {r["title"] for r in rows(mirror_engine, tables.crm_deal)}
    assert titles == {"edited later, still before the future one", "from the future"}


def test_a_thousand_changed_deals_cost_at_most_four_requests(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    client.batch([("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(1100)])
    client.batch([("crm.lead.add", {"fields": {"TITLE": f"l{i}"}}) for i in range(30)])
    assert sync(app, mirror_engine).ok
    stages = [s["STATUS_ID"] for s in client.result("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})]
    changed = sorted(app.portal.records["deal"])[50:1050]
    client.batch([("crm.deal.update", {"id": d, "fields": {"TITLE": f"changed {d}", "STAGE_ID": stages[1 + d % 3]}}) for d in changed])
    result = sync(app, mirror_engine)
    assert result.ok, result.error
    assert result.entities["deal"].updated == 1000 and result.entities["deal_stage_history"].inserted == 1000
    assert result.requests <= 4, result.to_json()  # the probe, the deals, their history rows
    assert_mirror(mirror_engine, app)


def test_a_host_in_utc_misses_nothing_of_a_portal_in_plus_three(make_emulator: Any, mirror_url: str, tmp_path: Path) -> None:
    """The sync runs in a subprocess whose host clock is UTC (then New York); the portal lives at +03:00."""
    portal = new_portal("+03:00")
    server = make_emulator(portal)
    client = client_of(server)
    ids = [client.result("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(5)]

    def run_sync_as(tz: str) -> None:
        env = {**os.environ, "TZ": tz, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "jobs.cli", "sync", "--webhook", server.url, "--db", mirror_url, "--format", "json"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    run_sync_as("UTC")
    client.call("crm.deal.update", {"id": ids[0], "fields": {"TITLE": "edited after the first run"}})
    client.call("crm.deal.update", {"id": ids[1], "fields": {"TITLE": "edited after the second run"}})
    run_sync_as("America/New_York")
    from mappings import db

    engine = db.open_engine(mirror_url)
    try:
        titles = {r["id"]: r["title"] for r in rows(engine, tables.crm_deal)}
        assert titles[ids[0]] == "edited after the first run" and titles[ids[1]] == "edited after the second run"
        with engine.connect() as conn:
            assert conn.execute(sa.select(tables.b24sync_portal.c.timezone)).scalar() == "+03:00"
    finally:
        engine.dispose()


def test_a_new_portal_offset_misses_nothing(make_emulator: Any, mirror_engine: Any) -> None:
    """The portal's offset changes (DST ends: +03:00 -> +02:00) between two runs."""
    from connector.envelope import parse_offset

    portal, clock = portal_with_clock("+03:00")
    app = make_emulator(portal, http=False, clock=clock)
    client = client_of(app)
    ids = [client.result("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(3)]
    assert sync(app, mirror_engine).ok
    portal.tz_text, portal.tz = "+02:00", parse_offset("+02:00")
    clock.advance(1)
    client.call("crm.deal.update", {"id": ids[2], "fields": {"TITLE": "after the change of offset"}})
    result = sync(app, mirror_engine)
    assert result.ok and result.entities["deal"].updated == 1
    assert_mirror(mirror_engine, app)
    with mirror_engine.connect() as conn:
        assert conn.execute(sa.select(tables.b24sync_portal.c.timezone)).scalar() == "+02:00"
