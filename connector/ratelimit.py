"""Self-throttling: a request pacer mirroring the portal's leaky bucket, and a per-method operating-time ledger.

Both are small, thread-safe and take injectable clocks, so tests drive them with a fake clock.
The pacer keeps a well-behaved client below the portal's 503; the ledger pauses a method before
the portal's 429, and blocks only that method after one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# plan -> (burst, drain per second), as the portal's docs list them
PLANS: dict[str, tuple[float, float]] = {"standard": (50.0, 2.0), "enterprise": (250.0, 5.0)}


class RequestPacer:
    """The portal's request counter (its leaky bucket), mirrored on our side to pace our requests.

    Every request adds 1, the counter drains by ``rate`` per second, and the portal refuses a
    request that would lift it above ``burst``. ``reserve`` books a slot and says how long to wait
    for it; ``acquire`` also sleeps. ``headroom`` keeps a margin for clock skew between us and
    the portal. Several threads share one pacer (the portal counts per portal and source IP).
    (The emulator's own bucket, the portal side, is ``connector.emulator.limits.LeakyBucket``.)
    """

    def __init__(
        self,
        *,
        burst: float = 50.0,
        rate: float = 2.0,
        headroom: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ):
        if not (rate > 0 and burst >= 1):
            raise ValueError("rate must be positive and burst at least 1")
        self.burst = float(burst)
        self.rate = float(rate)
        self.capacity = max(1.0, self.burst - headroom)
        self.clock = clock
        self.sleep = sleep
        self._level = 0.0
        self._last: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_plan(cls, plan: str = "standard", **options: Any) -> "RequestPacer":
        """A pacer at the limits of a Bitrix24 plan (``PLANS``: standard 50/2, enterprise 250/5)."""
        try:
            burst, rate = PLANS[plan]
        except KeyError:
            raise ValueError(f"unknown plan {plan!r}: use one of {', '.join(sorted(PLANS))}") from None
        return cls(burst=burst, rate=rate, **options)

    def _drain(self, now: float) -> float:
        if self._last is not None:
            self._level = max(0.0, self._level - self.rate * max(0.0, now - self._last))
        self._last = now
        return self._level

    @property
    def level(self) -> float:
        """The counter as we believe the portal sees it now (booked future slots included)."""
        with self._lock:
            return self._drain(self.clock())

    def reserve(self, limit: float | None = None) -> float | None:
        """Book one request; return the seconds to wait before sending it (0 when it fits now).

        With ``limit``, a slot further away than ``limit`` seconds is not booked and None is
        returned (the caller's deadline comes first; a slot it will not use must not count).
        """
        with self._lock:
            level = self._drain(self.clock())
            wait = max(0.0, (level + 1.0 - self.capacity) / self.rate)
            if limit is not None and wait > limit:
                return None
            self._level = level + 1.0
            return wait

    def acquire(self) -> float:
        """Book one request and sleep until it may be sent; return the seconds slept."""
        wait = self.reserve() or 0.0
        if wait > 0:
            self.sleep(wait)
        return wait

    def overflowed(self) -> None:
        """The portal answered 503: it thinks we are full, so believe it."""
        with self._lock:
            self._drain(self.clock())
            self._level = max(self._level, self.burst)


def _finite(value: Any) -> float | None:
    """A finite float, else None (a reply's figures may be anything)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class _MethodState:
    operating: float = 0.0
    reset_at: float | None = None  # unix time when the oldest one-minute bucket drops out
    blocked_until: float | None = None
    fallbacks: int = 0  # 429s in a row with no reset time known: each guesses a longer block


class OperatingLedger:
    """Per-method operating time as the portal reports it in each reply's ``time`` block.

    ``delay(method)`` says how long that method should wait before its next call: until the
    block ends after a 429 (the portal's reset time, else a guess that doubles from
    ``fallback_block`` up to ``max_block``, the 10-minute window); until ``operating_reset_at`` when the method is within ``safety``
    seconds of the budget; a small slowdown above ``slow_at`` of the budget (as the official JS
    SDK does); else 0. Other methods are unaffected. The clock is unix time because the portal's
    ``operating_reset_at`` is.
    """

    def __init__(
        self,
        budget: float = 480.0,
        *,
        safety: float = 5.0,
        slow_at: float = 0.8,
        max_slowdown: float = 7.0,
        fallback_block: float = 60.0,
        max_block: float = 600.0,
        clock: Clock = time.time,
    ):
        self.budget = float(budget)
        self.safety = float(safety)
        self.slow_at = float(slow_at)
        self.max_slowdown = float(max_slowdown)
        self.fallback_block = float(fallback_block)
        self.max_block = float(max_block)
        self.clock = clock
        self._methods: dict[str, _MethodState] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(method: str) -> str:
        return method.strip().lower()

    def _state(self, method: str) -> _MethodState:
        return self._methods.setdefault(self._key(method), _MethodState())

    def record(self, method: str, time_block: Mapping[str, Any] | None) -> None:
        """Take ``operating`` and ``operating_reset_at`` from a reply's ``time`` block."""
        if not isinstance(time_block, Mapping) or "operating" not in time_block:
            return
        operating = _finite(time_block.get("operating") or 0.0)
        if operating is None:
            return
        reset_raw = time_block.get("operating_reset_at")
        reset_at = _finite(reset_raw) if reset_raw not in (None, "") else None
        with self._lock:
            state = self._state(method)
            state.operating = operating
            state.fallbacks = 0  # the method answered: a later 429 starts guessing afresh
            if reset_at is not None:
                state.reset_at = reset_at

    def block(self, method: str, until: float | None = None, *, hint: float | None = None) -> float:
        """The portal answered 429 for ``method``: no call to it before ``until`` (unix time).

        Without ``until`` (the 429's own ``operating_reset_at``) the best known reset is used: the
        method's last known ``operating_reset_at``, else ``hint`` (a less certain reset, such as
        the one of the batch that carried the command), else a guess of ``fallback_block`` seconds
        that doubles with each 429 in a row up to ``max_block``. Returns the end of the block.
        """
        now = self.clock()
        with self._lock:
            state = self._state(method)
            if until is None or until <= now:
                if state.reset_at and state.reset_at > now:
                    until = state.reset_at
                elif hint is not None and hint > now:
                    until = hint
                else:
                    until = now + min(self.max_block, self.fallback_block * 2 ** min(state.fallbacks, 16))
                    state.fallbacks += 1
            state.blocked_until = max(state.blocked_until or 0.0, until)
            return state.blocked_until

    def operating(self, method: str) -> float:
        """The last operating time the portal reported for ``method`` (seconds in its 10-minute window)."""
        with self._lock:
            state = self._methods.get(self._key(method))
            return state.operating if state else 0.0

    def reset_at(self, method: str) -> float | None:
        """The last ``operating_reset_at`` reported for ``method``."""
        with self._lock:
            state = self._methods.get(self._key(method))
            return state.reset_at if state else None

    def delay(self, method: str) -> float:
        """Seconds ``method`` should wait before its next call (0 when it may go now)."""
        now = self.clock()
        with self._lock:
            state = self._methods.get(self._key(method))
            if state is None:
                return 0.0
            if state.blocked_until is not None:
                if state.blocked_until > now:
                    return state.blocked_until - now
                state.blocked_until = None
            if state.reset_at is not None and state.reset_at <= now:
                state.operating, state.reset_at = 0.0, None  # the oldest bucket dropped out: our figure is stale
                return 0.0
            if state.reset_at is None:
                return 0.0
            if state.operating >= self.budget - self.safety:
                return state.reset_at - now
            if state.operating >= self.budget * self.slow_at:
                return min(self.max_slowdown, (state.reset_at - now) * 0.01)
            return 0.0

    def delay_for(self, methods: Iterable[str]) -> float:
        """The longest delay among several methods (the commands of one batch)."""
        return max((self.delay(m) for m in methods), default=0.0)
