"""SQL that reads the same on SQLite and PostgreSQL: seconds between two moments, moments compared, exact
cents, columns kept off SQLite's indexes, joins SQLite must not reorder, text grouped byte by byte, the
set of stages a card's rows name, and percentiles (``percentile_cont`` on PostgreSQL, sorted ranks on
SQLite).

Percentiles follow PostgreSQL's ``percentile_cont``: linear interpolation between the two closest ranks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.selectable import Join

from mappings import db

# percentiles as tenths, so that ranks are computed with integer arithmetic on both databases
MEDIAN, P90 = 5, 9


class seconds_between(FunctionElement[float]):
    """``seconds_between(later, earlier)``: the seconds from ``earlier`` to ``later`` as a float."""

    type = sa.Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    # portal times are whole seconds; rounding drops julianday's floating noise, so both databases agree exactly
    return (f"ROUND((julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)}))"
            " * 86400.0)")


@compiles(seconds_between)
def _seconds_default(element: seconds_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return (f"CAST(EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)}))"
            " AS DOUBLE PRECISION)")


class _as_is(FunctionElement[Any]):
    """A column wrapped for one database's sake, itself on the others and of its own type (results are
    processed as the column's would be)."""

    inherit_cache = True

    @property
    def type(self) -> Any:  # type: ignore[override]
        """The column's own type."""
        return list(self.clauses)[0].type


@compiles(_as_is)
def _as_is_default(element: _as_is, compiler: Any, **kw: Any) -> str:
    return compiler.process(list(element.clauses)[0], **kw)


class plain(_as_is):
    """``plain(column)``: the column's value, which SQLite must not look up through an index (``+column``).

    SQLite's no-op unary ``+`` keeps a filter, GROUP BY or window order off the indexes; other
    databases get the column as it is (their planners weigh the choice with statistics).
    """

    name = "plain"
    inherit_cache = True


@compiles(plain, "sqlite")
def _plain_sqlite(element: plain, compiler: Any, **kw: Any) -> str:
    return f"+{compiler.process(list(element.clauses)[0], **kw)}"


def earlier(column: sa.ColumnElement[Any], moment: datetime) -> sa.ColumnElement[bool]:
    """``column < moment`` (a moment of the mirror: SQLite's text has one fixed-width form, so it compares as text)."""
    return column < sa.literal(moment, column.type)


def not_earlier(column: sa.ColumnElement[Any], moment: datetime) -> sa.ColumnElement[bool]:
    """``column >= moment`` (see ``earlier``)."""
    return column >= sa.literal(moment, column.type)


