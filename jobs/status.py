"""``b24sync status``: is the mirror healthy? Per entity its last run, rows, lag and last error; per job the next run.

Read from the mirror alone (run log, sync state, lease), so a monitoring check needs no portal.
Exit 1 when the last run of anything failed, the mirror was never synced, or a lag passes ``--max-lag``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from jobs.errors import EXIT_ERROR, EXIT_OK
from mappings import db, entities as ent
from mappings.tables import b24sync_run, b24sync_state, metadata

WRITING_JOBS = ("sync", "reconcile")
REPORT_ENTITY = "funnels"


@dataclass
class EntityStatus:
    """One stream of the mirror: its last run, rows, cursor, lag and last error."""

    entity: str
    last: dict[str, Any] | None = None  # the last run-log row of a sync or reconcile
    rows: int | None = None  # live rows in its table (entities and history)
    cursor: datetime | None = None  # entities: the DATE_MODIFY up to which every change is mirrored
    complete_at: datetime | None = None  # the start of the run whose window the last successful run closed
    lag: float | None = None  # seconds from complete_at to now
    last_error: dict[str, Any] | None = None  # the newest failed run: when and why
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # job -> its newest row of this entity

    def to_data(self) -> dict[str, Any]:
        """As JSON data."""
        return {"entity": self.entity, "last_run": _row(self.last), "rows": self.rows, "cursor": _iso(self.cursor),
                "complete_at": _iso(self.complete_at), "lag_seconds": None if self.lag is None else round(self.lag, 3),
                "last_error": self.last_error and {"at": _iso(self.last_error["at"]), "message": self.last_error["message"]}}


@dataclass
class JobStatus:
    """One job of the worker's timetable: its last run and, when the schedule is known, the next."""

    job: str
    last: dict[str, Any] | None = None
    schedule: str | None = None
    next_run: datetime | None = None
    overdue: bool = False

    def to_data(self) -> dict[str, Any]:
        """As JSON data."""
        return {"job": self.job, "last_run": _row(self.last), "schedule": self.schedule, "next_run": _iso(self.next_run),
                "overdue": self.overdue}


@dataclass
class Status:
    """The whole answer: the mirror, its portal, entities, jobs, the lease, and what is wrong."""

    mirror: str
    now: datetime
    portal: dict[str, Any] | None = None
    entities: list[EntityStatus] = field(default_factory=list)
    jobs: list[JobStatus] = field(default_factory=list)
    lease: str | None = None
    problems: list[str] = field(default_factory=list)
    max_lag: float | None = None

    @property
    def healthy(self) -> bool:
        """True when nothing is wrong (the exit code is 0)."""
        return not self.problems

    def to_data(self) -> dict[str, Any]:
        """As JSON data (``b24sync status --format json``)."""
        portal = self.portal or {}
        return {
            "mirror": self.mirror, "now": _iso(self.now), "healthy": self.healthy, "problems": self.problems,
            "max_lag_seconds": self.max_lag,
            "portal": {"address": portal.get("address"), "timezone": portal.get("timezone"),
                       "last_synced_at": _iso(portal.get("last_synced_at"))} if self.portal else None,
            "lease": self.lease, "entities": [e.to_data() for e in self.entities], "jobs": [j.to_data() for j in self.jobs],
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("run_id", "job", "started_at", "finished_at", "status", "fetched", "inserted", "updated", "deleted",
            "http_requests", "error", "worker")
    return {k: _iso(row[k]) if isinstance(row.get(k), datetime) else row.get(k) for k in keys}


# ---------------------------------------------------------------- reading the mirror


RECENT = 500  # run-log rows read per entity (newest first, by its index): the last error is looked for among them


def _recent(conn: Connection, entity: str) -> list[dict[str, Any]]:
    """The newest sync and reconcile rows of one entity, newest first (an index scan, however long the log)."""
    t = b24sync_run
    query = (sa.select(t).where((t.c.entity == entity) & t.c.job.in_(WRITING_JOBS))
             .order_by(t.c.started_at.desc(), t.c.id.desc()).limit(RECENT))
    return [dict(r) for r in conn.execute(query).mappings()]


def _complete_at(conn: Connection, entity: str, recent: list[dict[str, Any]]) -> datetime | None:
    """The moment up to which the mirror holds every change of ``entity`` (None: never synced successfully).

    A successful run closes the window its stream had open, which earlier runs that failed or were
    interrupted may have opened; the window reads up to the portal's time when it opened, so the
    start of the first run after the previous success is the conservative moment.
    """
    syncs = [r for r in recent if r["job"] == "sync"]
    ok = next((i for i, r in enumerate(syncs) if r["status"] == "ok"), None)
    previous = next((i for i in range(ok + 1, len(syncs)) if syncs[i]["status"] == "ok"), None) if ok is not None else None
    if ok is not None and (previous is not None or len(recent) < RECENT):
        return min(r["started_at"] for r in syncs[ok:previous])
    t = b24sync_run  # the chain is longer than the rows read: ask the database
    mine = (t.c.entity == entity) & (t.c.job == "sync")
    ok_id = conn.execute(sa.select(sa.func.max(t.c.id)).where(mine & (t.c.status == "ok"))).scalar()
    if ok_id is None:
        return None
    before = conn.execute(sa.select(sa.func.max(t.c.id)).where(mine & (t.c.status == "ok") & (t.c.id < ok_id))).scalar()
    return conn.execute(sa.select(sa.func.min(t.c.started_at)).where(mine & (t.c.id <= ok_id) & (t.c.id > (before or 0)))).scalar()


def _latest_report(conn: Connection) -> dict[str, Any] | None:
    t = b24sync_run
    query = (sa.select(t).where((t.c.entity == REPORT_ENTITY) & (t.c.job == "report"))
             .order_by(t.c.started_at.desc(), t.c.id.desc()).limit(1))
    row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None


def _rows(conn: Connection, stream: ent.Stream) -> int | None:
    if stream.kind == ent.DICTIONARY:
        return None
    table = metadata.tables[stream.table]
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.deleted_at.is_(None))).scalar() or 0)


