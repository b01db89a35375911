"""Per-stream sync state (``b24sync_state``): phase, cursors and the open window, read and written with the pages.

A window is what an entity run reads: ``DATE_MODIFY >= since`` (no bound for the initial load),
capped at the portal's time when it began, walked by ID; its position is saved with every page so
a killed run continues the same window, and the cursor moves only when the window is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mappings.tables import b24sync_state

INITIAL, INCREMENTAL = "initial", "incremental"


@dataclass
class StreamState:
    """One row of ``b24sync_state``."""

    stream: str
    phase: str = INITIAL
    cursor_at: datetime | None = None  # entities: DATE_MODIFY up to which every change is mirrored
    cursor_id: int | None = None  # history: the last row ID committed
    window_since: datetime | None = None
    window_cap: datetime | None = None
    window_last_id: int | None = None
    window_top: int | None = None
    window_max: datetime | None = None
    window_started_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def window_open(self) -> bool:
        """True while a window is being read (a run was killed or stopped inside it)."""
        return self.window_cap is not None

    def open_window(self, since: datetime | None, cap: datetime | None) -> "StreamState":
        """A copy with a fresh window from ``since`` (None: everything), capped at ``cap`` (set later when None)."""
        return replace(self, window_since=since, window_cap=cap, window_last_id=0, window_top=None,
                       window_max=None, window_started_at=datetime.now(timezone.utc))

    def close_window(self) -> "StreamState":
        """A copy with the window finished: the cursor takes the largest DATE_MODIFY committed, never past the cap."""
        cursor = self.cursor_at
        if self.window_max is not None and self.window_cap is not None:
            reached = min(self.window_max, self.window_cap)
            cursor = reached if cursor is None else max(cursor, reached)
        return replace(self, phase=INCREMENTAL, cursor_at=cursor, window_since=None, window_cap=None,
                       window_last_id=None, window_top=None, window_max=None, window_started_at=None)

    def values(self) -> dict[str, Any]:
        """Column values of the row."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _from_row(row: Any) -> StreamState:
    data = dict(row)
    data.pop("updated_at", None)
    data["extra"] = dict(data.get("extra") or {})
    return StreamState(**data)


def load_all(source: Engine | Connection) -> dict[str, StreamState]:
    """Every stream's state (an empty dict for a mirror without the table)."""
    if isinstance(source, Engine):
        with source.connect() as conn:
            return load_all(conn)
    if not sa.inspect(source).has_table(b24sync_state.name):
        return {}
    return {row["stream"]: _from_row(row) for row in source.execute(sa.select(b24sync_state)).mappings()}


def load(conn: Connection, stream: str) -> StreamState:
    """One stream's state (a fresh one when it has none yet)."""
    row = conn.execute(sa.select(b24sync_state).where(b24sync_state.c.stream == stream)).mappings().first()
    return _from_row(row) if row is not None else StreamState(stream)


def save(conn: Connection, state: StreamState) -> None:
    """Write one stream's state inside the caller's transaction."""
    values = {**state.values(), "updated_at": datetime.now(timezone.utc)}
    updated = conn.execute(b24sync_state.update().where(b24sync_state.c.stream == state.stream)
                           .values({k: v for k, v in values.items() if k != "stream"}))
    if updated.rowcount == 0:
        conn.execute(b24sync_state.insert().values(values))
