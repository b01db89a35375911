"""Bitrix24Client: ``call``, ``batch``, ``list_all`` (the fast keyset export), ``count`` and ``ids`` over one transport.

Every request goes the same way: wait for the method's operating-time ledger and the request pacer,
send with a read bounded by the operation's deadline, refresh an expired OAuth token once, and let
the one retry helper (``connector.retry``) decide what is repeated. Replies are read by
``connector.envelope``; the export's cursor belongs to ``connector.keyset.KeysetExport``.

Retry policy for writes. A write whose reply was lost may have been applied, and repeating it
could create a second deal. So a write (anything but list/get/fields-like reads) is repeated only
after the error types that say the portal certainly did not run it (``errors.NOT_SENT``): 503
``QUERY_LIMIT_EXCEEDED`` and 429 ``OPERATION_TIME_LIMIT`` (both refused before the handler),
``ConnectFailed`` (no connection was ever opened) and ``RefreshFailed`` (refused at auth with
``expired_token``, then the token endpoint failed). Timeouts, dropped connections, truncated
bodies, HTML pages and 5xx are raised to the caller for a write, and retried for a read.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from connector import errors, redact
from connector.auth import Auth, OAuthAuth, WebhookAuth
from connector.catalog import ListShape, check_method, is_write, shape_of, stage_entity_id
from connector.encoding import command_text
from connector.envelope import BatchParts, Reply, batch_parts
from connector.keyset import MAX_BATCH, KeysetExport, OffsetPages, Segment
from connector.ratelimit import OperatingLedger, RequestPacer
from connector.retry import Deadline, Retry, RetryPolicy
from connector.transport import HttpTransport, Transport

__all__ = ["Bitrix24Client", "Command", "RetryPolicy", "oauth_client"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# one call: (method, params)
Command = tuple[str, Mapping[str, Any] | None]


class Bitrix24Client:
    """A polite, retrying Bitrix24 REST client (see the module docstring for the retry policy)."""

    def __init__(
        self,
        transport: Transport,
        auth: Auth,
        *,
        bucket: RequestPacer | None = None,
        ledger: OperatingLedger | None = None,
        retry: RetryPolicy | None = None,
        clock: Any = time.monotonic,
        sleep: Any = time.sleep,
        rng: random.Random | None = None,
    ):
        self.transport = transport
        self.auth = auth
        self.clock = clock
        self.sleep = sleep
        self.bucket = bucket if bucket is not None else RequestPacer(clock=clock, sleep=sleep)
        self.ledger = ledger if ledger is not None else OperatingLedger()
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self.counters: Counter[str] = Counter()
        self._counters_lock = threading.Lock()

    def _count(self, name: str, amount: int = 1) -> None:
        with self._counters_lock:
            self.counters[name] += amount

    @classmethod
    def from_webhook(cls, url: str, *, plan: str = "standard", **options: Any) -> "Bitrix24Client":
        """A client for an incoming webhook URL over HTTP; ``plan="enterprise"`` for 250/5 limits."""
        options.setdefault("bucket", RequestPacer.for_plan(plan))
        return cls(HttpTransport(), WebhookAuth(url), **options)

    def __repr__(self) -> str:
        return f"Bitrix24Client({self.auth!r})"

    def close(self) -> None:
        """Release the transport's connections."""
        self.transport.close()

    # ---------------------------------------------------------------- call

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Reply:
        """Call one method and return its ``Reply`` (``.result``, ``.total``, ``.next``, ``.time``).

        ``Reply.mapping()`` / ``Reply.rows(key)`` read the result in the shape expected, or raise
        ``BadReplyError``. A method name that is not ``[A-Za-z0-9_.]+`` is refused before any request.
        """
        check_method(method)
        params = dict(params or {})
        return self._execute(method, params, write=is_write(method, params))

    def result(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call one method and return just its ``result``."""
        return self.call(method, params).result

    def _retry(self, deadline: Deadline | None = None) -> Retry:
        """The retry state of one logical operation (a fresh deadline unless one is shared)."""
        return Retry(self.retry, clock=self.clock, sleep=self.sleep, rng=self.rng, deadline=deadline, on_retry=self._retried)

    def _retried(self, label: str, error: errors.B24Error, failures: int, wait: float) -> None:
        """Count and log one retry (the message names the error's type and code, never a secret)."""
        self._count("retries")
        log.warning(
            redact.redact(
                f"{label}: {type(error).__name__} {getattr(error, 'code', '') or ''}".rstrip()
                + f" on attempt {failures} of {self.retry.attempts}; retrying in {wait:.1f} s"
            )
        )

    def _execute(
        self,
        method: str,
        params: dict[str, Any],
        *,
        write: bool,
        inner: Iterable[str] = (),
        deadline: Deadline | None = None,
        read: Callable[[Reply], T] | None = None,
    ) -> Any:
        """One request under the retry helper; ``read(reply)`` checks its shape inside the attempt,
        so a reply of the wrong shape is retried (for a read) like any other bad reply."""
        methods = (method, *inner)

        def attempt(limit: Deadline) -> Any:
            reply = self._attempt(method, params, methods, limit)
            return read(reply) if read is not None else reply

        return self._retry(deadline).run(
            attempt,
            retriable=lambda exc: errors.may_repeat(exc, write),
            wait_for=lambda exc: self.ledger.delay_for(methods) if isinstance(exc, errors.OperationTimeLimit) else None,
            label=method,
        )

    def _attempt(self, method: str, params: dict[str, Any], methods: Sequence[str], deadline: Deadline) -> Reply:
        self._throttle(methods, deadline)
        refreshes_left = 2  # a second one when the tokens adopted from another process had expired too
        while True:
            generation = self.auth.generation
            try:
                return self._send(method, params, deadline)
            except errors.ExpiredToken:
                if not refreshes_left:
                    raise
                refreshes_left -= 1
                self._count("expired_token")
                self._refresh(generation, deadline)
            self._throttle(methods, deadline)

    def _refresh(self, generation: int, deadline: Deadline) -> None:
        """Refresh the OAuth token; a token endpoint that failed on its way is a ``RefreshFailed``.

        The call itself was refused at auth (``expired_token``), so repeating it is safe even for a
        write when only the refresh failed (timeout, dropped connection, 5xx of the token server).
        """

        def fetch(url: str, query: Mapping[str, str]) -> Mapping[str, Any]:
            return self.transport.fetch_token(url, query, timeout=max(0.0, deadline.remaining()))

        try:
            self.auth.refresh(generation, fetch)
        except errors.RetriableError as exc:
            raise errors.RefreshFailed(exc) from None

    def _throttle(self, methods: Sequence[str], deadline: Deadline) -> None:
        """Wait for the methods' operating-time ledger and a pacer slot, or raise if that passes ``deadline``."""
        delay = self.ledger.delay_for(methods)
        if delay > 0:
            names = ", ".join(sorted(set(methods)))
            if not deadline.allows(delay):
                blocked = max(methods, key=self.ledger.delay)
                raise deadline.expire(errors.OperationTimeLimit(
                    "OPERATION_TIME_LIMIT",
                    f"{blocked} may not be called for {delay:.0f} s more, past the {deadline.seconds:.0f} s time limit",
                    429, blocked, retry_at=None,
                ))
            log.info("pausing %.1f s for the operating-time budget of %s", delay, names)
            self._count("ledger_pauses")
            self.sleep(delay)
        wait = self.bucket.reserve(limit=max(0.0, deadline.remaining()))
        if wait is None:
            raise deadline.expire(errors.QueryLimitExceeded(
                "QUERY_LIMIT_EXCEEDED",
                f"the next request slot is further away than the {deadline.seconds:.0f} s time limit",
                503, methods[0],
            ))
        if wait > 0:
            self.bucket.sleep(wait)

    def _send(self, method: str, params: dict[str, Any], deadline: Deadline) -> Reply:
        """One request; its reply may take no longer than what is left of ``deadline``."""
        left = deadline.remaining()
        if left <= 0:
            raise deadline.expire(errors.TransportError("", f"no time left for the call within the {deadline.seconds:.0f} s time limit", 0, method))
        self._count("requests")
        try:
            reply = self.transport.send(method, params, self.auth, timeout=left)
        except errors.OperationTimeLimit as exc:
            self._count("429")
            self.ledger.block(method, exc.retry_at)
            raise
        except errors.QueryLimitExceeded:
            self._count("503")
            self.bucket.overflowed()
            raise
        self.ledger.record(method, reply.time)
        return reply

    # ---------------------------------------------------------------- batch

    def batch(
        self,
        calls: Sequence[Command] | Mapping[str, Command],
        *,
        halt: bool = False,
        collect: bool = False,
    ) -> list[Any] | dict[str, Any]:
        """Run any number of calls in batches of at most 50 and return their results in order.

        ``calls`` is a list of ``(method, params)`` (results come back as a list) or a mapping
        name -> ``(method, params)`` (results come back as a dict). A failed command becomes a
        ``BatchCommandError`` naming it: raised at once with ``halt=True`` (later commands do not
        run), raised after every command ran with ``halt=False``, or put in place of its result
        with ``collect=True``. Retriable command errors of commands that do not reference others
        (``$result[...]``) are repeated in a follow-up batch. References only work within one
        packet of 50.
        """
        keyed = isinstance(calls, Mapping)
        items = list(calls.items()) if keyed else [(f"c{i}", call) for i, call in enumerate(calls)]
        for _, (method, _) in items:
            check_method(method)
        outcomes: dict[str, Any] = {}
        first_error: errors.BatchCommandError | None = None
        for start in range(0, len(items), MAX_BATCH):
            packet = [(name, method, dict(params or {})) for name, (method, params) in items[start : start + MAX_BATCH]]
            done = self._batch_packet(packet, halt)
            for name, _, _ in packet:
                if name not in done:
                    break
                value = done[name]
                outcomes[name] = value
                if isinstance(value, errors.BatchCommandError):
                    if halt:
                        raise value
                    first_error = first_error or value
        if first_error is not None and not collect:
            raise first_error
        if keyed:
            return outcomes
        return [outcomes[name] for name, _ in items]

    def _batch_packet(self, packet: list[tuple[str, str, dict[str, Any]]], halt: bool) -> dict[str, Any]:
        """Run one packet of at most 50 commands; name -> result or BatchCommandError.

        Commands that failed with an error after which they may be repeated go again in a
        follow-up batch, under one retry budget for the packet.
        """
        done: dict[str, Any] = {}
        pending = packet
        retry = self._retry()
        while True:
            parts = self._send_batch({name: (method, params) for name, method, params in pending}, halt, deadline=retry.deadline)
            again: list[tuple[str, str, dict[str, Any]]] = []
            failed: dict[str, errors.B24Error] = {}
            wait = 0.0
            for name, method, params in pending:
                if name in parts.results:
                    done[name] = parts.results[name]
                    continue
                error = parts.error_of(name, method)
                if error is None:
                    if halt:
                        break  # halted before this command
                    done[name] = errors.BatchCommandError(name, errors.BadReplyError("", "no result and no error", 200, method))
                    continue
                if not halt and "$result" not in command_text(method, params) and errors.may_repeat(error, is_write(method, params)):
                    again.append((name, method, params))
                    failed[name] = error
                    wait = max(wait, self.ledger.delay(method) if isinstance(error, errors.OperationTimeLimit) else retry.backoff())
                    continue
                done[name] = errors.BatchCommandError(name, error)
                if halt:
                    return done
            if not again:
                return done
            if not retry.again(next(iter(failed.values())), wait=wait, label=f"batch: {len(again)} command(s)"):
                for name, _, _ in again:  # give up with the errors the commands got
                    done[name] = errors.BatchCommandError(name, failed[name])
                return done
            pending = again

    def _send_batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], halt: bool, *, deadline: Deadline | None = None) -> BatchParts:
        """One HTTP request carrying up to 50 commands; records each command's operating time."""
        if len(commands) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} commands")
        cmd = {name: command_text(method, params) for name, (method, params) in commands.items()}
        write = any(is_write(method, params) for method, params in commands.values())
        inner = sorted({method for method, _ in commands.values()})
        parts: BatchParts = self._execute("batch", {"halt": 1 if halt else 0, "cmd": cmd}, write=write, inner=inner, deadline=deadline, read=batch_parts)
        for name, (method, _) in commands.items():
            block = parts.times.get(name)
            if isinstance(block, Mapping):
                self.ledger.record(method, block)
            if isinstance(parts.error_of(name, method), errors.OperationTimeLimit):
                self.ledger.block(method, parts.reset_of(name), hint=parts.batch_reset_at)
        return parts

    # ---------------------------------------------------------------- list_all

    def list_all(
        self,
        method: str,
        filter: Mapping[str, Any] | None = None,
        select: Sequence[str] | None = None,
        entity_type_id: int | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        strategy: str = "chain",
        batch_size: int = MAX_BATCH,
        shape: ListShape | None = None,
        concurrency: int = 3,
        ceiling: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every record of a list method once, in ID order, holding at most one batch in memory.

        The fast export the docs recommend: ``order ID ASC``, ``filter >ID`` (keyset), ``start=-1``
        (no COUNT), 50 pages of 50 rows per HTTP request. ``strategy="chain"`` links the pages of a
        batch by ``$result[prev][49][ID]`` references, ``"window"`` gives each page its own ID range
        of 50 (fewer rows per request when IDs have gaps, but no references). A user's own ``>ID``
        or ``>=ID`` filter becomes the starting cursor; ``<ID``/``<=ID`` bound the end. Records
        added, changed or deleted during the export never cause a repeat or a skip of a record that
        existed throughout: the cursor only moves forward over IDs. ``shape`` overrides the paging
        shape for a method ``SHAPES`` does not know.

        With ``concurrency > 1`` (chain strategy) the ID range below the ceiling is cut into segments
        expected to hold 2,500 rows each, and up to ``concurrency`` segments are fetched at once; rows
        are still yielded in ID order, and memory holds at most ``concurrency`` batches. A segment
        ends at its upper bound or at a short page, as the docs' recipe has it; the sequential chain
        (``concurrency=1``) goes further and re-reads after a short page below the ceiling.

        ``ceiling`` is the highest matching ID when the caller already knows it (it probed the
        method in a batch of its own): no probe is spent and the export goes straight to one
        chained batch of up to ``batch_size`` pages; segments start only once the density of
        matching IDs has been seen.

        A page that does not advance the export (the same cursor again, rows without IDs, a reply
        of another shape) is retried like a failed page and then raised as ``BadReplyError``.
        """
        if strategy not in ("chain", "window"):
            raise ValueError("strategy must be 'chain' or 'window'")
        check_method(method)
        batch_size = max(1, min(MAX_BATCH, batch_size))
        export = KeysetExport(method, filter, select, entity_type_id, params, shape)
        if ceiling is not None:
            export.known_ceiling(ceiling)
        retry = self._retry()  # one budget per page: renewed whenever the export moves on
        while not export.done:
            if strategy == "chain" and concurrency > 1 and export.wants_segments(batch_size):
                yield from self._export_segments(export, batch_size, concurrency)
                break
            commands = export.commands(strategy, batch_size)
            if not commands:
                break
            parts = self._send_batch(commands, halt=True, deadline=retry.deadline)
            read = export.read_batch(commands, parts)
            yield from read.rows
            if read.advanced:
                retry.progressed()
            if read.error is None and (read.advanced or export.done):
                continue
            stuck = errors.BadReplyError("", f"the export does not advance past ID {export.cursor}", 200, method)
            self._page_failed(retry, read.error or stuck, f"{method}: page after ID {export.cursor}")
        self._count("exported_rows", export.rows)

    def _page_failed(self, retry: Retry, error: errors.B24Error, label: str) -> None:
        """A page or segment of an export failed: wait for the next attempt, or raise ``error``."""
        cause = error.error if isinstance(error, errors.BatchCommandError) else error
        if not isinstance(cause, errors.RetriableError):
            raise error
        wait = self.ledger.delay(cause.method) if isinstance(cause, errors.OperationTimeLimit) else None
        if not retry.again(error, wait=wait, label=label):
            raise error

    def _export_segments(self, export: KeysetExport, batch_size: int, concurrency: int) -> Iterator[dict[str, Any]]:
        """Fetch ``(cursor, ceiling]`` as segments, ``concurrency`` at a time, and yield rows in ID order."""
        assert export.ceiling is not None
        width = export.segment_width(batch_size)
        next_low = export.cursor
        pending: deque[tuple[int, int, Future[Segment]]] = deque()
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="b24-export")
        retry = self._retry()  # of the segment being re-read after a failure
        try:
            while True:
                while len(pending) < concurrency and next_low < export.ceiling:
                    high = min(next_low + width, export.ceiling)
                    pending.append((next_low, high, pool.submit(self._fetch_segment, export, next_low, high, batch_size)))
                    next_low = high
                if not pending:
                    break
                low, high, future = pending.popleft()
                segment = future.result()
                while True:
                    yield from export.emit(segment.rows)
                    if segment.complete:
                        break
                    label = f"{export.method}: segment after ID {segment.cursor}"
                    if segment.cursor > low:
                        retry.progressed()  # an overflowing segment: fetch its rest at once
                    if segment.error is not None:
                        self._page_failed(retry, segment.error, label)
                    elif segment.cursor <= low:
                        stuck = errors.BadReplyError("", f"the export does not advance past ID {low}", 200, export.method)
                        if not retry.again(stuck, wait=0.0, label=label):
                            raise stuck
                    low = segment.cursor
                    segment = self._fetch_segment(export, low, high, batch_size, retry.deadline)  # the rest of it, before later ones
                retry.progressed()
                export.reached(high)
                width = export.segment_width(batch_size)
        finally:
            for _, _, future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
        export.finish()

    def _fetch_segment(self, export: KeysetExport, low: int, high: int, batch_size: int, deadline: Deadline | None = None) -> Segment:
        """One chained batch over ``low < ID <= high``; complete when a short page or ``high`` is reached."""
        commands = export.segment_commands(low, high, batch_size)
        parts = self._send_batch(commands, halt=True, deadline=deadline)
        return export.read_segment(Segment(low, high), commands, parts)

    # ---------------------------------------------------------------- counting and IDs

    def count(self, method: str, filter: Mapping[str, Any] | None = None, entity_type_id: int | None = None) -> int:
        """The number of records matching ``filter``: one counted page (``select ID``, ``start=0``), its ``total``."""
        check_method(method)
        shape = shape_of(method)
        params: dict[str, Any] = {"filter": dict(filter or {}), "select": [shape.id_field], "start": 0}
        if entity_type_id is not None:
            params["entityTypeId"] = entity_type_id
        total: int = self._execute(method, params, write=is_write(method, params), read=Reply.counted_total)
        return total

    def ids(self, method: str, filter: Mapping[str, Any] | None = None, entity_type_id: int | None = None) -> Iterator[int]:
        """The ID of every record matching ``filter``, in ascending order (a keyset export selecting only the ID)."""
        id_field = shape_of(check_method(method)).id_field
        for row in self.list_all(method, filter, [id_field], entity_type_id):
            yield int(row[id_field])

    def pages(self, method: str, params: Mapping[str, Any] | None = None, key: str | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a method that pages by ``start``/``next`` (``crm.category.list``: ``key="categories"``).

        A ``next`` that does not move forward, or that never ends, is refused (``BadReplyError``).
        """
        check_method(method)
        pager = OffsetPages(method, int((params or {}).get("start") or 0))

        def read(reply: Reply) -> tuple[list[dict[str, Any]], int | None]:
            rows = reply.rows(key)
            return rows, pager.following(reply, len(rows))

        while pager.start is not None:
            page_params = {**(params or {}), "start": pager.start}
            rows, following = self._execute(method, page_params, write=is_write(method, page_params), read=read)
            yield from rows
            pager.advance(following)

    # ---------------------------------------------------------------- typed helpers

    def deals(self, filter: Mapping[str, Any] | None = None, select: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every deal (``crm.deal.list``), legacy field names and string values."""
        return self.list_all("crm.deal.list", filter, select)

    def leads(self, filter: Mapping[str, Any] | None = None, select: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every lead (``crm.lead.list``)."""
        return self.list_all("crm.lead.list", filter, select)

    def contacts(self, filter: Mapping[str, Any] | None = None, select: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every contact (``crm.contact.list``)."""
        return self.list_all("crm.contact.list", filter, select)

    def companies(self, filter: Mapping[str, Any] | None = None, select: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every company (``crm.company.list``)."""
        return self.list_all("crm.company.list", filter, select)

    def items(self, entity_type_id: int, filter: Mapping[str, Any] | None = None, select: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of an entity type through the universal ``crm.item.list`` (camelCase, typed values)."""
        return self.list_all("crm.item.list", filter, select, entity_type_id)

    def stage_history(self, entity_type_id: int = 2, filter: Mapping[str, Any] | None = None, select: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every stage-history row of deals (2) or leads (1), ``crm.stagehistory.list``."""
        return self.list_all("crm.stagehistory.list", filter, select, entity_type_id)

    def users(self, filter: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every user (``user.get``)."""
        return self.list_all("user.get", filter)

    def categories(self, entity_type_id: int = 2) -> list[dict[str, Any]]:
        """Every pipeline of an entity type (``crm.category.list``), default pipeline (id 0) included."""
        return list(self.pages("crm.category.list", {"entityTypeId": entity_type_id}, "categories"))

    def stages(self, category_id: int = 0) -> list[dict[str, Any]]:
        """The stages of one deal pipeline, sorted as the portal sorts them (``crm.status.list``)."""
        params = {"filter": {"ENTITY_ID": stage_entity_id(category_id)}, "order": {"SORT": "ASC"}}
        rows: list[dict[str, Any]] = self._execute("crm.status.list", params, write=False, read=Reply.rows)
        return rows


def oauth_client(
    client_id: str,
    client_secret: str,
    store: Any,
    *,
    oauth_server: str | None = None,
    client_endpoint: str | None = None,
    plan: str = "standard",
    **options: Any,
) -> Bitrix24Client:
    """A client for an OAuth application whose tokens live in ``store`` (e.g. ``JsonFileTokenStore``)."""
    options.setdefault("bucket", RequestPacer.for_plan(plan))
    auth = OAuthAuth(client_id, client_secret, store=store, oauth_server=oauth_server, client_endpoint=client_endpoint)
    return Bitrix24Client(HttpTransport(), auth, **options)