def entity_statuses(conn: Connection, now: datetime) -> list[EntityStatus]:
    """Every stream the run log or the sync state knows, in declaration order."""
    cursors = {row.stream: row.cursor_at for row in conn.execute(sa.select(b24sync_state.c.stream, b24sync_state.c.cursor_at))}
    found = []
    for name in [*ent.STREAMS, *sorted(set(cursors) - set(ent.STREAMS))]:
        recent = _recent(conn, name)
        if not recent and name not in cursors:
            continue
        status = EntityStatus(name, recent[0] if recent else None, cursor=cursors.get(name),
                              complete_at=_complete_at(conn, name, recent) if recent else None)
        for row in recent:
            status.latest.setdefault(row["job"], row)
        if name in ent.STREAMS:
            status.rows = _rows(conn, ent.STREAMS[name])
        if status.complete_at is not None:
            status.lag = max(0.0, (now - status.complete_at).total_seconds())
        error = next((r for r in recent if r["status"] == "failed"), None)
        if error is not None:
            status.last_error = {"at": error["finished_at"] or error["started_at"], "message": error["error"]}
        found.append(status)
    return found


def read_status(engine: Engine, *, schedule: Any = None, max_lag: float | None = None, now: datetime | None = None) -> Status:
    """The mirror's status (see the module docstring); ``schedule`` is a config's ``[schedule]`` (next runs)."""
    from jobs.lease import Lease, owner_is_gone
    from jobs.sync import LEASE
    from jobs.sync import portal as portals
    from jobs.worker.schedule import portal_timezone

    now = now or datetime.now(timezone.utc)
    result = Status(db.shown(engine), now, max_lag=max_lag)
    if not db.exists(engine):
        result.problems.append("the mirror is empty: it was never synced (run b24sync sync or start the worker)")
        result.jobs = _jobs({}, schedule, None, now)
        return result
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(b24sync_run.name):
            result.problems.append("the mirror has no run log: run b24sync db upgrade")
            return result
        result.portal = portals.read(conn)
        result.entities = entity_statuses(conn, now)
        report = _latest_report(conn)
    holder = Lease(engine, LEASE).held_by()
    result.lease = None if owner_is_gone(holder) else holder
    by_job: dict[str, dict[str, Any]] = {"report": report} if report is not None else {}
    for entity in result.entities:
        for job, row in entity.latest.items():
            if job not in by_job or (row["started_at"], row["id"]) > (by_job[job]["started_at"], by_job[job]["id"]):
                by_job[job] = row
    result.jobs = _jobs(by_job, schedule, portal_timezone(engine), now)
    _judge(result, report)
    return result


def _jobs(last: Mapping[str, dict[str, Any]], schedule: Any, tz: Any, now: datetime) -> list[JobStatus]:
    from jobs.worker.schedule import JOBS, timetables

    tables = timetables(schedule) if schedule is not None else {}
    found = []
    for job in JOBS:
        if job not in tables and job not in last:
            continue
        status = JobStatus(job, last.get(job))
        table = tables.get(job)
        if table is not None:
            status.schedule = table.describe()
            started = status.last["started_at"] if status.last else None
            status.next_run = table.next_run(tz or timezone.utc, now, started)
            grace = max(timedelta(minutes=1), table.every or timedelta(0))
            status.overdue = status.next_run is not None and status.next_run + grace < now
        found.append(status)
    return found


