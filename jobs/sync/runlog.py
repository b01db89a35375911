"""The run log (``b24sync_run``): one row per run and stream with its counts, status and error.

A row is written as ``running`` when the run starts and completed when its stream ends, so a run
killed with SIGKILL leaves ``running`` rows behind; the next run marks them ``interrupted``.
Rows older than ``KEEP`` are pruned by the next run, except the newest row of each job and stream
(``status`` and the metrics still show when a stream last ran, however long ago).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.sync.result import INTERRUPTED, RUNNING, StreamResult
from mappings.tables import b24sync_run


KEEP = timedelta(days=90)  # a worker syncing every 15 minutes writes about 1,200 rows a day


def _now() -> datetime:
    return datetime.now(timezone.utc)


def prune(conn: Connection, keep: timedelta = KEEP, now: datetime | None = None) -> int:
    """Delete finished rows started before ``now - keep``, keeping the newest row of each (job, stream)."""
    table = b24sync_run
    other = table.alias("later")
    newest = (sa.select(sa.func.max(other.c.started_at))
              .where(other.c.job == table.c.job, other.c.entity == table.c.entity).scalar_subquery())
    result = conn.execute(
        table.delete().where(table.c.started_at < (now or _now()) - keep, table.c.status != RUNNING,
                             table.c.started_at < newest)
    )
    return result.rowcount or 0


def close_abandoned(conn: Connection, run_id: str) -> int:
    """Mark ``running`` rows of earlier runs (killed: the lease is ours now) as interrupted."""
    table = b24sync_run
    result = conn.execute(
        table.update()
        .where((table.c.status == RUNNING) & (table.c.run_id != run_id))
        .values(status=INTERRUPTED, finished_at=_now(), error=sa.func.coalesce(table.c.error, "the process ended before the run finished"))
    )
    return result.rowcount or 0


def start(conn: Connection, run_id: str, job: str, streams: Iterable[str], worker: str | None) -> None:
    """One ``running`` row per stream."""
    now = _now()
    rows = [{"run_id": run_id, "job": job, "entity": name, "started_at": now, "status": RUNNING, "worker": worker}
            for name in streams]
    if rows:
        conn.execute(b24sync_run.insert(), rows)


def finish(conn: Connection, run_id: str, job: str, name: str, result: StreamResult) -> None:
    """Complete a stream's row with its counts and outcome."""
    table = b24sync_run
    conn.execute(
        table.update()
        .where((table.c.run_id == run_id) & (table.c.job == job) & (table.c.entity == name))
        .values(finished_at=_now(), status=result.status, fetched=result.fetched, inserted=result.inserted,
                updated=result.updated, deleted=result.deleted, http_requests=result.requests,
                error=(result.error or None) and result.error[:2000])
    )
