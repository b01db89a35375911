"""Paginators: the keyset export (``order ID ASC``, ``filter >ID``, ``start=-1``) and offset paging by ``next``.

A paginator builds the parameters of its pages, reads their rows and owns every advance of its
cursor; a page that does not advance it (the same cursor twice, a ``next`` that goes back) is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector import errors
from connector.catalog import ListShape, shape_of
from connector.envelope import BatchParts, Reply, as_mapping, as_rows, bad_reply

PAGE = 50  # rows per page; the portal does not allow more
MAX_BATCH = 50  # commands per batch

# name -> (method, params): the commands of one batch request
Commands = dict[str, tuple[str, dict[str, Any]]]


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


def as_id(value: Any, what: str) -> int:
    """An integer ID given by the caller (a filter bound, a ceiling), or a ``ValueError`` naming ``what``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer ID, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} must be an integer ID, got {value!r}") from None


@dataclass
class Segment:
    """The rows of ``low < ID <= high`` fetched by one chained batch; ``cursor`` is the last ID reached."""

    low: int
    high: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    cursor: int = 0
    complete: bool = False
    error: errors.B24Error | None = None  # what cut the chain short: a command's error, or a bad page

    def __post_init__(self) -> None:
        self.cursor = max(self.cursor, self.low)


