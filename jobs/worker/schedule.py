"""The worker's timetable from a config's ``[schedule]``: APScheduler triggers, and when each job runs next.

Cron lines are read in the portal's time: the UTC offset the mirror recorded (``b24sync_portal``),
UTC until the first sync has recorded it. ``status`` uses the same functions to show the next runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mappings.config import ScheduleConfig

SYNC, RECONCILE, REPORT = "sync", "reconcile", "report"
JOBS = (SYNC, RECONCILE, REPORT)
AFTER_SYNC = "after every sync"


@dataclass(frozen=True)
class Timetable:
    """When one job runs: a fixed interval (``every``), a crontab line (``cron``), or after every sync."""

    job: str
    every: timedelta | None = None
    cron: str | None = None
    after_sync: bool = False

    def trigger(self, tz: tzinfo) -> BaseTrigger | None:
        """The APScheduler trigger (None for a job that runs after every sync)."""
        if self.every is not None:
            return IntervalTrigger(seconds=self.every.total_seconds(), timezone=tz)
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=tz)
        return None

    def describe(self) -> str:
        """``every 15 min``, ``cron 0 3 * * *`` or ``after every sync``."""
        if self.every is not None:
            seconds = int(self.every.total_seconds())
            if seconds % 60 == 0:
                return f"every {seconds // 60} min"
            return f"every {seconds} s"
        if self.cron is not None:
            return f"cron {self.cron}"
        return AFTER_SYNC

    def next_run(self, tz: tzinfo, now: datetime, last_start: datetime | None = None) -> datetime | None:
        """When the job runs next as seen from ``now``: an interval counts from the last run's start
        (a worker runs its first sync as soon as it starts); None after every sync."""
        if self.every is not None:
            return now if last_start is None else last_start + self.every
        if self.cron is not None:
            return CronTrigger.from_crontab(self.cron, timezone=tz).get_next_fire_time(None, now.astimezone(tz))
        return None


def timetables(schedule: ScheduleConfig) -> dict[str, Timetable]:
    """The jobs a ``[schedule]`` declares: always ``sync``; ``reconcile`` with ``reconcile_cron``;
    ``report`` when ``reports_dir`` is set (on ``report_cron``, else after every sync)."""
    if schedule.sync_cron is not None:
        sync = Timetable(SYNC, cron=schedule.sync_cron)
    elif schedule.sync_every_seconds is not None:
        sync = Timetable(SYNC, every=timedelta(seconds=schedule.sync_every_seconds))
    else:
        sync = Timetable(SYNC, every=timedelta(minutes=schedule.sync_every_minutes))
    found = {SYNC: sync}
    if schedule.reconcile_cron is not None:
        found[RECONCILE] = Timetable(RECONCILE, cron=schedule.reconcile_cron)
    if schedule.reports_dir is not None:
        if schedule.report_cron is not None:
            found[REPORT] = Timetable(REPORT, cron=schedule.report_cron)
        else:
            found[REPORT] = Timetable(REPORT, after_sync=True)
    return found


def portal_timezone(engine: Any) -> tzinfo | None:
    """The portal's UTC offset as the mirror recorded it (None for a new mirror or an unreadable one)."""
    from sqlalchemy.exc import SQLAlchemyError

    from jobs.sync import portal
    from mappings import db, fields

    path = db.sqlite_path(engine)
    if path is not None and not path.exists():
        return None  # never create a SQLite file just to look
    try:
        known = portal.read(engine)
    except SQLAlchemyError:
        return None
    text = (known or {}).get("timezone")
    try:
        return fields.parse_offset(text) if text else None
    except fields.FieldError:
        return None


def cron_timezone(engine: Any) -> tzinfo:
    """The timezone cron lines are read in: the portal's, else UTC."""
    return portal_timezone(engine) or timezone.utc
