"""Deterministic fault injection for the emulator: 5xx, hangs, HTML pages, cut bodies, dropped connections.

``FaultPlan.parse("5xx=0.05,timeout=0.02,html=0.01,cut=0.01,reset=0.01,seed=7,hang=30")`` draws
one number per ``/rest/`` request, in arrival order, from a RNG seeded with ``seed``; the same seed
and the same sequence of requests give the same faults. Kinds:

- ``5xx``: HTTP 500 with the JSON envelope ``INTERNAL_SERVER_ERROR`` or a plain-text 502 (alternating).
- ``timeout``: the server holds the request ``hang`` seconds (past a client's read timeout), then
  closes the connection without a reply. Server shutdown cuts the hang short.
- ``html``: an nginx-like ``text/html`` 502/503 page (alternating).
- ``cut``: the real reply, with ``Content-Length`` of the whole body but only half of it sent,
  then the connection is closed. The method did run.
- ``reset``: the connection is closed (RST) without a reply.

Every kind but ``cut`` is decided before the method runs, so nothing changed on the portal.
``push(kind, ...)`` forces the faults of the next requests regardless of the draw (tests).
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field

KINDS = ("5xx", "timeout", "html", "cut", "reset")


@dataclass
class FaultPlan:
    """Probabilities per fault kind and the seeded generator drawing them."""

    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    hang: float = 30.0

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault probabilities add up to more than 1")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._forced: deque[str | None] = deque()
        self._serial: dict[str, int] = {}
        self.injected: dict[str, int] = {}

    @classmethod
    def parse(cls, spec: str | None) -> "FaultPlan":
        """Parse ``"5xx=0.05,timeout=0.02,seed=7,hang=2"``; an empty spec injects nothing."""
        rates: dict[str, float] = {}
        seed, hang = 0, 30.0
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"fault spec item {item!r} is not name=value")
            name = name.strip().lower()
            try:
                if name == "seed":
                    seed = int(value)
                elif name == "hang":
                    hang = float(value)
                else:
                    rates[name] = float(value)
            except ValueError as exc:
                raise ValueError(f"fault spec item {item!r}: {exc}") from None
        return cls(rates, seed, hang)

    @property
    def active(self) -> bool:
        """True when some fault can happen."""
        return any(self.rates.values()) or bool(self._forced)

    def push(self, *kinds: str | None) -> None:
        """Force the faults of the next requests in order (``None`` = no fault for that request)."""
        for kind in kinds:
            if kind is not None and kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._forced.extend(kinds)

    def draw(self) -> str | None:
        """The fault for the next request, or None. Call exactly once per request, in arrival order."""
        with self._lock:
            if self._forced:
                kind = self._forced.popleft()
            else:
                kind = None
                if self.rates:  # the draw happens even when no kind hits, to keep the sequence stable
                    point = self._rng.random()
                    edge = 0.0
                    for name in KINDS:
                        edge += self.rates.get(name, 0.0)
                        if point < edge:
                            kind = name
                            break
            if kind is not None:
                self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind

    def variant(self, kind: str) -> int:
        """0, 1, 0, 1... per kind: which of the two shapes of a fault to send this time."""
        with self._lock:
            n = self._serial.get(kind, 0)
            self._serial[kind] = n + 1
            return n % 2


NGINX_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def html_page(status: int, reason: str) -> bytes:
    """The HTML error page nginx shows in front of a struggling portal."""
    return NGINX_PAGE.format(status=status, reason=reason).encode("ascii")