@dataclass
class BatchRead:
    """What one export batch brought: the new rows in order, whether the export moved, and what failed."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    advanced: bool = False
    error: errors.B24Error | None = None  # a BatchCommandError of the portal, or a BadReplyError of ours


class KeysetExport:
    """One keyset export (``order ID ASC``, ``filter >ID``): its cursor, ceiling and end.

    The cursor is the highest ID returned so far; a row at or below it is never returned again,
    and only this object moves it. The ceiling is the highest matching ID when the export began
    (from the probe, or given by a caller that probed itself): every record that exists for the
    whole export has an ID at or below it, so the export may end there. It also ends at an empty
    page, or at a short page once the cursor has reached the ceiling (a short page below the
    ceiling is not trusted: the next batch starts again from the cursor).
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
                bound = as_id(value, f"filter {key!r}")
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
        self.probed = False  # the ceiling was looked for (probe sent, or given by the caller)
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

    def window(self, low: int | str, high: int) -> dict[str, Any]:
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

    def commands(self, strategy: str, batch_size: int) -> Commands:
        """The commands of the next export batch: the probe and the first page, a chain, or windows."""
        method = self.method
        if not self.probed:
            return {"top": (method, self.probe()), "p0": (method, self.page(self.cursor))}
        if strategy == "chain" or self.ceiling is None:  # windows need a trusted ceiling
            count = self.pages_wanted(batch_size)
            return {
                f"p{i}": (method, self.page(self.cursor if i == 0 else self.reference(f"p{i - 1}")))
                for i in range(count)
            }
        commands: Commands = {}
        for i in range(batch_size):  # windows of 50 IDs up to the ceiling, whatever the density
            low, high = self.cursor + PAGE * i, min(self.cursor + PAGE * (i + 1), self.ceiling)
            if low >= high:
                break
            commands[f"w{i}"] = (method, self.window(low, high))
        return commands

    def segment_commands(self, low: int, high: int, batch_size: int) -> Commands:
        """One chained batch over ``low < ID <= high``, as many pages as the span is expected to need."""
        count = self.pages_for(high - low, batch_size)
        return {
            f"s{i}": (self.method, self.window(low if i == 0 else self.reference(f"s{i - 1}"), high))
            for i in range(count)
        }

    # ---- estimates

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

    def wants_segments(self, batch_size: int) -> bool:
        """True when what is left below a known ceiling, at the density seen so far, is worth several segments."""
        return self.probed and self.density() is not None and (self.remaining() or 0) > 1.5 * PAGE * batch_size

    def segment_width(self, batch_size: int) -> int:
        """IDs a segment should span to hold one batch of rows at the density seen so far.

        Where every ID matches, a segment of 2,500 IDs holds exactly 2,500 rows; where only some
        do, the count varies, so the segment aims at 85 % of a batch: an overflowing segment costs
        one more request for its rest.
        """
        density = self.density() or 1.0
        fill = 1.0 if density >= 0.98 else 0.85
        return max(PAGE, int(PAGE * batch_size * fill / density))

    # ---- replies

    def rows_of(self, result: Any) -> list[dict[str, Any]]:
        """The rows of one page's ``result``, whatever the method's shape, or ``BadReplyError``."""
        if self.shape.items_key is not None:
            result = as_mapping(result, self.method).get(self.shape.items_key, [])
            return as_rows(result, self.method, f"result[{self.shape.items_key}]")
        return as_rows(result, self.method)

    def row_id(self, row: Mapping[str, Any]) -> int:
        """The integer ID of a row (stage history gives ints or strings), or ``BadReplyError``."""
        value = row.get(self.shape.id_field) if isinstance(row, Mapping) else None
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                return int(value)
            except ValueError:
                pass
        raise bad_reply(self.method, f"a row has no integer {self.shape.id_field}")

    def set_ceiling(self, result: Any) -> None:
        """Take the ceiling from the probe page; no row at all means nothing to export.

        The ceiling is trusted only when the page really came sorted by ID descending (or holds
        every matching row): a method that ignored the order must not end the export early.
        """
        ids = [self.row_id(row) for row in self.rows_of(result)]
        self.probed = True
        if not ids:
            self.ceiling = self.cursor
            self.done = True
            return
        descending = all(a > b for a, b in zip(ids, ids[1:]))
        self.ceiling = max(ids) if len(ids) < PAGE or descending else None
        if descending and len(ids) == PAGE:
            self.top_span = ids[0] - ids[-1]

    def known_ceiling(self, ceiling: Any) -> None:
        """Take a ceiling the caller already knows (it probed the method itself); no probe is spent."""
        self.ceiling = as_id(ceiling, "ceiling")
        self.probed = True
        if self.ceiling <= self.cursor:
            self.done = True

    def consume(self, rows: list[dict[str, Any]], *, window_top: int | None = None) -> list[dict[str, Any]]:
        """Rows above the cursor, in order; advance the cursor and decide whether the export is over.

        Every row's ID is read before the cursor moves, so a bad row refuses the whole page. A full
        page that brings no ID above the cursor is refused: the method ignores the keyset filter.
        """
        ids = [self.row_id(row) for row in rows]
        fresh: list[dict[str, Any]] = []
        for rid, row in zip(ids, rows):
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
            raise bad_reply(self.method, f"a full page brought no ID above {self.cursor}: the export does not advance")
        if self.ceiling is not None and self.cursor >= self.ceiling:
            self.done = True
        return fresh

    def read_batch(self, commands: Commands, parts: BatchParts) -> BatchRead:
        """Take the pages of one export batch in order; stop at a failed, missing or short page."""
        read = BatchRead()
        before, idf = self.cursor, self.shape.id_field
        for name, (method, params) in commands.items():
            error = parts.error_of(name, method)
            if error is not None:
                read.error = errors.BatchCommandError(name, error)
                break
            if name not in parts.results:
                break  # halted
            try:
                if name == "top":
                    self.set_ceiling(parts.results[name])
                    if self.done:
                        break
                    continue
                window_top = params["filter"].get(f"<={idf}") if name.startswith("w") else None
                fresh = self.consume(self.rows_of(parts.results[name]), window_top=window_top)
            except errors.BadReplyError as exc:
                read.error = exc
                break
            read.rows.extend(fresh)
            if self.done:
                break
            if len(fresh) < PAGE and window_top is None:
                break  # a short page ends the chain: later references point past it
        read.advanced = self.done or self.cursor > before
        return read

    def read_segment(self, segment: Segment, commands: Commands, parts: BatchParts) -> Segment:
        """Fill ``segment`` from one chained batch; complete at a short page or at its upper bound.

        The segment has a cursor of its own; the export's moves only when the rows are emitted.
        """
        for name, (method, _) in commands.items():
            error = parts.error_of(name, method)
            if error is not None:
                segment.error = errors.BatchCommandError(name, error)
                return segment
            if name not in parts.results:
                return segment
            try:
                page = self.rows_of(parts.results[name])
                ids = [self.row_id(row) for row in page]
            except errors.BadReplyError as exc:
                segment.error = exc
                return segment
            for rid, row in zip(ids, page):
                if segment.cursor < rid <= segment.high:
                    segment.rows.append(row)
                    segment.cursor = rid
            if len(page) < PAGE or segment.cursor >= segment.high:
                segment.complete = True
                return segment
        return segment

    def emit(self, rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield the rows above the cursor, advancing it row by row (rows of segments, in ID order)."""
        for row in rows:
            rid = self.row_id(row)
            if rid > self.cursor:
                self.cursor = rid
                self.rows += 1
                yield row

    def reached(self, high: int) -> None:
        """Every row up to ``high`` has been emitted (a complete segment): the cursor moves there."""
        self.cursor = max(self.cursor, high)

    def finish(self) -> None:
        """The export is over (every segment up to the ceiling was emitted)."""
        self.done = True


class OffsetPages:
    """Offset paging by ``next`` (``crm.category.list``, ``crm.status.list``): ``start`` of each page in turn.

    Refuses a ``next`` that does not move forward, one beyond ``total``, and a page without rows
    that still promises more: a reply that would page forever is not a Bitrix24 reply.
    """

    def __init__(self, method: str, start: int = 0):
        self.method = method
        self.start: int | None = start

    def following(self, reply: Reply, rows: int) -> int | None:
        """The ``start`` of the page after ``reply`` (which brought ``rows`` rows), None at the end;
        ``BadReplyError`` when its ``next`` would page forever (checked inside the call's retries)."""
        following = reply.next
        if following is None:
            return None
        current = self.start or 0
        if following <= current:
            raise bad_reply(self.method, f"next {following} does not move past start {current}")
        if rows == 0:
            raise bad_reply(self.method, "an empty page promises a next one")
        if reply.total is not None and following >= reply.total:
            raise bad_reply(self.method, f"next {following} is past total {reply.total}")
        return following

    def advance(self, start: int | None) -> None:
        """Move to the page at ``start`` (from ``following``); None ends the paging."""
        self.start = start