def _judge(result: Status, report: dict[str, Any] | None) -> None:
    if not result.entities:
        result.problems.append("the mirror was never synced: its run log is empty")
    behind, never = [], []
    for entity in result.entities:
        if entity.last is not None and entity.last["status"] == "failed":
            result.problems.append(f"{entity.entity}: the last {entity.last['job']} failed: {entity.last['error'] or 'no reason recorded'}")
        if result.max_lag is not None:
            if entity.lag is None:
                never.append(entity.entity)
            elif entity.lag > result.max_lag:
                behind.append(f"{entity.entity} {_lag(entity.lag)}")
    if behind:
        result.problems.append(f"lag over --max-lag {result.max_lag:g} s: {', '.join(behind)}")
    if never:
        result.problems.append(f"never synced successfully: {', '.join(never)}")
    if report is not None and report["status"] == "failed":
        result.problems.append(f"the last report failed: {report['error'] or 'no reason recorded'}")


# ---------------------------------------------------------------- the command


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render(status: Status) -> list[str]:
    """The status as lines for people (times in UTC)."""
    out = [f"mirror   {status.mirror}"]
    if status.portal:
        out.append(f"portal   {status.portal.get('address')} ({status.portal.get('timezone') or 'offset unknown'}), "
                   f"last successful sync ended {_when(status.portal.get('last_synced_at'))} UTC")
    out.append(f"lease    {'held by ' + status.lease + ' (a sync is running)' if status.lease else 'free (no sync running)'}")
    if status.entities:
        width = max(len(e.entity) for e in status.entities)
        out += ["", f"{'entity':<{width}}  {'last run (UTC)':<19}  {'status':<11} {'fetched':>8} {'written':>8} {'rows':>9} {'lag':>8}  error"]
        for e in status.entities:
            row = e.last or {}
            written = sum(int(row.get(k) or 0) for k in ("inserted", "updated", "deleted")) if row else None
            error = (row.get("error") if row.get("status") == "failed" else None) or (
                f"(last error {_when(e.last_error['at'])}: {e.last_error['message']})" if e.last_error else "")
            out.append(f"{e.entity:<{width}}  {_when(row.get('started_at')):<19}  {row.get('status', '—'):<11} "
                       f"{row.get('fetched', '—'):>8} {'—' if written is None else written:>8} "
                       f"{'—' if e.rows is None else e.rows:>9} {_lag(e.lag):>8}  {error}".rstrip())
    if status.jobs:
        out += ["", f"{'job':<10} {'last run (UTC)':<19}  {'status':<11} next run"]
        for j in status.jobs:
            row = j.last or {}
            upcoming = "—" if j.schedule is None else (
                f"{_when(j.next_run)} UTC" if j.next_run is not None else "") + f" ({j.schedule})"
            if j.overdue:
                upcoming += " overdue: is the worker running?"
            out.append(f"{j.job:<10} {_when(row.get('started_at')):<19}  {row.get('status', '—'):<11} {upcoming.strip()}")
    out.append("")
    if status.healthy:
        out.append("healthy")
    else:
        out.append(f"unhealthy: {len(status.problems)} problem(s)")
        out += [f"  {p}" for p in status.problems]
    return out


def status(db_url: str | None, config: str | None, *, fmt: str = "text", max_lag: float | None = None,
           out: TextIO | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``b24sync status``: print the mirror's status; exit 0 when healthy, 1 otherwise."""
    from jobs.portal import config_path
    from jobs.sync.command import mirror_target, open_mirror
    from jobs.sync.errors import MirrorUnavailable
    from mappings.loader import load_config

    out = out or sys.stdout
    path = config_path(config, environ)
    schedule = load_config(path).schedule if path is not None else None
    engine = open_mirror(mirror_target(db_url, config, environ))
    try:
        db.check(engine)
        result = read_status(engine, schedule=schedule, max_lag=max_lag)
    except db.MirrorDatabaseError as exc:
        raise MirrorUnavailable(str(exc)) from None
    except SQLAlchemyError as exc:
        raise MirrorUnavailable(str(db.unreachable(engine, exc))) from None
    finally:
        engine.dispose()
    if fmt == "json":
        out.write(json.dumps(result.to_data(), ensure_ascii=False, indent=2) + "\n")
    else:
        out.write("\n".join(render(result)) + "\n")
    out.flush()
    return EXIT_OK if result.healthy else EXIT_ERROR
