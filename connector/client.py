"""Bitrix24Client: ``call``, ``batch`` and ``list_all`` (the fast keyset export) over one transport.

Every call goes through the same path: wait for the method's operating-time ledger and the
leaky bucket, send, refresh an expired OAuth token once, retry what is safe to retry (tenacity,
jittered exponential backoff, bounded in attempts and in total time), raise the rest at once.

Retry policy for writes. A write whose reply was lost may have been applied, and repeating it
could create a second deal. So a write (anything but list/get/fields-like reads) is retried only
when the portal certainly did not run it: 503 ``QUERY_LIMIT_EXCEEDED`` and 429
``OPERATION_TIME_LIMIT`` (both refused before the handler), 401 ``expired_token`` (refused at auth),
``ConnectFailed`` (no connection was ever opened), and a failure of the token endpoint while
refreshing after ``expired_token`` (the call itself was refused at auth). Timeouts, dropped
connections, truncated bodies, HTML pages and 5xx are raised to the caller for a write, and
retried for a read.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tenacity

from connector import errors, redact
from connector.auth import Auth, OAuthAuth, WebhookAuth
from connector.encoding import encode_query
from connector.envelope import Reply
from connector.ratelimit import PLANS, LeakyBucket, OperatingLedger
from connector.catalog import ListShape, SHAPES, is_list_method, is_write, shape_of, stage_entity_id  # noqa: F401 (re-exported)
from connector.transport import HttpTransport, Transport

log = logging.getLogger(__name__)

PAGE = 50  # rows per page; the portal does not allow more
MAX_BATCH = 50  # commands per batch

@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per call, a deadline for all of them, and the backoff curve.

    ``max_elapsed`` bounds every wait of one logical operation (a call, a batch packet, one page
    or segment of ``list_all``): bucket slots, ledger pauses, 429 blocks and backoff alike.
    """

    attempts: int = 6  # including the first one
    max_elapsed: float = 660.0  # seconds from the first attempt; covers one operating-time window (600 s)
    base: float = 0.5  # first backoff in seconds, doubled each retry, plus up to ``base`` of jitter
    cap: float = 30.0  # longest single backoff (waits for an operating-time reset are not capped)


class Deadline:
    """The end of one logical operation's time: every wait is checked against it before it is slept.

    ``last`` is the latest error seen under it (raised when a wait would pass the end);
    ``exhausted`` says that has happened, so nothing retries any more.
    """

    def __init__(self, clock: Any, seconds: float):
        self.clock = clock
        self.end = clock() + seconds
        self.seconds = seconds
        self.last: errors.B24Error | None = None
        self.exhausted = False

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.end - self.clock()

    def allows(self, wait: float) -> bool:
        """True when a wait of ``wait`` seconds ends before the deadline."""
        return wait <= self.remaining()

    def expire(self, fallback: errors.B24Error) -> errors.B24Error:
        """Mark the deadline as reached; the error to raise: the last one seen, else ``fallback``."""
        self.exhausted = True
        return self.last or fallback


def _id_key(key: str, id_field: str) -> tuple[str, str] | None:
    """``">=ID"`` -> (">=", "ID") when the key filters the ID field, else None."""
    operator = ""
    for prefix in ("!=", ">=", "<=", "=", ">", "<", "!", "@"):
        if key.startswith(prefix):
            operator = prefix
            break
    if key[len(operator):].lower() == id_field.lower():
        return operator, key[len(operator):]
    return None


