"""The worker process: APScheduler jobs per portal, signals, the metrics server, and ``--once``.

Every job runs in the scheduler's thread pool with ``max_instances=1`` (never two runs of one job)
and ``coalesce`` (missed runs become one); a run that fails is logged and counted, and the next tick
tries again. SIGTERM/SIGINT stop the scheduler: a running sync finishes its page, commits and
returns ``interrupted``, and the worker exits 0; a second signal exits at once (everything
committed stays: the next start resumes from the committed cursor). Jobs never call the scheduler:
they ask the main thread (``_ask``), which also shuts it down. SIGUSR1 dumps every thread's stack.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import queue
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor as Pool
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from jobs.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from jobs.metrics import Health, Metrics, MetricsServer
from jobs.sync.result import FAILED
from jobs.worker import runs
from jobs.worker.logs import FIELDS
from jobs.worker.portals import Site, warnings_of
from jobs.worker.runs import Context, JobRun
from jobs.worker.schedule import RECONCILE, REPORT, SYNC, cron_timezone

log = logging.getLogger("jobs.worker")


def default_name() -> str:
    """``host:pid``: the worker's name in the run log and in lease owners."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Serves ``sites`` until stopped (``run``) or runs each of their jobs once (``run(once=True)``)."""

    def __init__(self, sites: Sequence[Site], *, name: str | None = None, lease_ttl: float = 60.0,
                 threads: int | None = None, metrics: Metrics | None = None, metrics_address: tuple[str, int] | None = None):
        self.sites = list(sites)
        self.ctx = Context(name or default_name(), lease_ttl)
        self.threads = threads or min(32, 3 * len(self.sites) + 1)
        self.metrics = metrics or Metrics()
        self.health = Health()
        self.metrics_address = metrics_address
        self.scheduler: Any = None
        self.failed = False
        self._retime_lock = threading.Lock()
        self._changes: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()  # schedule changes for the main thread
        for site in self.sites:
            self.metrics.watch_client(site.name, site.client)

    # ---------------------------------------------------------------- one job run

    def execute(self, site: Site, job: str) -> JobRun:
        """Run one job of one portal now; never raises (an unexpected error is a failed run, logged)."""
        try:
            if job == REPORT:
                run = runs.report_job(site, self.ctx)
            else:
                run = runs.sync_job(site, self.ctx, reconcile=job == RECONCILE)
        except Exception as exc:  # noqa: BLE001 - a bug in one run must never kill the worker
            log.debug("%s %s: unexpected error", site.name, job, exc_info=True)
            run = JobRun(site.name, job, datetime.now(timezone.utc), status=FAILED, mirror=site.mirror,
                         error=f"unexpected {type(exc).__name__}: {exc} (run with -vv to see where)")
        self.emit(run)
        if job != REPORT and run.status == "ok":
            self._after_sync(site)
        return run

    def emit(self, run: JobRun) -> None:
        """Log, count and remember a finished run."""
        if run.status == FAILED:
            self.failed = True
        level = logging.ERROR if run.status == FAILED else logging.INFO
        log.log(level, "%s", run.message(), extra={FIELDS: {**run.fields(), "worker": self.ctx.name}})
        self.metrics.observe(run)
        self.health.record(run)

    def _after_sync(self, site: Site) -> None:
        self.refresh_lag(site)
        self._retime(site)
        table = site.timetables.get(REPORT)
        if table is not None and table.after_sync and not self.ctx.stop.is_set() and self.scheduler is not None:
            # its own job, so the next sync keeps its time; a report still being written makes this one a skip
            self._ask(lambda: self.scheduler.add_job(self.execute, "date", args=(site, REPORT), id=f"{site.name}:{REPORT}",
                                                     name=f"{site.name} {REPORT} ({table.describe()})", replace_existing=True))

    def _ask(self, change: Callable[[], Any]) -> None:
        """Have the main thread change the schedule. A job never calls the scheduler itself: the scheduler's
        shutdown holds its job-store lock while it waits for the running jobs, so such a call would never return."""
        self._changes.put(change)

    def _apply_changes(self) -> None:
        while True:
            try:
                change = self._changes.get_nowait()
            except queue.Empty:
                return
            try:
                change()
            except Exception:  # noqa: BLE001 - a schedule change that fails is logged, the worker goes on
                log.warning("could not change the schedule", exc_info=True)

    def refresh_lag(self, site: Site) -> None:
        """Read from the mirror up to when each entity holds every change (for ``b24sync_lag_seconds``)."""
        from sqlalchemy.exc import SQLAlchemyError

        from jobs.status import entity_statuses
        from mappings import db

        try:
            if not db.exists(site.engine):
                return
            with site.engine.connect() as conn:
                found = entity_statuses(conn, datetime.now(timezone.utc))
        except SQLAlchemyError:
            return  # the next run says what is wrong with the mirror
        for entity in found:
            self.metrics.set_complete(site.name, entity.entity, entity.complete_at)

    def _retime(self, site: Site) -> None:
        """Read cron lines in the portal's time once the mirror knows the portal's offset."""
        if self.scheduler is None:
            return
        tz = cron_timezone(site.engine)
        with self._retime_lock:
            if tz == site.tz:
                return
            site.tz = tz
        scheduler = self.scheduler

        def retime() -> None:
            for job, table in site.timetables.items():
                if table.cron is not None:
                    scheduler.reschedule_job(f"{site.name}:{job}", trigger=table.trigger(tz))
            log.info("%s: cron lines are now read in the portal's time (UTC%s)", site.name, _offset(tz))

        self._ask(retime)

    # ---------------------------------------------------------------- modes

    def run(self, *, once: bool = False) -> int:
        """Serve until SIGTERM/SIGINT (exit 0), or with ``once`` run every declared job once now
        (exit 1 when a run failed). The metrics server runs meanwhile when an address was given."""
        server = None
        if self.metrics_address is not None:
            server = MetricsServer(self.metrics, self.health, *self.metrics_address).start()
            log.info("metrics on http://%s:%d/metrics, health on /healthz", server.host, server.port,
                     extra={FIELDS: {"event": "metrics", "host": server.host, "port": server.port}})
        try:
            with _signals(self.ctx.stop):
                for site in self.sites:
                    for warning in warnings_of(site):
                        log.warning("%s: %s", site.name, warning)
                    self.refresh_lag(site)
                if once:
                    return self._once()
                return self._serve()
        finally:
            if server is not None:
                server.stop()
            for site in self.sites:
                site.close()

    def _once(self) -> int:
        self.health.running = True
        with Pool(max_workers=min(self.threads, len(self.sites)) or 1, thread_name_prefix="b24sync-once") as pool:
            list(pool.map(self._once_site, self.sites))
        self.health.running = False
        if self.ctx.stop.is_set():
            return EXIT_OK
        return EXIT_ERROR if self.failed else EXIT_OK

    def _once_site(self, site: Site) -> None:
        for job in (SYNC, RECONCILE, REPORT):
            if job in site.timetables and not self.ctx.stop.is_set():
                self.execute(site, job)

    def _serve(self) -> int:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(self.threads)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )
        now = datetime.now(timezone.utc)
        for site in self.sites:
            site.tz = cron_timezone(site.engine)
            for job, table in site.timetables.items():
                trigger = table.trigger(site.tz)
                if trigger is None:
                    continue
                first = {"next_run_time": now} if job == SYNC else {}
                scheduler.add_job(self.execute, trigger, args=(site, job), id=f"{site.name}:{job}",
                                  name=f"{site.name} {job} ({table.describe()})", **first)
        scheduler.add_listener(self._still_running, EVENT_JOB_MAX_INSTANCES)
        self.scheduler = scheduler
        self.metrics.watch_scheduler(lambda: bool(scheduler.running) and not self.ctx.stop.is_set(), self._next_runs)
        scheduler.start()
        self.health.running = True
        log.info("worker %s started: %s", self.ctx.name, "; ".join(
            f"{s.name} -> {s.mirror}: " + ", ".join(f"{job} {t.describe()}" for job, t in s.timetables.items())
            for s in self.sites), extra={FIELDS: {"event": "started", "worker": self.ctx.name, "portals": [s.name for s in self.sites]}})
        while not self.ctx.stop.wait(0.2):
            self._apply_changes()
        self.health.running = False
        log.info("stopping: running jobs finish their page and commit", extra={FIELDS: {"event": "stopping"}})
        scheduler.shutdown(wait=True)
        log.info("worker %s stopped", self.ctx.name, extra={FIELDS: {"event": "stopped"}})
        return EXIT_OK

    def _still_running(self, event: Any) -> None:
        portal, _, job = str(event.job_id).partition(":")
        site = next((s for s in self.sites if s.name == portal), None)
        run = JobRun(portal, job, datetime.now(timezone.utc), status=runs.SKIPPED, mirror=site.mirror if site else "",
                     error="the previous run of this job is still running")
        self.emit(run)

    def _next_runs(self) -> Iterator[tuple[str, str, datetime | None]]:
        scheduler = self.scheduler
        if scheduler is None or not self.health.running:  # a scrape during shutdown does not wait for it
            return
        for job in scheduler.get_jobs():
            portal, _, name = job.id.partition(":")
            yield portal, name, job.next_run_time


def _offset(tz: Any) -> str:
    from mappings.fields import format_offset

    return format_offset(tz)


@contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop``; a second one exits at once (what was committed stays)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        if caught:
            log.warning("second signal: exiting now (committed pages stay; the next start resumes from them)")
            logging.shutdown()
            os._exit(EXIT_INTERRUPTED)
        caught.append(signum)
        log.info("%s received: stopping after the current page", signal.Signals(signum).name,
                 extra={FIELDS: {"event": "signal", "signal": signal.Signals(signum).name}})
        stop.set()

    previous: dict[int, Callable[..., Any] | int | None] = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack on stderr
    try:
        yield
    finally:
        faulthandler.unregister(signal.SIGUSR1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
