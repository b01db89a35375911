"""What a run did: per stream fetched, inserted, updated, deleted, HTTP requests, seconds; as text or JSON.

``SyncResult`` is returned by ``run_sync``; ``StreamResult`` is one line of it and one row of the run log.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

OK, FAILED, INTERRUPTED, RUNNING = "ok", "failed", "interrupted", "running"


@dataclass
class StreamResult:
    """Counts of one stream in one run (``deleted``: rows marked vanished, or cleared when they came back)."""

    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    requests: int = 0
    seconds: float = 0.0
    status: str = OK
    error: str | None = None
    problems: int = 0  # values that did not parse (NULL in their column, kept in raw)

    def add(self, other: "StreamResult") -> None:
        """Add another result's counts to this one."""
        self.fetched += other.fetched
        self.inserted += other.inserted
        self.updated += other.updated
        self.deleted += other.deleted
        self.problems += other.problems

    @property
    def written(self) -> int:
        """Rows inserted, updated or marked deleted."""
        return self.inserted + self.updated + self.deleted


@dataclass
class SyncResult:
    """The outcome of one run; ``entities[name]`` per stream, ``requests`` the run's HTTP requests in total."""

    run_id: str
    status: str = OK
    entities: dict[str, StreamResult] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0
    portal: str = ""
    mirror: str = ""
    error: str | None = None
    reconcile: bool = False

    def stream(self, name: str) -> StreamResult:
        """The result of one stream (created on first use)."""
        return self.entities.setdefault(name, StreamResult())

    @property
    def ok(self) -> bool:
        """True when the run finished without error."""
        return self.status == OK

    @property
    def written(self) -> int:
        """Rows written by the whole run."""
        return sum(r.written for r in self.entities.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (stable keys) for JSON output and the worker's logs."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "portal": self.portal,
            "mirror": self.mirror,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "reconcile": self.reconcile,
            "error": self.error,
            "entities": {
                name: {**asdict(r), "seconds": round(r.seconds, 3)} for name, r in self.entities.items()
            },
        }

    def to_json(self) -> str:
        """``to_dict`` as indented JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def lines(self) -> list[str]:
        """A table for people: one line per stream, then the totals."""
        width = max([len(n) for n in self.entities] + [6])
        out = [f"{'stream':<{width}}  {'fetched':>8} {'inserted':>8} {'updated':>8} {'deleted':>8} {'requests':>8} {'seconds':>8}  status"]
        for name, r in self.entities.items():
            out.append(f"{name:<{width}}  {r.fetched:>8} {r.inserted:>8} {r.updated:>8} {r.deleted:>8} {r.requests:>8} {r.seconds:>8.1f}  "
                       f"{r.status}{': ' + r.error if r.error else ''}")
        out.append(f"{self.status}: {self.requests} HTTP request(s), {self.written} row(s) written in {self.seconds:.1f} s")
        return out
