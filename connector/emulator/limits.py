"""The emulated portal's two limits: a leaky bucket of requests and a per-method operating-time budget.

Both take an injectable clock, so tests exhaust them with small numbers instead of real sleeps.

Request rate (``LeakyBucket``): every HTTP request to ``/rest/`` adds 1 to a counter that drains by
``rate`` per second; a request that finds the counter at ``burst`` or above is refused with HTTP 503
``QUERY_LIMIT_EXCEEDED`` and does not add to it. A batch is one request. Real portals keep one
counter per portal and source IP; the emulator serves one portal, so it keeps one counter.

Operating time (``OperatingBudget``): for each (application or webhook, method) the modelled cost
of every call (``Call.cost``, from ``connector/emulator/costs.py``: a COUNT costs time per matched
row, an offset page per skipped row, a keyset page with ``start=-1`` a small constant) goes into
one-minute buckets; a bucket opens at the first call after the previous bucket's minute ended and
drops out ten minutes after it opened. ``time.operating`` is the sum of the live buckets including
the current call, ``time.operating_reset_at`` the unix time at which the oldest bucket drops out.
The sum is checked before each call: the call that crosses the budget still finishes; the next call
of that method by that app/webhook gets HTTP 429 ``OPERATION_TIME_LIMIT`` until enough buckets have
dropped out. Other methods and other apps/webhooks are not affected.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

WINDOW = 600.0  # seconds a bucket counts towards the sum
BUCKET = 60.0  # seconds one bucket collects calls for

Clock = Callable[[], float]


class LeakyBucket:
    """The portal's request counter: drains at ``rate`` per second, refuses a request above ``burst``.

    Build it with keywords, ``LeakyBucket(rate=2, burst=50, clock=...)``; ``level`` is the counter now.
    """

    def __init__(self, rate: float = 2.0, burst: float = 50.0, *, clock: Clock | None = None):
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock or time.time
        self._level = 0.0
        self._last: float | None = None
        self._lock = threading.Lock()

    @property
    def level(self) -> float:
        """The counter now, after draining."""
        with self._lock:
            return self._drain(self.clock())

    def _drain(self, now: float) -> float:
        if self._last is not None:
            self._level = max(0.0, self._level - self.rate * max(0.0, now - self._last))
        self._last = now
        return self._level

    def admit(self) -> bool:
        """Count one request; False (and nothing counted) when the bucket is full."""
        with self._lock:
            if self._drain(self.clock()) + 1 > self.burst:
                return False
            self._level += 1
            return True


@dataclass
class _Bucket:
    opened: float
    seconds: float = 0.0


@dataclass(frozen=True)
class Usage:
    """Operating time of one (app, method) after a call: the sum and when its oldest bucket drops out."""

    operating: float
    reset_at: int


class Blocked(Exception):
    """The method spent its budget; ``usage.reset_at`` says when to try again."""

    def __init__(self, usage: Usage):
        self.usage = usage
        super().__init__(f"blocked until {usage.reset_at}")


class OperatingBudget:
    """Per-(app, method) sliding window of modelled operating time in one-minute buckets."""

    def __init__(self, budget: float = 480.0, clock: Clock | None = None, window: float = WINDOW, bucket: float = BUCKET):
        self.budget = float(budget)
        self.clock = clock or time.time
        self.window = window
        self.bucket = bucket
        self._buckets: dict[Hashable, deque[_Bucket]] = {}
        self._lock = threading.Lock()

    def _live(self, key: Hashable, now: float) -> deque[_Bucket]:
        buckets = self._buckets.setdefault(key, deque())
        while buckets and buckets[0].opened + self.window <= now:
            buckets.popleft()
        return buckets

    def _usage(self, buckets: deque[_Bucket], now: float) -> Usage:
        total = sum(b.seconds for b in buckets)
        oldest = buckets[0].opened if buckets else now
        return Usage(total, int(oldest + self.window))

    def usage(self, key: Hashable) -> Usage:
        """Current sum and reset time of one key, without charging anything."""
        with self._lock:
            now = self.clock()
            return self._usage(self._live(key, now), now)

    def check(self, key: Hashable) -> None:
        """Raise ``Blocked`` when the key's sum already exceeds the budget."""
        with self._lock:
            now = self.clock()
            usage = self._usage(self._live(key, now), now)
            if usage.operating > self.budget:
                raise Blocked(usage)

    def charge(self, key: Hashable, seconds: float) -> Usage:
        """Add a finished call's cost to the key's current bucket; return the usage including it."""
        with self._lock:
            now = self.clock()
            buckets = self._live(key, now)
            if not buckets or buckets[-1].opened + self.bucket <= now:
                buckets.append(_Bucket(now))
            buckets[-1].seconds += max(0.0, seconds)
            return self._usage(buckets, now)

    def reset(self) -> None:
        """Forget every bucket (tests, ``/_emulator/reset-stats`` does not touch this)."""
        with self._lock:
            self._buckets.clear()
