"""One writer per mirror: two workers on one database (SQLite file, PostgreSQL), a SIGKILLed worker, another machine's lease.

Each worker has its own webhook code, so the emulator's request log says who asked for what; the
run log's intervals say who wrote when. They never overlap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from mappings import tables
from tests.jobs.worker.conftest import PATIENCE, ROOT, assert_mirror, client_of, eventually, rows, runs, write_config

CODE_A, CODE_B = "worker-a-code", "worker-b-code"
FOREIGN = "otherhost:1:a-worker-on-another-machine"

HOLDER = """
import sys, time
from jobs.lease import Lease
from mappings import db
lease = Lease(db.open_engine(sys.argv[1]), "sync", 3.0, owner=sys.argv[2])
lease.acquire(wait=60)
print("held", flush=True)
time.sleep(600)
"""


def clean_env() -> dict[str, str]:
    """The environment without the user's B24SYNC_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("B24SYNC_")}


def never_overlap(engine: Any) -> list[Any]:
    """The run log's writing runs (sync, reconcile; reports only read); asserts each began after the one before it ended."""
    found = sorted((r for r in runs(engine) if r.jobs & {"sync", "reconcile"}), key=lambda r: r.started)
    for before, after in zip(found, found[1:]):
        assert before.finished is not None and before.finished <= after.started, (
            f"two writers at once: {before.worker} {before.started}..{before.finished} and {after.worker} from {after.started}")
    return found


def test_one_writer_per_mirror_and_dead_workers_leases_are_taken_over(make_emulator: Any, serve: Any, make_mirror: Any,
                                                                        start_worker: Any, tmp_path: Any, mirror_backend: str) -> None:
    app = make_emulator(seed=41, deals=300, http=False)
    served = serve(app)
    url, engine = make_mirror(upgraded=False)
    config_a = write_config(tmp_path / "a", "acme", served.webhook(CODE_A), url, sync_every_seconds=1)
    config_b = write_config(tmp_path / "b", "acme", served.webhook(CODE_B), url, sync_every_seconds=1)

    # A's first run holds the lease while its requests after the probe wait at the emulator
    served.log.hold(CODE_A, after=1)
    a = start_worker("--config", str(config_a), "--lease-ttl", "3", name="a")
    a.wait_for(lambda w: [r for r in runs(engine) if r.finished is None], "A's run under the lease")

    # B, started by hand meanwhile, skips without a single request and says who holds the lease
    b_once = start_worker("--config", str(config_b), "--once", name="b-once")
    assert b_once.process.wait(timeout=PATIENCE) == 0, b_once.text()
    [skip] = b_once.jobs(job="sync")
    assert skip["status"] == "skipped" and "another sync of this mirror is running" in skip["error"], skip
    assert served.log.by(CODE_B) == []
    # and so does a `b24sync sync` started by hand: the same lease
    by_hand = subprocess.run([sys.executable, "-m", "jobs.cli", "sync", "--config", str(config_b)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=PATIENCE, env={**clean_env(), "PYTHONPATH": str(ROOT)})
    assert by_hand.returncode == 1 and "another sync is running on this mirror" in by_hand.stderr, by_hand.stderr

    # A dies holding the lease; B takes it over (PostgreSQL: at once, the lock died with A's session;
    # SQLite: once the row expired) and finishes the load A began
    a.kill()
    served.log.release(CODE_A)
    b = start_worker("--config", str(config_b), "--lease-ttl", "3", name="b")
    b.wait_for(lambda w: w.jobs(job="sync", status="ok"), "B's first successful sync")
    [dead] = [r for r in runs(engine) if r.worker != next(e["worker"] for e in b.events() if e.get("event") == "started")]
    assert set(dead.statuses.values()) == {"interrupted"}
    assert {r["error"] for r in rows(engine, tables.b24sync_run) if r["run_id"] == dead.run_id} == {"the process ended before the run finished"}
    assert_mirror(engine, app)

    # a worker on another machine holds the lease: B skips, naming it, until it is gone
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, FOREIGN], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        b.wait_for(lambda w: [e for e in w.jobs(status="skipped") if FOREIGN in (e["error"] or "")], "B's skip naming the holder")
        [lease] = rows(engine, tables.b24sync_lease)
        holder.kill()
    finally:
        holder.kill()
        holder.wait(timeout=PATIENCE)
    skipped = len(b.jobs(job="sync", status="ok"))
    b.wait_for(lambda w: len(w.jobs(job="sync", status="ok")) > skipped, "B's sync after the holder died")
    if mirror_backend == "sqlite":  # the row outlives its holder until it expires
        taken = [r for r in runs(engine) if r.started > lease["acquired_at"]]
        assert taken and min(r.started for r in taken) >= lease["expires_at"]

    # both workers serve the mirror side by side; the portal's changes arrive; stop both
    a2 = start_worker("--config", str(config_a), "--lease-ttl", "3", name="a2")
    a2.wait_for(lambda w: w.jobs(job="sync", status="ok"), "A's sync beside B")
    deal = sorted(app.portal.records["deal"])[3]
    client_of(app).call("crm.deal.update", {"id": deal, "fields": {"TITLE": "Seen by one of them"}})
    eventually(lambda: rows(engine, tables.crm_deal, tables.crm_deal.c.id == deal)[0]["title"] == "Seen by one of them",
               "the change in the mirror", alive=b)
    assert a2.stop() == 0 and b.stop() == 0
    everything = never_overlap(engine)
    assert len({r.worker for r in everything}) == 3  # the dead A, B, and A again
    assert_mirror(engine, app)
    if "@" in url:  # the mirror's URL is in every job line, its password never
        password = url.split("//", 1)[1].split("@", 1)[0].partition(":")[2]
        assert all(f":{password}@" not in w.text() for w in (a, b_once, b, a2))
