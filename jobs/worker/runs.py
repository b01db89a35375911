"""One run of one job of one portal (sync, reconcile, report) and what it did, as the worker logs and counts it.

A sync or reconcile first looks at the mirror's lease: when another process holds it (another
worker, a ``b24sync sync`` by hand) the run is skipped without a single request and says so; a run
of this worker never waits on its own other job beyond the reconcile's wait for the sync.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from connector.redact import redact
from jobs.errors import UserError
from jobs.sync.result import FAILED, INTERRUPTED, OK, StreamResult
from jobs.worker.portals import Site
from jobs.worker.schedule import RECONCILE, REPORT, SYNC

log = logging.getLogger("jobs.worker")

SKIPPED = "skipped"
RECONCILE_WAIT = 900.0  # seconds a reconcile waits for another process's sync of the mirror to end


@dataclass
class Context:
    """What every job of one worker shares: the stop event, the worker's name and the lease's ttl."""

    name: str
    lease_ttl: float
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class JobRun:
    """The outcome of one job run: status (ok, failed, interrupted, skipped), counts, time, requests, error."""

    portal: str
    job: str
    started_at: datetime
    status: str = OK
    seconds: float = 0.0
    run_id: str | None = None
    requests: int = 0
    entities: dict[str, StreamResult] = field(default_factory=dict)
    error: str | None = None
    files: list[str] = field(default_factory=list)
    mirror: str = ""

    def total(self, name: str) -> int:
        """The sum of one count (fetched, inserted, updated, deleted) over the entities."""
        return sum(getattr(r, name) for r in self.entities.values())

    def message(self) -> str:
        """One line for people: ``acme sync ok: 12 fetched, 3 inserted, ... 1.2 s``."""
        head = f"{self.portal} {self.job} {self.status}"
        if self.job == REPORT:
            body = f"{len(self.files)} file(s) written"
        else:
            body = (f"{self.total('fetched')} fetched, {self.total('inserted')} inserted, {self.total('updated')} updated, "
                    f"{self.total('deleted')} deleted, {self.requests} request(s)")
        text = f"{head}: {body}, {self.seconds:.1f} s"
        return f"{text}: {self.error}" if self.error else text

    def fields(self) -> dict[str, Any]:
        """The same as data (the JSON log line's fields)."""
        return {
            "event": "job", "portal": self.portal, "job": self.job, "status": self.status, "run_id": self.run_id,
            "started_at": self.started_at.isoformat(), "seconds": round(self.seconds, 3), "requests": self.requests,
            **{name: self.total(name) for name in ("fetched", "inserted", "updated", "deleted")},
            "entities": {name: {"fetched": r.fetched, "inserted": r.inserted, "updated": r.updated, "deleted": r.deleted,
                                "requests": r.requests, "status": r.status} for name, r in self.entities.items()},
            "files": self.files, "mirror": self.mirror, "error": self.error,
        }


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _done(run: JobRun, began: float, status: str, error: str | None = None) -> JobRun:
    run.status, run.seconds = status, time.monotonic() - began
    run.error = redact(error) if error else run.error
    return run


def lease_holder(site: Site, ttl: float) -> str | None:
    """Who holds the mirror's sync lease now: None when it is free, when its holder was a process of this
    host that is gone (the run takes it over at once), or when that cannot be told (the run will say why)."""
    from sqlalchemy.exc import SQLAlchemyError

    from jobs.lease import Lease, owner_is_gone
    from jobs.sync import LEASE
    from mappings import db

    path = db.sqlite_path(site.engine)
    if path is not None and not path.exists():
        return None
    try:
        holder = Lease(site.engine, LEASE, ttl).held_by()
    except SQLAlchemyError:
        return None
    return None if owner_is_gone(holder) else holder


def _wait_until_free(site: Site, ctx: Context, wait: float) -> str | None:
    """Wait (at most ``wait`` seconds, stopping when asked) for the lease to be free; the holder if it is not."""
    deadline = time.monotonic() + wait
    while True:
        holder = lease_holder(site, ctx.lease_ttl)
        if holder is None or ctx.stop.is_set() or time.monotonic() >= deadline:
            return holder
        ctx.stop.wait(1.0)


def sync_job(site: Site, ctx: Context, *, reconcile: bool = False) -> JobRun:
    """One incremental sync (or, with ``reconcile``, a sync that then compares ID sets) of ``site``'s mirror."""
    from jobs.lease import LeaseHeld
    from jobs.sync import run_sync

    run = JobRun(site.name, RECONCILE if reconcile else SYNC, _now(), mirror=site.mirror)
    began = time.monotonic()
    if reconcile:  # the sync of this portal on this worker ends soon; wait for it (a stop ends the wait)
        while not site.lock.acquire(timeout=0.5):
            if ctx.stop.is_set():
                return _done(run, began, INTERRUPTED, "stopped before it began")
    elif not site.lock.acquire(blocking=False):
        return _done(run, began, SKIPPED, "the reconcile of this portal is running here (it syncs as well)")
    try:
        holder = _wait_until_free(site, ctx, RECONCILE_WAIT if reconcile else 0.0)
        if ctx.stop.is_set():
            return _done(run, began, INTERRUPTED, "stopped before it began")
        if holder is not None:
            return _done(run, began, SKIPPED, f"another sync of this mirror is running ({holder}); trying again at the next tick")
        try:
            result = run_sync(site.client, site.engine, reconcile=reconcile, stop=ctx.stop, worker=ctx.name,
                              lease_ttl=ctx.lease_ttl)
        except LeaseHeld as exc:  # taken between the look and the run
            return _done(run, began, SKIPPED, f"another sync of this mirror is running ({exc.holder or 'another process'}); "
                                              "trying again at the next tick")
        except UserError as exc:
            return _done(run, began, FAILED, str(exc))
        run.run_id, run.requests, run.entities = result.run_id, result.requests, result.entities
        return _done(run, began, result.status, result.error)
    finally:
        site.lock.release()


def report_job(site: Site, ctx: Context) -> JobRun:
    """Write the funnel reports of ``site``'s mirror into its ``reports_dir``; logged in the run log as ``report``."""
    from jobs.worker.reports import write_reports

    run = JobRun(site.name, REPORT, _now(), run_id=uuid.uuid4().hex, mirror=site.mirror)
    began = time.monotonic()
    assert site.reports_dir is not None
    try:
        written, errors = write_reports(site.engine, site.reports_dir, stop=ctx.stop)
    except UserError as exc:
        written, errors = [], [str(exc)]
    run.files = [str(p) for p in written]
    if errors:
        _done(run, began, FAILED, "; ".join(errors))
    else:
        _done(run, began, INTERRUPTED if ctx.stop.is_set() else OK)
    record(site, run, ctx.name)
    return run


def record(site: Site, run: JobRun, worker: str) -> None:
    """Add a finished run to the mirror's run log (``b24sync_run``), when the mirror has one."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    from mappings import db
    from mappings.tables import b24sync_run

    try:
        if not db.exists(site.engine):
            return
        with db.begin_write(site.engine) as conn:
            if not sa.inspect(conn).has_table(b24sync_run.name):
                return
            conn.execute(b24sync_run.insert().values(
                run_id=run.run_id, job=run.job, entity="funnels", started_at=run.started_at, finished_at=_now(),
                status=run.status, fetched=len(run.files), error=run.error and run.error[:2000], worker=worker))
    except SQLAlchemyError as exc:
        log.warning("%s: could not add the report to the run log: %s", site.name, db.unreachable(site.engine, exc))
