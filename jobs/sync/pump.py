"""Rows written while the next pages are in flight: an export runs in its own thread, chunks go through a small queue.

The queue is bounded, so memory holds a few chunks whatever the size of the export; closing the
pump (on error or ``stop``) closes the export, which cancels its prefetches.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

CHUNK = 1000  # rows per transaction
DEPTH = 2  # chunks waiting in the queue

_DONE = object()


class Pump:
    """``for chunk in Pump(lambda: client.list_all(...)):`` — lists of up to ``chunk`` rows, fetched ahead."""

    def __init__(self, produce: Callable[[], Iterator[Any]], *, chunk: int = CHUNK, depth: int = DEPTH, name: str = "pump"):
        self._produce = produce
        self._chunk = chunk
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"b24sync-{name}", daemon=True)
        self._started = False

    def __iter__(self) -> Iterator[list[Any]]:
        if not self._started:
            self._started = True
            self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the export (its generator is closed in its own thread) and wait for the thread."""
        self._cancel.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)

    def _put(self, item: Any) -> bool:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        rows: Iterator[Any] | None = None
        try:
            rows = self._produce()
            buffer: list[Any] = []
            for row in rows:
                buffer.append(row)
                if len(buffer) >= self._chunk:
                    if not self._put(buffer):
                        return
                    buffer = []
                if self._cancel.is_set():
                    return
            if buffer and not self._put(buffer):
                return
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - the export is being abandoned anyway
                    pass
