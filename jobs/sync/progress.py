"""How a run shows its progress: rich bars on a terminal, plain log lines otherwise, or nothing.

A stream's bar runs over the ID range it reads (from its keyset position up to the highest
matching ID the probe found), so an initial load shows how far it is without counting rows.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from jobs.sync.result import StreamResult

log = logging.getLogger("jobs.sync")


class Progress(Protocol):
    """Receives the run's progress; every method may be called from any stream's thread."""

    def begin(self, stream: str, title: str, start: int | None, top: int | None) -> None:
        """A stream starts reading IDs above ``start`` up to ``top`` (either may be unknown)."""

    def advance(self, stream: str, rows: int, position: int | None) -> None:
        """``rows`` more rows were written; the keyset reached ``position``."""

    def end(self, stream: str, result: StreamResult) -> None:
        """A stream is finished (ok, failed or interrupted)."""


class NullProgress:
    """Shows nothing."""

    def begin(self, stream: str, title: str, start: int | None, top: int | None) -> None:
        """Ignore."""

    def advance(self, stream: str, rows: int, position: int | None) -> None:
        """Ignore."""

    def end(self, stream: str, result: StreamResult) -> None:
        """Ignore."""


class LogProgress:
    """Plain lines: when a stream starts, every ``every`` seconds while it runs, and when it ends.

    They go to ``write`` (one line each, e.g. onto stderr) or, without it, to the log at ``level``.
    """

    def __init__(self, logger: logging.Logger | None = None, every: float = 10.0, level: int = logging.INFO,
                 write: Any = None):
        self.log = logger or log
        self.every = every
        self.level = level
        self.write = write
        self._lock = threading.Lock()
        self._rows: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._top: dict[str, int | None] = {}

    def begin(self, stream: str, title: str, start: int | None, top: int | None) -> None:
        """Log the start."""
        with self._lock:
            self._rows[stream], self._last[stream], self._top[stream] = 0, time.monotonic(), top
        self._line("%s: reading%s", stream, f" up to ID {top}" if top else "")

    def advance(self, stream: str, rows: int, position: int | None) -> None:
        """Log now and then."""
        with self._lock:
            self._rows[stream] = self._rows.get(stream, 0) + rows
            now = time.monotonic()
            if now - self._last.get(stream, 0) < self.every:
                return
            self._last[stream] = now
            total, top = self._rows[stream], self._top.get(stream)
        where = f", at ID {position}" + (f" of {top}" if top else "") if position else ""
        self._line("%s: %d row(s)%s", stream, total, where)

    def end(self, stream: str, result: StreamResult) -> None:
        """Log the outcome."""
        self._line("%s: %s, %d fetched, %d inserted, %d updated, %d deleted, %d request(s), %.1f s",
                   stream, result.status, result.fetched, result.inserted, result.updated, result.deleted,
                   result.requests, result.seconds)

    def _line(self, text: str, *args: Any) -> None:
        if self.write is None:
            self.log.log(self.level, text, *args)
        else:
            self.write(time.strftime("%H:%M:%S ") + (text % args))


class RichProgress:
    """Rich progress bars, one per stream (``with RichProgress(console) as progress:``)."""

    def __init__(self, console: Any = None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn, TimeElapsedColumn

        self._bars = Bars(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[rows]} rows"), TimeElapsedColumn(), console=console, transient=False)
        self._tasks: dict[str, Any] = {}
        self._start: dict[str, int] = {}
        self._rows: dict[str, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> "RichProgress":
        self._bars.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bars.stop()

    def begin(self, stream: str, title: str, start: int | None, top: int | None) -> None:
        """A bar over the stream's ID range (or an open-ended one)."""
        with self._lock:
            base = start or 0
            total = (top - base) if top is not None and top > base else None
            self._start[stream], self._rows[stream] = base, 0
            if stream in self._tasks:
                self._bars.update(self._tasks[stream], total=total, completed=0, rows=0)
            else:
                self._tasks[stream] = self._bars.add_task(title, total=total, rows=0)

    def advance(self, stream: str, rows: int, position: int | None) -> None:
        """Move the bar to the keyset position."""
        with self._lock:
            if stream not in self._tasks:
                return
            self._rows[stream] = self._rows.get(stream, 0) + rows
            done = (position - self._start.get(stream, 0)) if position else None
            self._bars.update(self._tasks[stream], completed=done if done is not None else self._rows[stream],
                              rows=self._rows[stream])

    def end(self, stream: str, result: StreamResult) -> None:
        """Fill the bar (or leave it where it stopped) and show the outcome."""
        with self._lock:
            task = self._tasks.get(stream)
            if task is None:
                return
            info = self._bars.tasks[[t.id for t in self._bars.tasks].index(task)]
            if result.status == "ok":
                self._bars.update(task, total=info.total or max(info.completed, 1), completed=info.total or max(info.completed, 1))
            self._bars.update(task, rows=result.fetched, description=f"{info.description} ({result.status})"[:40])
