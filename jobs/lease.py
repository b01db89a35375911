"""One writer per mirror: a lease in the mirror's own database, shared by ``b24sync sync`` and the worker.

PostgreSQL: a session advisory lock held for the whole run, plus a lease row for people to read.
SQLite: a lease row with an expiry, renewed while the run lasts and taken over once it expired
(at once when its holder was a process of this machine that is gone).
Every write transaction of the holder calls ``fence(conn)``, so a holder that lost its lease
(stalled past the expiry, taken over) cannot write another page.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from jobs.errors import UserError
from mappings import db
from mappings.tables import b24sync_lease

log = logging.getLogger(__name__)


class LeaseHeld(UserError):
    """Someone else holds the lease; ``holder`` names them, ``expires_at`` says until when (SQLite)."""

    def __init__(self, message: str, holder: str | None = None, expires_at: datetime | None = None):
        super().__init__(message)
        self.holder = holder
        self.expires_at = expires_at


class LeaseLost(UserError):
    """The lease expired or was taken over while its holder was still running; nothing more is written."""


def default_owner() -> str:
    """``host:pid:random``: who holds a lease, readable by people."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_gone(owner: str | None) -> bool:
    """True when ``owner`` names a process of this host (``host:pid:...``) that no longer exists.

    A holder killed with SIGKILL leaves its row behind; on the same machine its lease is taken
    over at once instead of after the expiry. Owners in any other form wait for the expiry.
    """
    parts = (owner or "").split(":")
    if len(parts) < 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's process)
        return False
    return False


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Lease:
    """``with Lease(engine, "sync", ttl=60, owner=...):`` — one holder at a time per mirror and name.

    ``acquire(wait=...)`` raises ``LeaseHeld`` (or waits up to ``wait`` seconds, ``True`` for as
    long as it takes); ``renew()`` extends it (raises ``LeaseLost`` when it is gone); ``fence(conn)``
    does the same inside the caller's write transaction; ``held_by()`` names the current holder.
    The context manager renews in a background thread every ``ttl / 3`` seconds.
    """

    def __init__(self, engine: Engine, name: str = "sync", ttl: float = 60.0, owner: str | None = None, *, wait: bool | float = False):
        if ttl <= 0:
            raise ValueError("a lease needs a positive ttl")
        self.engine = engine
        self.name = name
        self.ttl = float(ttl)
        self.owner = owner or default_owner()
        self.wait = wait
        self.held = False
        self.lost = threading.Event()
        self._pg = engine.dialect.name == "postgresql"
        self._lock_conn: Connection | None = None
        self._key = self._advisory_key() if self._pg else 0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, owner={self.owner!r}, held={self.held})"

    # ---------------------------------------------------------------- acquire / release

    def acquire(self, wait: bool | float | None = None) -> "Lease":
        """Take the lease or raise ``LeaseHeld``; ``wait`` (seconds, or True) keeps trying meanwhile."""
        wait = self.wait if wait is None else wait
        deadline = None if wait is True else time.monotonic() + float(wait or 0)
        pause = min(1.0, self.ttl / 4)
        while True:
            try:
                self._try_acquire()
                self.held = True
                self.lost.clear()
                log.info("lease %s taken by %s", self.name, self.owner)
                return self
            except LeaseHeld:
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)

    def _try_acquire(self) -> None:
        now = _now()
        try:
            if self._pg:
                self._take_advisory_lock()
            with db.begin_write(self.engine) as conn:
                row = conn.execute(sa.select(b24sync_lease).where(b24sync_lease.c.name == self.name)).mappings().first()
                if (not self._pg and row is not None and row["owner"] != self.owner and row["expires_at"] > now
                        and not owner_is_gone(row["owner"])):
                    raise LeaseHeld(self._held_message(row["owner"], row["expires_at"]), row["owner"], row["expires_at"])
                values = {"owner": self.owner, "acquired_at": now, "expires_at": now + timedelta(seconds=self.ttl)}
                if row is None:
                    conn.execute(b24sync_lease.insert().values(name=self.name, **values))
                else:
                    conn.execute(b24sync_lease.update().where(b24sync_lease.c.name == self.name).values(**values))
        except LeaseHeld:
            self._drop_advisory_lock()
            raise
        except SQLAlchemyError as exc:
            self._drop_advisory_lock()
            raise db.unreachable(self.engine, exc) from None

    def _held_message(self, holder: str | None, expires_at: datetime | None) -> str:
        who = holder or "another process"
        until = f" (its lease runs until {expires_at:%Y-%m-%d %H:%M:%S} UTC unless renewed)" if expires_at else ""
        return f"another {self.name} is running on this mirror: {who}{until}; wait for it or pass --wait"

    def release(self) -> None:
        """Give the lease up (the row is removed; the advisory lock and its connection are released)."""
        self._stop_renewer()
        if self.held:
            try:
                with db.begin_write(self.engine) as conn:
                    conn.execute(b24sync_lease.delete().where(
                        (b24sync_lease.c.name == self.name) & (b24sync_lease.c.owner == self.owner)))
            except SQLAlchemyError as exc:  # the row expires by itself
                log.warning("could not release lease %s: %s", self.name, db.unreachable(self.engine, exc))
        self.held = False
        self._drop_advisory_lock()

    # ---------------------------------------------------------------- renew / fence

    def renew(self) -> None:
        """Extend the lease by ``ttl`` from now; ``LeaseLost`` when someone else has it."""
        with db.begin_write(self.engine) as conn:
            self.fence(conn)

    def fence(self, conn: Connection) -> None:
        """Inside the caller's write transaction: extend the lease, or raise ``LeaseLost`` (rolling the page back)."""
        if not self.held or self.lost.is_set():
            raise LeaseLost(f"the {self.name} lease of {self.owner} is no longer held; stopping without writing more")
        result = conn.execute(
            b24sync_lease.update()
            .where((b24sync_lease.c.name == self.name) & (b24sync_lease.c.owner == self.owner))
            .values(expires_at=_now() + timedelta(seconds=self.ttl))
        )
        if result.rowcount != 1:
            self.lost.set()
            raise LeaseLost(f"the {self.name} lease of {self.owner} was taken over by {self.held_by() or 'someone else'}; "
                            "stopping without writing more")

    def held_by(self) -> str | None:
        """Who holds the lease now (None when nobody does)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(b24sync_lease.name):
                return None
            row = conn.execute(sa.select(b24sync_lease).where(b24sync_lease.c.name == self.name)).mappings().first()
            if self._pg:
                busy = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :hi AND objid = :lo AND objsubid = 1"
                ), {"hi": (self._key >> 32) & 0xFFFFFFFF, "lo": self._key & 0xFFFFFFFF}).scalar()
                if not busy:
                    return None
                return row["owner"] if row is not None else "another process"
        if row is None or row["expires_at"] <= _now():
            return None
        return row["owner"]

    # ---------------------------------------------------------------- context manager

    def __enter__(self) -> "Lease":
        self.acquire()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except LeaseLost as exc:
                log.error("%s", exc)
                return
            except Exception as exc:  # noqa: BLE001 - a passing database hiccup; the next tick tries again
                log.warning("lease %s: renewal failed (%s); retrying", self.name, type(exc).__name__)

    def _stop_renewer(self) -> None:
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)
        self._renewer = None

    # ---------------------------------------------------------------- PostgreSQL advisory lock

    def _advisory_key(self) -> int:
        schema = db.current_schema(self.engine) or "public"
        digest = hashlib.sha256(f"b24sync:{self.engine.url.database}:{schema}:{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _take_advisory_lock(self) -> None:
        if self._lock_conn is not None:
            return
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            holder = None
            try:
                holder = self.held_by()
            except SQLAlchemyError:
                pass
            raise LeaseHeld(self._held_message(holder, None), holder)
        self._lock_conn = conn

    def _drop_advisory_lock(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        except SQLAlchemyError:
            pass  # closing the session releases it anyway
        finally:
            conn.close()