class KeysetExport:
    """One keyset export (``order ID ASC``, ``filter >ID``): its cursor, ceiling and end.

    The cursor is the highest ID returned so far; a row at or below it is never returned again.
    The ceiling is the highest matching ID when the export began: every record that exists for
    the whole export has an ID at or below it, so the export may end there. It also ends at an
    empty page, or at a short page once the cursor has reached the ceiling (a short page below
    the ceiling is not trusted: the next batch starts again from the cursor).
    """

    def __init__(
        self,
        method: str,
        filter: Mapping[str, Any] | None = None,
        select: Sequence[str] | None = None,
        entity_type_id: int | None = None,
        params: Mapping[str, Any] | None = None,
        shape: ListShape | None = None,
    ):
        self.method = method
        self.shape = shape or shape_of(method)
        idf = self.shape.id_field
        self.cursor = 0
        self.upper_keys: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for key, value in (filter or {}).items():
            found = _id_key(str(key), idf)
            if found and found[0] in (">", ">="):
                bound = _as_int(value, key)
                self.cursor = max(self.cursor, bound if found[0] == ">" else bound - 1)
            elif found and found[0] in ("<", "<="):
                self.upper_keys[str(key)] = value
            else:
                rest[str(key)] = value
        self.filter = rest
        self.select: list[str] | None = None
        if select:
            self.select = list(select)
            if not any(str(s).lower() == idf.lower() for s in self.select):
                self.select.append(idf)
        self.base: dict[str, Any] = {k: v for k, v in (params or {}).items() if str(k).lower() not in ("filter", "select", "order", "sort", "start")}
        if entity_type_id is not None:
            self.base["entityTypeId"] = entity_type_id
        self.ceiling: int | None = None
        self.done = False
        self.rows = 0
        self.skipped = 0  # rows at or below the cursor that a misbehaving reply carried
        self.origin = self.cursor  # where the export began (for the density of matching IDs)
        self.top_span = 0  # IDs spanned by the probe's 50 rows below the ceiling

    # ---- commands

    def _params(self, filt: dict[str, Any], *, descending: bool = False, select: list[str] | None = None) -> dict[str, Any]:
        idf = self.shape.id_field
        params = dict(self.base)
        params["filter"] = filt
        direction = "DESC" if descending else "ASC"
        if self.shape.sort_style:
            params["sort"], params["order"] = idf, direction
        else:
            params["order"] = {idf: direction}
        chosen = select if select is not None else self.select
        if chosen:
            params["select"] = chosen
        params["start"] = 0 if self.shape.counts else -1
        return params

    def page(self, after: int | str) -> dict[str, Any]:
        """Parameters of the page of rows with ID above ``after`` (a number or a ``$result`` reference)."""
        return self._params({**self.filter, **self.upper_keys, f">{self.shape.id_field}": after})

    def window(self, low: int, high: int) -> dict[str, Any]:
        """Parameters of the rows with ``low < ID <= high`` (at most 50 when ``high - low <= 50``)."""
        idf = self.shape.id_field
        return self._params({**self.filter, f">{idf}": low, f"<={idf}": high})

    def probe(self) -> dict[str, Any]:
        """Parameters of a page sorted by ID descending: its first row gives the ceiling."""
        return self._params({**self.filter, **self.upper_keys, f">{self.shape.id_field}": self.cursor}, descending=True, select=[self.shape.id_field])

    def reference(self, command: str) -> str:
        """The batch reference to the ID of the 50th row of ``command``'s page."""
        inner = f"[{self.shape.items_key}]" if self.shape.items_key else ""
        return f"$result[{command}]{inner}[{PAGE - 1}][{self.shape.id_field}]"

    def density(self) -> float | None:
        """Matching rows per ID, pooled from the rows exported so far and the probe's top page."""
        rows, span = self.rows, self.cursor - self.origin
        if self.top_span:
            rows, span = rows + PAGE - 1, span + self.top_span
        return min(1.0, rows / span) if rows > 0 and span > 0 else None

    def remaining(self) -> float | None:
        """Estimated rows left below the ceiling (None while the ceiling is unknown)."""
        if self.ceiling is None:
            return None
        return max(0, self.ceiling - self.cursor) * (self.density() or 1.0)

    def pages_for(self, span: int, limit: int) -> int:
        """Pages to ask for ``span`` IDs: enough for the estimated rows with a margin, never more than can exist."""
        dense = math.ceil(span / PAGE)
        expected = math.ceil(span * (self.density() or 1.0) * 1.25 / PAGE) + 1
        return max(1, min(limit, dense, expected))

    def pages_wanted(self, limit: int) -> int:
        """How many pages the next batch should ask for (an estimate; a short guess costs one more batch)."""
        if self.ceiling is None:
            return limit
        return self.pages_for(self.ceiling - self.cursor, limit)

    # ---- replies

    def rows_of(self, result: Any) -> list[dict[str, Any]]:
        """The rows of one page's ``result``, whatever the method's shape."""
        if self.shape.items_key is not None:
            if isinstance(result, Mapping):
                result = result.get(self.shape.items_key, [])
            elif result in ([], None):
                result = []
        if isinstance(result, Mapping):  # PHP turns a list with holes into an object
            result = list(result.values())
        if not isinstance(result, list):
            raise errors.BadReplyError("", f"{self.method} returned {type(result).__name__}, not rows", 200, self.method)
        return result

    def set_ceiling(self, result: Any) -> None:
        """Take the ceiling from the probe page; no row at all means nothing to export.

        The ceiling is trusted only when the page really came sorted by ID descending (or holds
        every matching row): a method that ignored the order must not end the export early.
        """
        rows = self.rows_of(result)
        if not rows:
            self.ceiling = self.cursor
            self.done = True
            return
        ids = [self.row_id(row) for row in rows]
        descending = all(a > b for a, b in zip(ids, ids[1:]))
        self.ceiling = max(ids) if len(ids) < PAGE or descending else None
        if descending and len(ids) == PAGE:
            self.top_span = ids[0] - ids[-1]

    def known_ceiling(self, ceiling: int) -> None:
        """Take a ceiling the caller already knows (it probed the method itself); no probe is spent."""
        self.ceiling = ceiling
        if ceiling <= self.cursor:
            self.done = True

    def row_id(self, row: Mapping[str, Any]) -> int:
        """The integer ID of a row (stage history gives ints or strings)."""
        try:
            return int(row[self.shape.id_field])
        except (KeyError, TypeError, ValueError):
            raise errors.BadReplyError("", f"a row of {self.method} has no {self.shape.id_field}", 200, self.method) from None

    def consume(self, rows: list[dict[str, Any]], *, window_top: int | None = None) -> list[dict[str, Any]]:
        """Rows above the cursor, in order; advance the cursor and decide whether the export is over."""
        fresh: list[dict[str, Any]] = []
        for row in rows:
            rid = self.row_id(row)
            if rid <= self.cursor:
                self.skipped += 1
                continue
            self.cursor = rid
            fresh.append(row)
        self.rows += len(fresh)
        if window_top is not None:  # a window is complete whatever its row count
            self.cursor = max(self.cursor, window_top)
        elif not rows:
            self.done = True
        elif len(rows) >= PAGE and not fresh:
            raise errors.B24Error("KEYSET_STUCK", f"{self.method}: a full page brought no ID above {self.cursor}", 0, self.method)
        if self.ceiling is not None and self.cursor >= self.ceiling:
            self.done = True
        return fresh


