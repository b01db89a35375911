"""One deadline-aware retry helper for everything the client repeats: a call, a batch packet, a page and a segment.

``RetryPolicy`` says how hard to try, a ``Deadline`` is the end of one operation's time (every wait and
every HTTP read is checked against it), and ``Retry`` decides after each failure whether to wait and go again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from connector import errors

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], None]
# on_retry(label, error, failures so far, seconds about to be slept): counting and logging
OnRetry = Callable[[str, errors.B24Error, int, float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per operation, a deadline for all of them, and the backoff curve.

    ``max_elapsed`` bounds every wait of one logical operation (a call, a batch packet, one page
    or segment of ``list_all``): bucket slots, ledger pauses, 429 blocks, backoff, and each HTTP
    read, which never waits longer than what is left of it.
    """

    attempts: int = 6  # including the first one
    max_elapsed: float = 660.0  # seconds from the first attempt; covers one operating-time window (600 s)
    base: float = 0.5  # first backoff in seconds, doubled each retry, plus up to ``base`` of jitter
    cap: float = 30.0  # longest single backoff (waits for an operating-time reset are not capped)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if not self.max_elapsed > 0:
            raise ValueError("RetryPolicy.max_elapsed must be a positive number of seconds")
        if self.base < 0 or self.cap < 0:
            raise ValueError("RetryPolicy.base and cap must not be negative")

    def within(self, seconds: float) -> "RetryPolicy":
        """The same policy with every operation bounded by ``seconds`` (``--timeout``, ``B24SYNC_TIMEOUT``)."""
        return replace(self, max_elapsed=float(seconds))

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th failure in a row: doubling from ``base``, capped, jittered."""
        return min(self.cap, self.base * 2 ** min(max(failures, 1) - 1, 32)) + rng.uniform(0, self.base)


class Deadline:
    """The end of one logical operation's time: every wait is checked against it before it is slept.

    ``last`` is the latest error a retry was made for (raised when a wait would pass the end);
    ``exhausted`` says that has happened, so nothing retries any more.
    """

    def __init__(self, clock: Clock, seconds: float):
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


class Retry:
    """The failures of one logical operation: counted against ``policy.attempts`` and one deadline.

    ``again(error)`` is called after each retriable failure: it sleeps the backoff (or the wait the
    caller knows, such as an operating-time reset) and returns True, or returns False when no attempt
    or no time is left, and the caller raises. ``progressed()`` starts afresh when the operation
    moved on (an export page brought rows); the next deadline begins when it is first needed.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
        deadline: Deadline | None = None,
        on_retry: OnRetry | None = None,
    ):
        self.policy = policy
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.on_retry = on_retry
        self.failures = 0
        self._deadline = deadline

    @property
    def deadline(self) -> Deadline:
        """The operation's deadline (started now if this is its first use)."""
        if self._deadline is None:
            self._deadline = Deadline(self.clock, self.policy.max_elapsed)
        return self._deadline

    def backoff(self) -> float:
        """The backoff the next failure would wait (a fresh jitter draw)."""
        return self.policy.backoff(self.failures + 1, self.rng)

    def progressed(self) -> None:
        """The operation moved on: no failures in a row, and a new deadline from its next use."""
        self.failures = 0
        self._deadline = None

    def again(self, error: errors.B24Error, *, wait: float | None = None, label: str = "") -> bool:
        """After a retriable failure: wait and return True when another attempt is allowed, else False."""
        deadline = self.deadline
        if deadline.exhausted:
            return False
        self.failures += 1
        if self.failures >= self.policy.attempts:
            return False
        if wait is None:
            wait = self.policy.backoff(self.failures, self.rng)
        if not deadline.allows(wait):
            return False
        deadline.last = error
        if self.on_retry is not None:
            self.on_retry(label, error, self.failures, wait)
        if wait > 0:
            self.sleep(wait)
        return True

    def run(
        self,
        attempt: Callable[[Deadline], T],
        *,
        retriable: Callable[[errors.B24Error], bool],
        wait_for: Callable[[errors.B24Error], float | None] = lambda error: None,
        label: str = "",
    ) -> T:
        """``attempt(deadline)`` until it returns; a ``B24Error`` that is not ``retriable``, or one
        after which ``again`` says no, is raised."""
        while True:
            try:
                return attempt(self.deadline)
            except errors.B24Error as exc:
                if not retriable(exc) or not self.again(exc, wait=wait_for(exc), label=label):
                    raise

