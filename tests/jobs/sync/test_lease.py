"""One writer per mirror: the lease (advisory lock on PostgreSQL, a row with an expiry on SQLite) and two syncs at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jobs.lease import Lease, LeaseHeld, LeaseLost
from jobs.sync.run import LEASE
from mappings import db, tables
from tests.jobs.sync.conftest import client_of, sync

ROOT = Path(__file__).resolve().parents[3]


def test_one_holder_at_a_time(mirror_engine: Any) -> None:
    first = Lease(mirror_engine, "sync", ttl=30, owner="worker-a")
    second = Lease(mirror_engine, "sync", ttl=30, owner="worker-b")
    with first:
        assert first.held_by() == "worker-a" == second.held_by()
        with pytest.raises(LeaseHeld, match="worker-a") as caught:
            second.acquire()
        assert caught.value.holder == "worker-a"
        first.renew()
        with db.begin_write(mirror_engine) as conn:
            first.fence(conn)
    assert second.held_by() is None
    with second:
        assert first.held_by() == "worker-b"
    other = Lease(mirror_engine, "report", ttl=30, owner="worker-c")  # another name is another lease
    with other, first:
        assert other.held_by() == "worker-c" and first.held_by() == "worker-a"


def test_wait_takes_the_lease_when_it_is_released(mirror_engine: Any) -> None:
    holder = Lease(mirror_engine, "sync", ttl=30, owner="first").acquire()
    threading.Timer(0.6, holder.release).start()
    started = time.monotonic()
    waiter = Lease(mirror_engine, "sync", ttl=30, owner="second").acquire(wait=20)
    try:
        assert waiter.held_by() == "second" and time.monotonic() - started >= 0.5
    finally:
        waiter.release()
    with pytest.raises(LeaseHeld):
        blocker = Lease(mirror_engine, "sync", ttl=30, owner="third").acquire()
        try:
            Lease(mirror_engine, "sync", ttl=30, owner="fourth").acquire(wait=0.3)
        finally:
            blocker.release()


def test_a_holder_that_lost_its_lease_cannot_write(mirror_engine: Any, mirror_backend: str) -> None:
    stale = Lease(mirror_engine, "sync", ttl=0.3, owner="stalled").acquire()
    if mirror_backend == "postgresql":
        stale._drop_advisory_lock()  # the session of a stalled worker ended (network, restart)
    else:
        time.sleep(0.5)  # nobody renewed it: expired
    fresh = Lease(mirror_engine, "sync", ttl=30, owner="fresh").acquire()
    try:
        with pytest.raises(LeaseLost, match="fresh"):
            with db.begin_write(mirror_engine) as conn:
                stale.fence(conn)
                conn.execute(tables.b24sync_state.delete())  # never reached
        assert fresh.held_by() == "fresh"
    finally:
        fresh.release()


def test_a_killed_holder_is_taken_over(mirror_url: str, mirror_backend: str, tmp_path: Path) -> None:
    """PostgreSQL: the advisory lock dies with the holder's session, so the lease is free at once (the
    holder's ten-minute ttl would outlast the wait); SQLite: the holder's row expires (ttl 1.5 s)."""
    engine = db.open_engine(mirror_url)
    db.upgrade(engine)
    ttl = 600 if mirror_backend == "postgresql" else 1.5
    script = (
        "import sys, time\n"
        "from mappings import db\n"
        "from jobs.lease import Lease\n"
        f"lease = Lease(db.open_engine({mirror_url!r}), 'sync', ttl={ttl}, owner='doomed').__enter__()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeld, match="doomed"):
            Lease(engine, "sync", ttl=5, owner="next").acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        taken = Lease(engine, "sync", ttl=5, owner="next").acquire(wait=10)  # raises LeaseHeld if still held
        assert taken.held_by() == "next"
        taken.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()


def test_two_syncs_at_once_never_both_write(make_emulator: Any, mirror_engine: Any) -> None:
    server = make_emulator(seed=6, deals=200, latency=1.0)  # slow replies: the runs overlap
    outcomes: list[Any] = []

    def run(wait: bool) -> None:
        try:
            outcomes.append(sync(server, mirror_engine, wait=wait))
        except LeaseHeld as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(False,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    refused = [o for o in outcomes if isinstance(o, LeaseHeld)]
    done = [o for o in outcomes if not isinstance(o, LeaseHeld)]
    assert len(refused) == 1 and len(done) == 1 and done[0].ok, outcomes
    assert "another sync is running on this mirror" in str(refused[0])
    # with --wait the second one runs after the first: their run-log rows never overlap in time
    threads = [threading.Thread(target=run, args=(True,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    with mirror_engine.connect() as conn:
        runs = conn.execute(sa.select(tables.b24sync_run.c.run_id, sa.func.min(tables.b24sync_run.c.started_at),
                                      sa.func.max(tables.b24sync_run.c.finished_at)).group_by(tables.b24sync_run.c.run_id)
                            .order_by(sa.func.min(tables.b24sync_run.c.started_at))).all()
    assert len(runs) == 3
    for (_, _, end), (_, start, _) in zip(runs, runs[1:]):
        assert end <= start
    assert Lease(mirror_engine, LEASE).held_by() is None


def test_a_held_lease_writes_nothing(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    client.result("crm.deal.add", {"fields": {"TITLE": "x"}})
    with Lease(mirror_engine, LEASE, owner="someone else"):
        with pytest.raises(LeaseHeld, match="someone else"):
            sync(app, mirror_engine)
    with mirror_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.crm_deal)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.b24sync_run)).scalar() == 0