def cents(amount: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """An amount as whole cents (exact when summed, on SQLite's floating numbers too)."""
    return sa.cast(sa.func.round(sa.func.coalesce(amount, 0) * 100), sa.BigInteger)


def money(total_cents: Any) -> Decimal:
    """Summed cents back to an exact amount."""
    return (Decimal(int(round(float(total_cents)))) if total_cents is not None else Decimal(0)) / 100


class bytewise(_as_is):
    """``bytewise(text)``: the text compared byte by byte when grouped or sorted (PostgreSQL's ``COLLATE "C"``,
    SQLite's default): a grouping key needs equality, not the database's slow language-aware order."""

    name = "bytewise"
    inherit_cache = True


@compiles(bytewise, "postgresql")
def _bytewise_postgresql(element: bytewise, compiler: Any, **kw: Any) -> str:
    return f'({compiler.process(list(element.clauses)[0], **kw)}) COLLATE "C"'


class ordered_join(Join):
    """``ordered_join(left, right, onclause)``: an inner join whose left side SQLite must read first (its
    ``CROSS JOIN``, which its planner never reorders); other databases get a plain ``JOIN``.

    For a few (or filtered) cards, each read with its rows along the (card, ...) index: without
    statistics SQLite would rather walk a whole index of history rows and look every card up.
    """

    inherit_cache = True


@compiles(ordered_join, "sqlite")
def _ordered_join_sqlite(element: ordered_join, compiler: Any, **kw: Any) -> str:
    kw["asfrom"] = True
    return (f"{element.left._compiler_dispatch(compiler, **kw)} CROSS JOIN "
            f"{element.right._compiler_dispatch(compiler, **kw)} ON {element.onclause._compiler_dispatch(compiler, **kw)}")


@compiles(ordered_join)
def _ordered_join_default(element: ordered_join, compiler: Any, **kw: Any) -> str:
    return compiler.visit_join(element, **kw)


class stage_set(FunctionElement[str]):
    """``stage_set(stage)``: the distinct non-null stages of a group as ``,A,B,`` (the shape of the mirror's
    ``visited`` column, in no particular order): SQLite's ``group_concat``, PostgreSQL's ``string_agg``."""

    type = sa.Text()
    name = "stage_set"
    inherit_cache = True


@compiles(stage_set, "sqlite")
def _stage_set_sqlite(element: stage_set, compiler: Any, **kw: Any) -> str:
    return f"',' || group_concat(DISTINCT {compiler.process(element.clauses, **kw)}) || ','"


@compiles(stage_set)
def _stage_set_default(element: stage_set, compiler: Any, **kw: Any) -> str:
    return f"',' || string_agg(DISTINCT {compiler.process(element.clauses, **kw)}, ',') || ','"


def interpolate(n: int, tenths: int, at_rank: Callable[[int], float | None]) -> float | None:
    """percentile_cont's value from the two ranks around position (n - 1) * p (ranks count from 1)."""
    lower = (n - 1) * tenths // 10 + 1
    fraction = ((n - 1) * tenths % 10) / 10
    low = at_rank(lower)
    if low is None:
        return None
    high = at_rank(lower + 1) if fraction else None
    return low if high is None else low + (high - low) * fraction


def percentiles(
    conn: Connection,
    values: sa.Subquery | sa.CTE,
    keys: Sequence[str],
    value: str,
    wanted: Sequence[int] = (MEDIAN, P90),
) -> dict[tuple[Any, ...], tuple[int, dict[int, float | None]]]:
    """Per group of ``keys``: the number of values and each wanted percentile (in tenths) of ``value``.

    ``{key: (n, {5: median, 9: p90})}``. PostgreSQL computes them with ``percentile_cont``; SQLite,
    which has no ordered-set aggregates (and whose window functions are slow on large inputs), sorts
    the values once into a temporary table whose integer key is then the rank.
    """
    if conn.dialect.name == "postgresql":
        return _percentiles_postgresql(conn, values, keys, value, wanted)
    return _percentiles_by_rank(conn, values, keys, value, wanted)


def _percentiles_postgresql(
    conn: Connection, values: sa.Subquery | sa.CTE, keys: Sequence[str], value: str, wanted: Sequence[int]
) -> dict[tuple[Any, ...], tuple[int, dict[int, float | None]]]:
    from sqlalchemy.dialects import postgresql

    fractions = postgresql.array([sa.literal(t / 10, sa.Float) for t in wanted])
    ordered = sa.cast(values.c[value], sa.Float)
    found = sa.func.percentile_cont(fractions).within_group(ordered).label("found")
    query = (sa.select(*(values.c[k] for k in keys), sa.func.count().label("n"), found)
             .where(values.c[value].is_not(None)).group_by(*(values.c[k] for k in keys)))
    result = {}
    for row in conn.execute(query):
        if row.n:  # without keys an empty input still gives one row
            found_values = (None if v is None else float(v) for v in row.found)
            result[tuple(row[:len(keys)])] = (int(row.n), dict(zip(wanted, found_values)))
    return result


def _percentiles_by_rank(
    conn: Connection, values: sa.Subquery | sa.CTE, keys: Sequence[str], value: str, wanted: Sequence[int]
) -> dict[tuple[Any, ...], tuple[int, dict[int, float | None]]]:
    names = [f"k{i}" for i in range(len(keys))]
    ranked = sa.Table(
        f"b24sync_rank_{uuid.uuid4().hex[:12]}", sa.MetaData(),
        sa.Column("rank", sa.Integer, primary_key=True, autoincrement=True),
        *(sa.Column(name, values.c[key].type) for name, key in zip(names, keys)),
        sa.Column("v", sa.Float),
        prefixes=["TEMPORARY"],
    )
    ranked.create(conn)
    try:
        ordered = (sa.select(*(values.c[k] for k in keys), values.c[value]).where(values.c[value].is_not(None))
                   .order_by(*(values.c[k] for k in keys), values.c[value]))
        conn.execute(ranked.insert().from_select([*names, "v"], ordered))  # rows get their rank in this order
        groups = [ranked.c[name] for name in names]
        bounds = list(conn.execute(sa.select(*groups, sa.func.min(ranked.c.rank).label("first"),
                                             sa.func.count().label("n")).group_by(*groups)))
        bounds = [row for row in bounds if row.n]
        needed: set[int] = set()
        for row in bounds:
            n = int(row.n)
            for tenths in wanted:
                lower = (n - 1) * tenths // 10
                needed.update((row.first + lower, row.first + lower + 1))
        at: dict[int, float] = {}
        wanted_ranks = sorted(needed)
        for chunk in db.chunks(wanted_ranks):
            at.update((int(r), float(v)) for r, v in conn.execute(
                sa.select(ranked.c.rank, ranked.c.v).where(ranked.c.rank.in_(chunk))))
        result = {}
        for row in bounds:
            n, first = int(row.n), int(row.first)
            result[tuple(row[:len(keys)])] = (n, {t: interpolate(n, t, lambda r: at.get(first + r - 1) if r <= n else None)
                                                  for t in wanted})
        return result
    finally:
        ranked.drop(conn)
