"""What every stream of a run shares: the client, the writer, the portal's clock and offset, stop and progress.

Each stream gets a sibling of the run's client (same transport, auth, bucket and ledger; its own
counters), so the run can say how many HTTP requests each stream cost while they run side by side.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from jobs.sync.progress import NullProgress, Progress
from jobs.sync.writer import Writer


@dataclass
class Context:
    """The run's shared parts."""

    client: Any
    writer: Writer
    portal_tz: tzinfo
    cap: datetime  # the portal's time when the run began (from the probe's time.date_start)
    stop: threading.Event = field(default_factory=threading.Event)
    progress: Progress = field(default_factory=NullProgress)
    full: bool = False
    overlap: timedelta = timedelta(0)

    def stopped(self) -> bool:
        """True once the caller asked the run to stop (checked between pages)."""
        return self.stop.is_set()

    def pages(self, stream: str, produce: Any, write: Any, position: Any) -> bool:
        """Write every chunk of the export ``produce()`` with ``write(chunk)`` while the next pages are fetched.

        ``position()`` is the keyset position after a chunk (for the progress); False when the run
        was asked to stop between two chunks (what was written is committed).
        """
        from jobs.sync.pump import Pump

        pump = Pump(produce, name=stream)
        try:
            for chunk in pump:
                write(chunk)
                self.progress.advance(stream, len(chunk), position())
                if self.stopped():
                    return False
        finally:
            pump.close()
        return True

    def for_stream(self) -> "Context":
        """A copy whose client counts its own requests (see ``sibling``)."""
        return Context(sibling(self.client), self.writer, self.portal_tz, self.cap, self.stop, self.progress,
                       self.full, self.overlap)


def sibling(client: Any) -> Any:
    """A client sharing ``client``'s transport, auth, bucket, ledger and retry policy, with its own counters.

    The portal sees one client (one bucket, one token); only the bookkeeping is separate. Falls
    back to ``client`` itself for client objects that cannot be copied this way.
    """
    cls = type(client)
    try:
        twin = cls(client.transport, client.auth, bucket=client.bucket, ledger=client.ledger, retry=client.retry,
                   clock=client.clock, sleep=client.sleep, rng=client.rng)
    except (TypeError, AttributeError):
        return client
    twin.counters = Counter()
    return twin


def requests_of(client: Any) -> int:
    """HTTP requests a client has made."""
    return int(getattr(client, "counters", {}).get("requests", 0))


def merge_counters(into: Any, client: Any) -> None:
    """Add a sibling's counters to the run's client (called once the sibling is done)."""
    if client is into:
        return
    counters = getattr(into, "counters", None)
    if counters is not None:
        lock = getattr(into, "_counters_lock", None) or threading.Lock()
        with lock:
            counters.update(client.counters)
