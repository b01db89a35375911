"""What ``b24sync sync`` and ``b24sync db upgrade|current`` do, as functions of plain arguments.

The command line only parses options and calls these; they raise ``jobs.errors.UserError``
subclasses for bad input and return the exit code.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from jobs.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from jobs.sync.errors import MirrorUnavailable
from jobs.sync.plan import Plan
from jobs.sync.progress import LogProgress, NullProgress, RichProgress
from jobs.sync.result import INTERRUPTED, OK, SyncResult
from jobs.sync.run import run_sync
from mappings import db

SYNC_TIMEOUT = 660.0  # a job may wait out one operating-time window (600 s) per call, batch or page


def mirror_target(db_url: str | None, config: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> db.Target:
    """Where the mirror is: ``--db`` > ``B24SYNC_DB`` > the config's ``[database]`` > ``sqlite:///b24sync.sqlite3``."""
    from jobs.portal import config_path
    from mappings.loader import load_config

    path = config_path(config, environ)
    database = load_config(path).database if path is not None else None
    try:
        return db.resolve(db_url, database, environ)
    except db.MirrorDatabaseError as exc:
        raise MirrorUnavailable(str(exc)) from None


def open_mirror(target: db.Target) -> Any:
    """An engine for the mirror, or ``MirrorUnavailable`` (bad URL, unknown database kind)."""
    try:
        return db.open_engine(target)
    except db.MirrorDatabaseError as exc:
        raise MirrorUnavailable(str(exc)) from None


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT/SIGTERM set ``stop`` (the run commits its page and ends); a second one interrupts at once."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handle(signum: int, frame: Any) -> None:
        """The first signal asks the run to stop; the second one interrupts."""
        if caught:
            raise KeyboardInterrupt
        caught.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def sync(
    portal: Any,
    *,
    db_url: str | None = None,
    entities: str | None = None,
    full: bool = False,
    reconcile: bool = False,
    wait: bool = False,
    fmt: str = "text",
    out: TextIO | None = None,
    err: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """``b24sync sync``: run the mirror once and print what it did; the exit code (0 ok, 1 failed, 130 stopped)."""
    out = out or sys.stdout
    err = err or sys.stderr
    Plan.make(entities, full=full, reconcile=reconcile)  # an unknown entity: before any connection
    engine = open_mirror(mirror_target(db_url, portal.config, environ))
    stop = threading.Event()
    try:
        with portal.client() as client, _stop_on_signals(stop) as caught:
            if fmt == "text" and getattr(err, "isatty", lambda: False)():
                from rich.console import Console

                with RichProgress(Console(file=err)) as progress:
                    result = run_sync(client, engine, entities=entities, full=full, reconcile=reconcile, stop=stop,
                                      progress=progress, wait=wait)
            else:
                progress = LogProgress(write=lambda line: (err.write(line + "\n"), err.flush())) if fmt == "text" else NullProgress()
                result = run_sync(client, engine, entities=entities, full=full, reconcile=reconcile, stop=stop,
                                  progress=progress, wait=wait)
    finally:
        engine.dispose()
    _print(result, fmt, out, err)
    if result.status == OK:
        return EXIT_OK
    if result.status == INTERRUPTED and caught:
        return EXIT_INTERRUPTED
    return EXIT_ERROR


def _print(result: SyncResult, fmt: str, out: TextIO, err: TextIO) -> None:
    if fmt == "json":
        out.write(result.to_json() + "\n")
        return
    for line in result.lines():
        out.write(line + "\n")
    if result.error:
        err.write(f"error: {result.error}\n")
        if result.status != OK:
            err.write("Everything committed before that stays; the next sync continues from there.\n")
    out.flush()


@contextmanager
def _opened(db_url: str | None, config: str | None, environ: Mapping[str, str] | None) -> Iterator[tuple[db.Target, Any]]:
    """The mirror's target and an engine on it that was reached; ``MirrorUnavailable`` otherwise; disposed after."""
    target = mirror_target(db_url, config, environ)
    engine = open_mirror(target)
    try:
        db.check(engine)
        yield target, engine
    except db.MirrorDatabaseError as exc:
        raise MirrorUnavailable(str(exc)) from None
    finally:
        engine.dispose()


def upgrade(db_url: str | None, config: str | None, *, out: TextIO | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``b24sync db upgrade``: bring the mirror's schema to the newest revision, under the sync lease."""
    from jobs.lease import Lease
    from jobs.sync.run import LEASE

    out = out or sys.stdout
    with _opened(db_url, config, environ) as (target, engine):
        before = db.current(engine)
        if before is None:
            db.upgrade(engine)
        else:
            with Lease(engine, LEASE, owner=None):
                db.upgrade(engine)
        after = db.current(engine)
    if before == after:
        out.write(f"{target.shown}: already at revision {after} (the newest)\n")
    else:
        out.write(f"{target.shown}: upgraded from revision {before or '(empty)'} to {after}\n")
    return EXIT_OK


def current(db_url: str | None, config: str | None, *, fmt: str = "text", out: TextIO | None = None,
            environ: Mapping[str, str] | None = None) -> int:
    """``b24sync db current``: the mirror's revision and the newest one (``--format json``: as data)."""
    import json

    out = out or sys.stdout
    with _opened(db_url, config, environ) as (target, engine):
        revision = db.current(engine)
    newest = db.head()
    if fmt == "json":
        out.write(json.dumps({"mirror": target.shown, "revision": revision, "head": newest, "current": revision == newest}) + "\n")
    elif revision is None:
        out.write(f"{target.shown}: empty (no b24sync schema); the newest revision is {newest}: run b24sync db upgrade\n")
    elif revision == newest:
        out.write(f"{target.shown}: revision {revision} (the newest)\n")
    else:
        out.write(f"{target.shown}: revision {revision}; the newest is {newest}: run b24sync db upgrade (or sync)\n")
    return EXIT_OK