def _as_int(value: Any, key: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"filter {key!r} must be an integer ID, got {value!r}") from None


@dataclass
class Segment:
    """The rows of ``low < ID <= high`` fetched by one chained batch; ``cursor`` is the last ID reached."""

    low: int
    high: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    cursor: int = 0
    complete: bool = False
    error: errors.B24Error | None = None  # a retriable page error that cut the chain short
    failed: str = ""  # the command that failed


# ---------------------------------------------------------------- batch replies


@dataclass
class BatchParts:
    """A batch reply taken apart: results, errors, totals, nexts and time blocks per command."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    nexts: dict[str, Any] = field(default_factory=dict)
    times: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_reply(cls, reply: Reply) -> "BatchParts":
        """Split ``reply.result`` (PHP may print any empty part, or a 0..n-1 keyed part, as a list)."""
        body = reply.result if isinstance(reply.result, Mapping) else {}

        def part(name: str) -> dict[str, Any]:
            value = body.get(name)
            if isinstance(value, list):
                return {str(i): v for i, v in enumerate(value)}
            return dict(value) if isinstance(value, Mapping) else {}

        return cls(part("result"), part("result_error"), part("result_total"), part("result_next"), part("result_time"))


def command_text(method: str, params: Mapping[str, Any] | None) -> str:
    """One batch command: ``method?query`` with the parameters encoded as PHP reads them."""
    return f"{method}?{encode_query(params)}" if params else method


def command_error(error: Any, method: str) -> errors.B24Error:
    """The classified error of one failed batch command."""
    body = error if isinstance(error, Mapping) else {"error": "", "error_description": str(error)}
    code = body.get("error", "")
    status = errors.HTTP_STATUS.get(code, 400) if isinstance(code, str) else 400
    return errors.classify(status, dict(body), method)


def _reset_at(block: Any) -> float | None:
    """``operating_reset_at`` of a time block, when it has a usable one."""
    if not isinstance(block, Mapping):
        return None
    try:
        return float(block.get("operating_reset_at") or 0) or None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- the client

Call = tuple[str, Mapping[str, Any] | None]


class Bitrix24Client:
    """A polite, retrying Bitrix24 REST client (see the module docstring for the retry policy)."""

    def __init__(
        self,
        transport: Transport,
        auth: Auth,
        *,
        bucket: LeakyBucket | None = None,
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
        self.bucket = bucket if bucket is not None else LeakyBucket(clock=clock, sleep=sleep)
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
        burst, rate = PLANS[plan]
        options.setdefault("bucket", LeakyBucket(burst, rate))
        return cls(HttpTransport(), WebhookAuth(url), **options)

    def __repr__(self) -> str:
        return f"Bitrix24Client({self.auth!r})"

    def close(self) -> None:
        """Release the transport's connections."""
        self.transport.close()

    # ---------------------------------------------------------------- call

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Reply:
        """Call one method and return its ``Reply`` (``.result``, ``.total``, ``.next``, ``.time``)."""
        params = dict(params or {})
        return self._execute(method, params, write=is_write(method, params))

    def result(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call one method and return just its ``result``."""
        return self.call(method, params).result

    def _deadline(self) -> Deadline:
        """A fresh deadline of ``retry.max_elapsed`` seconds for one logical operation."""
        return Deadline(self.clock, self.retry.max_elapsed)

    def _execute(
        self,
        method: str,
        params: dict[str, Any],
        *,
        write: bool,
        inner: Iterable[str] = (),
        deadline: Deadline | None = None,
    ) -> Reply:
        methods = (method, *inner)
        policy = self.retry
        limit = deadline or self._deadline()

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= policy.attempts or limit.exhausted:
                return True
            return not limit.allows(state.upcoming_sleep)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda exc: not limit.exhausted and self._may_retry(exc, write)),
            wait=lambda state: self._backoff(state, methods),
            stop=stop,
            sleep=self.sleep,
            before_sleep=lambda state: self._log_retry(method, state),
            reraise=True,
        )
        return retrying(self._attempt, method, params, methods, limit)

    @staticmethod
    def _may_retry(exc: BaseException, write: bool) -> bool:
        if isinstance(exc, (errors.QueryLimitExceeded, errors.OperationTimeLimit, errors.ConnectFailed)):
            return True  # the portal certainly did not run the call
        if getattr(exc, "unsent", False):
            return True  # the token refresh failed: the call was refused at auth and never ran
        return not write and isinstance(exc, errors.RetriableError)

    def _jitter(self, attempt: int) -> float:
        policy = self.retry
        return min(policy.cap, policy.base * 2 ** (attempt - 1)) + self.rng.uniform(0, policy.base)

    def _backoff(self, state: tenacity.RetryCallState, methods: Sequence[str]) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, errors.OperationTimeLimit):
            return self.ledger.delay_for(methods)  # until the block ends; other methods keep going
        return self._jitter(state.attempt_number)

    def _log_retry(self, method: str, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self._count("retries")
        log.warning(
            redact.redact(
                f"{method}: {type(exc).__name__} {getattr(exc, 'code', '') or ''}".rstrip()
                + f" on attempt {state.attempt_number} of {self.retry.attempts}; retrying in {state.upcoming_sleep:.1f} s"
            )
        )

    def _attempt(self, method: str, params: dict[str, Any], methods: Sequence[str], deadline: Deadline) -> Reply:
        try:
            self._throttle(methods, deadline)
            refreshes_left = 2  # a second one when the tokens adopted from another process had expired too
            while True:
                generation = self.auth.generation
                try:
                    return self._send(method, params)
                except errors.ExpiredToken:
                    if not refreshes_left:
                        raise
                    refreshes_left -= 1
                    self._count("expired_token")
                    self._refresh(generation)
                self._throttle(methods, deadline)
        except errors.B24Error as exc:
            if not deadline.exhausted:
                deadline.last = exc
            raise

    def _refresh(self, generation: int) -> None:
        """Refresh the OAuth token; a token endpoint that failed on its way marks the error ``unsent``.

        The call itself was refused at auth (``expired_token``), so repeating it is safe even for a
        write when only the refresh failed (timeout, dropped connection, 5xx of the token server).
        """
        try:
            self.auth.refresh(generation, self.transport.fetch_token)
        except errors.RetriableError as exc:
            exc.unsent = True  # type: ignore[attr-defined]
            raise

    def _throttle(self, methods: Sequence[str], deadline: Deadline) -> None:
        """Wait for the methods' operating-time ledger and a bucket slot, or raise if that passes ``deadline``."""
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

    def _send(self, method: str, params: dict[str, Any]) -> Reply:
        self._count("requests")
        try:
            reply = self.transport.send(method, params, self.auth)
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
        calls: Sequence[Call] | Mapping[str, Call],
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
        """Run one packet of at most 50 commands; name -> result or BatchCommandError."""
        done: dict[str, Any] = {}
        pending = packet
        deadline = self._deadline()
        for attempt in range(1, self.retry.attempts + 1):
            parts = self._send_batch({name: (method, params) for name, method, params in pending}, halt, deadline=deadline)
            again: list[tuple[str, str, dict[str, Any]]] = []
            failed: dict[str, errors.B24Error] = {}
            wait = 0.0
            for name, method, params in pending:
                if name in parts.results:
                    done[name] = parts.results[name]
                    continue
                if name not in parts.errors:
                    if halt:
                        break  # halted before this command
                    done[name] = errors.BatchCommandError(name, errors.BadReplyError("", "no result and no error", 200, method))
                    continue
                error = command_error(parts.errors[name], method)
                text = command_text(method, params)
                if not halt and attempt < self.retry.attempts and "$result" not in text and self._may_retry(error, is_write(method, params)):
                    again.append((name, method, params))
                    failed[name] = error
                    wait = max(wait, self.ledger.delay(method) if isinstance(error, errors.OperationTimeLimit) else self._jitter(attempt))
                    continue
                done[name] = errors.BatchCommandError(name, error)
                if halt:
                    return done
            if not again:
                return done
            if not deadline.allows(wait):  # give up with the errors the commands got
                for name, _, _ in again:
                    done[name] = errors.BatchCommandError(name, failed[name])
                return done
            log.warning("batch: %d command(s) failed with retriable errors; repeating them in %.1f s", len(again), wait)
            self._count("retries")
            self.sleep(wait)
            pending = again
        return done

    def _send_batch(
        self, commands: Mapping[str, tuple[str, Mapping[str, Any]]], halt: bool, *, deadline: Deadline | None = None
    ) -> BatchParts:
        """One HTTP request carrying up to 50 commands; records each command's operating time."""
        if len(commands) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} commands")
        cmd = {name: command_text(method, params) for name, (method, params) in commands.items()}
        write = any(is_write(method, params) for method, params in commands.values())
        inner = sorted({method for method, _ in commands.values()})
        reply = self._execute("batch", {"halt": 1 if halt else 0, "cmd": cmd}, write=write, inner=inner, deadline=deadline)
        parts = BatchParts.from_reply(reply)
        for name, (method, _) in commands.items():
            block = parts.times.get(name)
            if isinstance(block, Mapping):
                self.ledger.record(method, block)
            error = parts.errors.get(name)
            if isinstance(error, Mapping) and error.get("error") == "OPERATION_TIME_LIMIT":
                until = _reset_at(error.get("time")) or _reset_at(block)
                self.ledger.block(method, until, hint=reply.operating_reset_at)
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
        """
        if strategy not in ("chain", "window"):
            raise ValueError("strategy must be 'chain' or 'window'")
        batch_size = max(1, min(MAX_BATCH, batch_size))
        export = KeysetExport(method, filter, select, entity_type_id, params, shape)
        failures = 0
        first = ceiling is None
        if ceiling is not None:
            export.known_ceiling(_as_int(ceiling, "ceiling"))
        deadline: Deadline | None = None  # one per page: renewed whenever the export moves on
        while not export.done:
            deadline = deadline or self._deadline()
            if (
                not first and strategy == "chain" and concurrency > 1 and export.density() is not None
                and (export.remaining() or 0) > 1.5 * PAGE * batch_size
            ):
                yield from self._export_segments(export, batch_size, concurrency)
                break
            commands = self._export_commands(export, strategy, batch_size, first)
            if not commands:
                break
            parts = self._send_batch(commands, halt=True, deadline=deadline)
            progressed = False
            for name, (_, page_params) in commands.items():
                if name in parts.errors:
                    error = command_error(parts.errors[name], method)
                    if not isinstance(error, errors.RetriableError):
                        raise errors.BatchCommandError(name, error)
                    failures += 1
                    if failures >= self.retry.attempts:
                        raise errors.BatchCommandError(name, error)
                    wait = self.ledger.delay(method) if isinstance(error, errors.OperationTimeLimit) else self._jitter(failures)
                    if not deadline.allows(wait):
                        raise errors.BatchCommandError(name, error)
                    deadline.last = errors.BatchCommandError(name, error)
                    log.warning("%s: page %s failed with %s; resuming after ID %d in %.1f s", method, name, type(error).__name__, export.cursor, wait)
                    self._count("retries")
                    self.sleep(wait)
                    break
                if name not in parts.results:
                    break  # halted
                if name == "top":
                    export.set_ceiling(parts.results[name])
                    if export.done:
                        break
                    continue
                window_top = page_params["filter"].get(f"<={export.shape.id_field}") if name.startswith("w") else None
                fresh = export.consume(export.rows_of(parts.results[name]), window_top=window_top)
                progressed = progressed or bool(fresh) or window_top is not None
                yield from fresh
                if export.done:
                    break
                if len(fresh) < PAGE and window_top is None:
                    break  # a short page ends the chain: later references point past it
            if first and "top" in parts.results:
                first = False
            if progressed:
                failures = 0
                deadline = None
        self._count("exported_rows", export.rows)

    def _export_segments(self, export: KeysetExport, batch_size: int, concurrency: int) -> Iterator[dict[str, Any]]:
        """Fetch ``(cursor, ceiling]`` as segments, ``concurrency`` at a time, and yield rows in ID order."""
        assert export.ceiling is not None
        width = self._segment_width(export, batch_size)
        next_low = export.cursor
        pending: deque[tuple[int, int, Future[Segment]]] = deque()
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="b24-export")
        failures = 0
        deadline: Deadline | None = None  # of the segment being re-read after a failure
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
                    for row in segment.rows:
                        rid = export.row_id(row)
                        if rid > export.cursor:
                            export.cursor = rid
                            export.rows += 1
                            yield row
                    if segment.complete:
                        break
                    failures = failures + 1 if segment.cursor <= low else 0
                    if failures == 0:
                        deadline = None
                    deadline = deadline or self._deadline()
                    error = segment.error or errors.BadReplyError("", "the export does not advance", 0, export.method)
                    if failures >= self.retry.attempts:
                        raise errors.BatchCommandError(segment.failed or "segment", error)
                    wait = 0.0
                    if isinstance(segment.error, errors.OperationTimeLimit):
                        wait = self.ledger.delay(export.method)
                    elif segment.error is not None:
                        wait = self._jitter(max(1, failures))
                    if not deadline.allows(wait):
                        raise errors.BatchCommandError(segment.failed or "segment", error)
                    deadline.last = errors.BatchCommandError(segment.failed or "segment", error)
                    if wait > 0:
                        self.sleep(wait)
                    low = segment.cursor
                    segment = self._fetch_segment(export, low, high, batch_size, deadline)  # the rest of it, before later ones
                deadline = None
                export.cursor = max(export.cursor, high)
                width = self._segment_width(export, batch_size)
        finally:
            for _, _, future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
        export.done = True

    @staticmethod
    def _segment_width(export: KeysetExport, batch_size: int) -> int:
        """IDs a segment should span to hold one batch of rows at the density seen so far.

        Where every ID matches, a segment of 2,500 IDs holds exactly 2,500 rows; where only some
        do, the count varies, so the segment aims at 85 % of a batch: an overflowing segment costs
        one more request for its rest.
        """
        density = export.density() or 1.0
        fill = 1.0 if density >= 0.98 else 0.85
        return max(PAGE, int(PAGE * batch_size * fill / density))

    def _fetch_segment(self, export: KeysetExport, low: int, high: int, batch_size: int, deadline: Deadline | None = None) -> Segment:
        """One chained batch over ``low < ID <= high``; complete when a short page or ``high`` is reached."""
        count = export.pages_for(high - low, batch_size)
        commands = {
            f"s{i}": (export.method, export.window(low if i == 0 else export.reference(f"s{i - 1}"), high))
            for i in range(count)
        }
        parts = self._send_batch(commands, halt=True, deadline=deadline)
        segment = Segment(low, high, cursor=low)
        for name in commands:
            if name in parts.errors:
                error = command_error(parts.errors[name], export.method)
                if not isinstance(error, errors.RetriableError):
                    raise errors.BatchCommandError(name, error)
                log.warning("%s: page %s failed with %s; resuming after ID %d", export.method, name, type(error).__name__, segment.cursor)
                self._count("retries")
                segment.error, segment.failed = error, name
                return segment
            if name not in parts.results:
                return segment
            page = export.rows_of(parts.results[name])
            for row in page:
                rid = export.row_id(row)
                if segment.cursor < rid <= high:
                    segment.rows.append(row)
                    segment.cursor = rid
            if len(page) < PAGE or segment.cursor >= high:
                segment.complete = True
                return segment
        return segment

    @staticmethod
    def _export_commands(export: KeysetExport, strategy: str, batch_size: int, first: bool) -> dict[str, tuple[str, dict[str, Any]]]:
        """The commands of the next export batch: the probe and the first page, a chain, or windows."""
        method = export.method
        if first:
            return {"top": (method, export.probe()), "p0": (method, export.page(export.cursor))}
        if strategy == "chain" or export.ceiling is None:  # windows need a trusted ceiling
            count = export.pages_wanted(batch_size)
            return {
                f"p{i}": (method, export.page(export.cursor if i == 0 else export.reference(f"p{i - 1}")))
                for i in range(count)
            }
        commands = {}
        for i in range(batch_size):  # windows of 50 IDs up to the ceiling, whatever the density
            low, high = export.cursor + PAGE * i, min(export.cursor + PAGE * (i + 1), export.ceiling)
            if low >= high:
                break
            commands[f"w{i}"] = (method, export.window(low, high))
        return commands

    # ---------------------------------------------------------------- counting and IDs

    def count(self, method: str, filter: Mapping[str, Any] | None = None, entity_type_id: int | None = None) -> int:
        """The number of records matching ``filter``: one counted page (``select ID``, ``start=0``), its ``total``."""
        shape = shape_of(method)
        params: dict[str, Any] = {"filter": dict(filter or {}), "select": [shape.id_field], "start": 0}
        if entity_type_id is not None:
            params["entityTypeId"] = entity_type_id
        return int(self.call(method, params).total or 0)

    def ids(self, method: str, filter: Mapping[str, Any] | None = None, entity_type_id: int | None = None) -> Iterator[int]:
        """The ID of every record matching ``filter``, in ascending order (a keyset export selecting only the ID)."""
        id_field = shape_of(method).id_field
        for row in self.list_all(method, filter, [id_field], entity_type_id):
            yield int(row[id_field])

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
        rows: list[dict[str, Any]] = []
        start = 0
        while True:
            reply = self.call("crm.category.list", {"entityTypeId": entity_type_id, "start": start})
            result = reply.result if isinstance(reply.result, Mapping) else {}
            rows.extend(result.get("categories") or [])
            if reply.next is None:
                return rows
            start = reply.next

    def stages(self, category_id: int = 0) -> list[dict[str, Any]]:
        """The stages of one deal pipeline, sorted as the portal sorts them (``crm.status.list``)."""
        result = self.result("crm.status.list", {"filter": {"ENTITY_ID": stage_entity_id(category_id)}, "order": {"SORT": "ASC"}})
        return list(result.values()) if isinstance(result, Mapping) else list(result or [])


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
    burst, rate = PLANS[plan]
    options.setdefault("bucket", LeakyBucket(burst, rate))
    auth = OAuthAuth(client_id, client_secret, store=store, oauth_server=oauth_server, client_endpoint=client_endpoint)
    return Bitrix24Client(HttpTransport(), auth, **options)
