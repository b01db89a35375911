"""How a report's whole-pipeline scans read the history table on SQLite: through a covering index when
the mirror has one, else by a table scan and a sort — never by walking an index and fetching every row.

SQLite's planner has no statistics on a mirror and prefers any index that matches, which means one
random row read per history row; PostgreSQL's planner weighs the choice itself and is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.report.portable import plain
from jobs.report.scope import Entity


@dataclass(frozen=True)
class Access:
    """``steer``: a SQLite scan over (nearly) all history rows; ``covering``: an index holds every column it reads."""

    steer: bool = False
    covering: bool = False

    def filter(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A column filtered on in a whole-pipeline scan: kept off the (category, stage) index when steering."""
        return plain(column) if self.steer else column

    def order(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A column grouped or ordered by: off the (card, ID) index unless that index covers the scan."""
        return plain(column) if self.steer and not self.covering else column


def covering_index(conn: Connection, entity: Entity) -> bool:
    """True when the history table has an index on (card, ID, ...) that also holds stage, time and pipeline."""
    needed = {entity.owner, "id", entity.stage, "date_create"} | ({entity.category} if entity.category else set())
    for index in sa.inspect(conn).get_indexes(entity.history.name):
        columns = [c for c in index.get("column_names") or [] if c]
        included = index.get("include_columns") or index.get("dialect_options", {}).get("postgresql_include") or []
        if columns[:2] == [entity.owner, "id"] and needed <= {*columns, *included}:
            return True
    return False


def access_for(conn: Connection, entity: Entity, *, narrow: bool) -> Access:
    """How to read the history table for one report (``narrow``: the filters leave few cards)."""
    if conn.dialect.name != "sqlite" or narrow:
        return Access()
    return Access(steer=True, covering=covering_index(conn, entity))
