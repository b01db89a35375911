"""``run_sync``: one run of the mirror, in the order that makes it safe to kill at any moment.

1. check the input, the database and (read-only) which portal the mirror belongs to;
2. one probe batch: every stream's first page, top ID and dictionaries, and the portal's clock;
3. under the lease: upgrade a mirror that is behind, record the portal, start the run log;
4. dictionaries, then records and history side by side, page by page, each page with its state;
5. offline events (OAuth), then ``--reconcile``; finish the run log, release the lease.
Nothing is written before the portal has answered the probe, so bad credentials write nothing.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta, timezone, tzinfo
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from connector import errors
from connector.redact import redact
from jobs.lease import Lease, LeaseLost, default_owner
from jobs.sync import dictionaries, events, history, portal, probe, reconcile, runlog, window
from jobs.sync import state as st
from jobs.sync.context import Context, merge_counters, requests_of
from jobs.sync.errors import MirrorUnavailable, PortalRefused, SyncFailed
from jobs.sync.plan import Plan
from jobs.sync.progress import NullProgress, Progress
from jobs.sync.result import FAILED, INTERRUPTED, OK, StreamResult, SyncResult
from jobs.sync.writer import Writer
from mappings import db, entities as ent, fields

log = logging.getLogger("jobs.sync")

LEASE = "sync"
LEASE_TTL = 60.0
OVERLAP = timedelta(0)  # extra seconds re-read before the cursor (the cursor itself is always re-read)
# streams read at once: 3 streams x 2 segments in flight keep the portal's 2 requests a second busy, and
# bound the rows held in memory whatever the portal's size
STREAMS_AT_ONCE = 3


def run_sync(
    client: Any,
    engine: Any,
    *,
    entities: Any = None,
    full: bool = False,
    reconcile: bool = False,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    worker: str | None = None,
    wait: bool | float = False,
    lease_ttl: float = LEASE_TTL,
    overlap: timedelta = OVERLAP,
) -> SyncResult:
    """Sync the mirror behind ``engine`` with the portal behind ``client`` (see the module docstring).

    ``entities`` limits the run (names or "lead,deal"); ``full`` re-reads every record and history
    row; ``reconcile`` compares ID sets afterwards; ``stop`` is checked between pages (the run then
    commits what it has and returns ``interrupted``); ``wait`` waits for another run's lease
    (seconds, or True). Bad input raises a ``jobs.errors.UserError``; a failure part-way returns a
    result with status ``failed`` (what was committed stays, the next run resumes from it).
    """
    started = time.monotonic()
    plan = Plan.make(entities, full=full, reconcile=reconcile)
    identity = portal.identity_of(client)
    mirror = db.shown(engine)
    result = SyncResult(uuid.uuid4().hex, portal=identity.address, mirror=mirror, reconcile=reconcile)
    requests_before = requests_of(client)
    progress = progress or NullProgress()
    stop = stop or threading.Event()

    # 1. read-only checks
    try:
        db.check(engine)
        revision = db.current(engine)
        if revision is not None and revision not in db.revisions():
            raise MirrorUnavailable(f"the mirror {mirror} is at revision {revision}, which this b24sync does not know (newer version?)")
        known = portal.read(engine) if revision is not None else None
        portal.check(known, identity, mirror)
        snapshot = st.load_all(engine) if revision == db.head() else {}
    except db.MirrorDatabaseError as exc:
        raise MirrorUnavailable(str(exc)) from None
    except SQLAlchemyError as exc:
        raise MirrorUnavailable(str(db.unreachable(engine, exc))) from None
    portal_tz = _offset(known)

    # 2. the probe: the first HTTP request, before any write
    run = _Run(client, engine, plan, result, progress, stop, worker, overlap)
    run.mirror_exists = revision is not None
    try:
        reply = run.probe(snapshot, portal_tz)
    finally:
        result.requests = requests_of(client) - requests_before

    # 3. under the lease
    try:
        if revision is None:
            db.upgrade(engine)  # a new mirror: serialised by the database itself
        lease = Lease(engine, LEASE, lease_ttl, owner=default_owner() + (f":{worker}" if worker else ""), wait=wait)
        with lease:
            if not db.is_current(engine):
                before, after = db.upgrade(engine)
                log.warning("the mirror was upgraded from revision %s to %s", before, after)
            run.mirror_exists = True
            run.writer = Writer(engine, lease, reply.time.tzinfo or timezone.utc)
            with run.writer.transaction() as conn:
                portal.record(conn, identity, fields.format_offset(reply.time.tzinfo), mirror)
                runlog.close_abandoned(conn, result.run_id)
                runlog.prune(conn)
                runlog.start(conn, result.run_id, "sync", plan.names, worker)
                if reconcile:
                    runlog.start(conn, result.run_id, "reconcile", [s.name for s in run.reconcilable()], worker)
            states = st.load_all(engine)
            if states != snapshot or reply.time.tzinfo != portal_tz and run.uses_offset:
                log.info("the mirror changed since the probe (another run, or a new portal offset): probing again")
                reply = run.probe(states, reply.time.tzinfo or timezone.utc)
                run.writer.portal_tz = reply.time.tzinfo or timezone.utc
            run.execute(states, reply)
            with run.writer.transaction() as conn:
                for name in plan.names:  # a stream the run never reached ends as the run did
                    if ("sync", name) not in run.parts:
                        run.part("sync", name).status = result.status
                for (job, name), part in run.parts.items():
                    runlog.finish(conn, result.run_id, job, name, part)
                if result.status == OK:
                    portal.finished(conn)
    except db.MirrorDatabaseError as exc:
        raise MirrorUnavailable(str(exc)) from None
    except LeaseLost as exc:
        result.status, result.error = FAILED, str(exc)
    except SQLAlchemyError as exc:
        result.status, result.error = FAILED, str(db.unreachable(engine, exc))
    finally:
        result.requests = requests_of(client) - requests_before
        result.seconds = time.monotonic() - started
        result.entities = run.totals()
    return result


def _offset(known: dict[str, Any] | None) -> tzinfo:
    text = (known or {}).get("timezone")
    try:
        return fields.parse_offset(text) if text else timezone.utc
    except fields.FieldError:
        return timezone.utc


class _Run:
    """One run's moving parts (kept together so the steps above read as a list)."""

    def __init__(self, client: Any, engine: Any, plan: Plan, result: SyncResult, progress: Progress,
                 stop: threading.Event, worker: str | None, overlap: timedelta):
        self.client = client
        self.engine = engine
        self.plan = plan
        self.result = result
        self.progress = progress
        self.stop = stop
        self.worker = worker
        self.overlap = overlap
        self.writer: Writer = Writer(engine)
        self.windows: dict[str, st.StreamState] = {}
        self.selects: dict[str, list[str]] = {}
        self.uses_offset = False
        self.events_state: st.StreamState | None = None
        self.mirror_exists = True  # False for a new mirror: nothing to read (and no SQLite file to create)
        self.parts: dict[tuple[str, str], StreamResult] = {}  # (job, stream) -> its run-log row

    def part(self, job: str, name: str) -> StreamResult:
        """The result of one stream in one job (sync, reconcile) of this run."""
        return self.parts.setdefault((job, name), StreamResult())

    def totals(self) -> dict[str, StreamResult]:
        """Per stream, sync and reconcile added up (the worst status wins), in plan order."""
        order = {name: i for i, name in enumerate([*self.plan.names, events.STREAM])}
        totals: dict[str, StreamResult] = {}
        rank = {OK: 0, INTERRUPTED: 1, FAILED: 2}
        for (job, name), part in sorted(self.parts.items(), key=lambda kv: (order.get(kv[0][1], 99), kv[0][0] != "sync")):
            total = totals.setdefault(name, StreamResult())
            total.add(part)
            total.requests += part.requests
            total.seconds += part.seconds
            if rank.get(part.status, 0) > rank.get(total.status, 0):
                total.status = part.status
            total.error = total.error or (part.error and (part.error if job == "sync" else f"{job}: {part.error}"))
        return totals

    # ---------------------------------------------------------------- probe

    def probe(self, states: dict[str, st.StreamState], portal_tz: tzinfo) -> probe.Reply:
        """Build and send the probe batch for ``states``; the portal refusing us raises here."""
        request = probe.Request(dictionaries=self.plan.of_kind(ent.DICTIONARY))
        known_ufs = self._known_multiple_ufs()
        self.windows, self.selects, self.uses_offset = {}, {}, False
        for stream in self.plan.of_kind(ent.ENTITY):
            state = window.open_or_resume(states.get(stream.name) or st.StreamState(stream.name), full=self.plan.full,
                                          overlap=self.overlap)
            self.windows[stream.name] = state
            self.selects[stream.name] = probe.entity_select(stream, known_ufs.get(stream.name, []))
            self.uses_offset = self.uses_offset or state.window_since is not None
            request.entities[stream.name] = (state, self.selects[stream.name])
        for stream in self.plan.of_kind(ent.HISTORY):
            state = states.get(stream.name) or st.StreamState(stream.name)
            if self.plan.full:
                state = st.StreamState(stream.name, phase=state.phase, cursor_id=0, extra=state.extra)
            self.windows[stream.name] = state
            request.histories[stream.name] = state
        users = states.get("user")
        request.user_pages = int((users.extra if users else {}).get("pages", 1)) + 1
        if events.available(self.client) and all(name in self.windows for name in ent.ENTITIES):
            self.events_state = states.get(events.STREAM) or st.StreamState(events.STREAM, phase=st.INCREMENTAL)
            if self.events_state.extra.get("bound"):
                request.events_process_id = self.events_state.extra["process_id"]
        try:
            return probe.send(self.client, probe.commands(request, portal_tz))
        except errors.AuthError as exc:
            raise PortalRefused(f"the portal {self.result.portal} refused the credentials: {redact(exc)}; nothing was written") from None
        except errors.B24Error as exc:
            raise SyncFailed(f"the portal {self.result.portal} did not answer the first request: {redact(exc)}; nothing was written") from None
        except fields.FieldError as exc:
            raise SyncFailed(f"the portal {self.result.portal} sent a reply b24sync cannot read: {exc}") from None

    def _known_multiple_ufs(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if not self.mirror_exists:
            return found
        try:
            with self.engine.connect() as conn:
                for stream in self.plan.of_kind(ent.ENTITY):
                    found[stream.name] = self.writer.load_userfields(conn, stream).multiple()
        except SQLAlchemyError:
            pass  # a new mirror: nothing known yet
        return found

    def reconcilable(self) -> list[ent.Stream]:
        """Streams ``--reconcile`` compares (records and history; dictionaries are read in full anyway)."""
        return [s for s in self.plan.streams if s.kind in (ent.ENTITY, ent.HISTORY)] if self.plan.reconcile else []

    # ---------------------------------------------------------------- execute

    def execute(self, states: dict[str, st.StreamState], reply: probe.Reply) -> None:
        """Run every stream of the plan from the probe's reply."""
        ctx = Context(self.client, self.writer, reply.time.tzinfo or timezone.utc, reply.time, self.stop, self.progress,
                      self.plan.full, self.overlap)
        for stream in self.plan.of_kind(ent.DICTIONARY):
            self._guard(ctx, "sync", stream, lambda c, r, s=stream: r.add(dictionaries.write(c, s, dictionaries.fetch_all(c, s, reply))))
            if stream.name == "user":
                self._remember_user_pages(reply)
        jobs, sizes = [], {}
        for stream in self.plan.of_kind(ent.ENTITY):
            state = self.windows[stream.name]
            if state.window_cap is None:
                state.window_cap = reply.time
            select = probe.entity_select(stream, self.writer.userfields.get(stream.name, _NoUf()).multiple())
            first = reply.rows(stream, f"{stream.name}.page")
            if select != self.selects[stream.name]:  # a new multiple user field: its values were not asked for
                first = None
            top = reply.top(stream, f"{stream.name}.top")
            sizes[stream.name] = (top or 0) - (state.window_last_id or 0)
            jobs.append((stream, lambda c, r, s=stream, w=state, f=first, t=top, sel=select: window.run(c, s, w, f, t, sel, r)))
        for stream in self.plan.of_kind(ent.HISTORY):
            state = self.windows[stream.name]
            first = reply.rows(stream, f"{stream.name}.page")
            top = reply.top(stream, f"{stream.name}.top")
            sizes[stream.name] = (top or 0) - (state.cursor_id or 0)
            jobs.append((stream, lambda c, r, s=stream, w=state, f=first, t=top: history.run(c, s, w, f, t, r)))
        jobs.sort(key=lambda job: -sizes.get(job[0].name, 0))  # the longest first: the run ends sooner
        self._parallel(ctx, "sync", jobs)
        if self.events_state is not None and not self.stop.is_set() and self.result.status == OK:
            self._events(ctx, reply)
        if self.plan.reconcile and not self.stop.is_set():
            jobs = []
            for stream in self.reconcilable():
                if stream.kind == ent.ENTITY:
                    select = probe.entity_select(stream, self.writer.userfields.get(stream.name, _NoUf()).multiple())
                    jobs.append((stream, lambda c, r, s=stream, sel=select: reconcile.records(c, s, sel, r)))
                else:
                    jobs.append((stream, lambda c, r, s=stream: reconcile.history(c, s, r)))
            self._parallel(ctx, "reconcile", jobs)
        if self.stop.is_set() and self.result.status == OK:
            self.result.status = INTERRUPTED

    def _remember_user_pages(self, reply: probe.Reply) -> None:
        try:
            with self.engine.connect() as conn:
                from sqlalchemy import func, select

                from mappings.tables import users

                count = conn.execute(select(func.count()).select_from(users).where(users.c.deleted_at.is_(None))).scalar() or 0
                state = st.load(conn, "user")
        except SQLAlchemyError:
            return
        pages = max(1, -(-int(count) // probe.PAGE))
        if state.extra.get("pages") != pages:
            state.phase = st.INCREMENTAL
            state.extra = {**state.extra, "pages": pages}
            self.writer.save_state(state)

    def _events(self, ctx: Context, reply: probe.Reply) -> None:
        assert self.events_state is not None
        result = self.part("sync", events.STREAM)
        began = time.monotonic()
        try:
            bound_before = bool(self.events_state.extra.get("bound"))
            if events.ensure_bound(ctx, self.events_state):
                first = reply.results.get("events") if bound_before and reply.ok("events") else None
                handled = events.apply(ctx, self.events_state, first, {n: self.selects[n] for n in ent.ENTITIES},
                                       {n: self.part("sync", n) for n in ent.ENTITIES})
                result.fetched = handled
            self.writer.save_state(self.events_state, unless_equal=True)
        except (errors.B24Error, fields.FieldError) as exc:
            result.status, result.error = FAILED, redact(exc)
            self.result.status, self.result.error = FAILED, self.result.error or f"offline events: {redact(exc)}"
        result.seconds = time.monotonic() - began

    # ---------------------------------------------------------------- streams

    def _parallel(self, ctx: Context, job: str, jobs: list[tuple[ent.Stream, Any]]) -> None:
        """Run the streams side by side, ``STREAMS_AT_ONCE`` at a time, in the order given."""
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(len(jobs), STREAMS_AT_ONCE), thread_name_prefix=f"b24sync-{job}") as pool:
            for future in [pool.submit(self._guard, ctx.for_stream(), job, stream, work) for stream, work in jobs]:
                future.result()

    def _guard(self, ctx: Context, job: str, stream: ent.Stream, work: Any) -> None:
        """Run one stream's work, recording its counts, requests, time and outcome; errors stay in the stream."""
        result = self.part(job, stream.name)
        began, before = time.monotonic(), requests_of(ctx.client)
        try:
            work(ctx, result)
        except LeaseLost as exc:
            result.status, result.error = FAILED, str(exc)
            self.stop.set()
        except (errors.B24Error, fields.FieldError) as exc:
            result.status, result.error = FAILED, redact(exc)
            log.error("%s %s failed: %s", job, stream.name, result.error)
        except SQLAlchemyError as exc:
            result.status, result.error = FAILED, str(db.unreachable(self.engine, exc))
            log.error("%s %s failed: %s", job, stream.name, result.error)
        finally:
            result.requests += requests_of(ctx.client) - before
            result.seconds += time.monotonic() - began
            merge_counters(self.client, ctx.client)
            if ctx.client is not self.client:
                ctx.client.counters.clear()
            self.progress.end(stream.name if job == "sync" else f"{stream.name}:{job}", result)
        if result.status == FAILED:
            self.result.status = FAILED
            self.result.error = self.result.error or f"{stream.name}: {result.error}"
        elif result.status == INTERRUPTED and self.result.status == OK:
            self.result.status = INTERRUPTED


class _NoUf:
    """The user fields of an entity the mirror knows nothing of yet."""

    def multiple(self) -> list[str]:
        """No multiple fields."""
        return []
