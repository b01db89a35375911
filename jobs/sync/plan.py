"""The plan of a run: which streams, in which order, with which options; made before anything is touched.

Dictionaries come first (user-field columns must exist before the records that fill them), then
the CRM records and the stage history, which run side by side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from jobs.sync.errors import UnknownEntity
from mappings import entities as ent


@dataclass(frozen=True)
class Plan:
    """Streams to sync and how: ``full`` re-reads everything, ``reconcile`` compares ID sets afterwards."""

    streams: tuple[ent.Stream, ...]
    full: bool = False
    reconcile: bool = False

    @classmethod
    def make(cls, entities: Iterable[str] | str | None = None, *, full: bool = False, reconcile: bool = False) -> "Plan":
        """A plan for ``--entity`` names (a comma-separated string or a list; None: everything)."""
        names: list[str] | None
        if isinstance(entities, str):
            names = [n for n in entities.split(",") if n.strip()]
        else:
            names = None if entities is None else [n for n in entities if n and n.strip()]
        if names is not None and not names:
            names = None
        try:
            streams = ent.select_streams(names)
        except KeyError as exc:
            known = ", ".join(sorted(ent.ALIASES))
            raise UnknownEntity(f"unknown entity {exc.args[0]!r}; known: {known}") from None
        return cls(tuple(streams), full, reconcile)

    @property
    def names(self) -> tuple[str, ...]:
        """Stream names in run order."""
        return tuple(s.name for s in self.streams)

    def of_kind(self, kind: str) -> list[ent.Stream]:
        """The plan's streams of one kind (entity, history, dictionary)."""
        return [s for s in self.streams if s.kind == kind]
