"""The funnel report as plain data: stages, per-stage figures, funnels per slice, drill-down cards.

Everything a renderer needs is here and nothing reads the database; ``to_data()`` is the stable
JSON shape documented in the README ("Reports", JSON output).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

PROCESS, SUCCESS, FAILURE, REMOVED = "process", "success", "failure", "removed"
MODES = ("conversion", "classic", "entered")
PERIODS = ("created", "active")
SLICES = ("assigned", "source", "month")
ENTITIES = ("deal", "lead")


@dataclass(frozen=True)
class Stage:
    """One stage of a funnel: its STATUS_ID, name, semantics and place.

    ``index`` is 1..n for the in-progress stages in pipeline order, n + 1 for the success stage and
    0 for failure and removed stages (they are listed apart and take no part in the order).
    """

    id: str
    name: str
    semantics: str
    index: int
    sort: int | None = None
    color: str | None = None

    def to_data(self) -> dict[str, Any]:
        """The stage's identity as JSON data."""
        return {"id": self.id, "name": self.name, "semantics": self.semantics, "sort": self.sort, "color": self.color}


@dataclass(frozen=True)
class Pipeline:
    """The pipeline a deal funnel is drawn over (leads have one: id 0, named after the entity)."""

    id: int
    name: str
    key: str | None = None

    def to_data(self) -> dict[str, Any]:
        """The pipeline as JSON data."""
        return {"id": self.id, "name": self.name, "key": self.key}


@dataclass(frozen=True)
class Weakest:
    """The transition that loses the largest share of its cards: from ``stage`` to ``next``."""

    stage: Stage
    next: Stage
    drop_off: int
    drop_rate: float

    def to_data(self) -> dict[str, Any]:
        """The weakest transition as JSON data (``id`` is the stage the cards are lost at)."""
        return {"id": self.stage.id, "name": self.stage.name, "next_id": self.next.id, "next_name": self.next.name,
                "drop_off": self.drop_off, "drop_rate": _rate(self.drop_rate)}

    def text(self) -> str:
        """One line for people: ``NEEDS "Needs" -> PROPOSAL "Proposal": 40.0% lost (12 cards)``."""
        return (f'{self.stage.id} "{self.stage.name}" -> {self.next.id} "{self.next.name}": '
                f"{self.drop_rate:.1%} lost ({self.drop_off} card{'s' if self.drop_off != 1 else ''})")


@dataclass(frozen=True)
class StageFigures:
    """The figures of one stage in one funnel (see the README for how each is counted)."""

    stage: Stage
    count: int
    share: float | None  # count / count at the first stage
    conversion: float | None  # count / count at the previous stage (in-progress and success stages)
    drop_off: int | None  # previous count - count
    drop_rate: float | None  # 1 - conversion
    amounts: dict[str, Decimal] = field(default_factory=dict)  # sum of OPPORTUNITY per currency
    stays: int = 0  # completed stays in the stage the durations are taken from
    median_seconds: float | None = None
    p90_seconds: float | None = None

    def to_data(self) -> dict[str, Any]:
        """The stage and its figures as JSON data; money as exact decimal strings."""
        return {
            **self.stage.to_data(),
            "count": self.count,
            "share": _rate(self.share),
            "conversion": _rate(self.conversion),
            "drop_off": self.drop_off,
            "drop_rate": _rate(self.drop_rate),
            "amounts": {currency: _money(value) for currency, value in self.amounts.items()},
            "stays": self.stays,
            "median_seconds": _seconds(self.median_seconds),
            "p90_seconds": _seconds(self.p90_seconds),
        }


@dataclass(frozen=True)
class Channel:
    """Lead quality of one source channel (``SOURCE_ID`` with its label)."""

    source_id: str | None
    name: str
    leads: int
    qualified: int
    converted: int
    junk: int

    def share(self, value: int) -> float | None:
        """``value`` as a share of the channel's leads (None without leads)."""
        return value / self.leads if self.leads else None

    def to_data(self) -> dict[str, Any]:
        """The channel as JSON data."""
        return {"source_id": self.source_id, "name": self.name, "leads": self.leads,
                "qualified": self.qualified, "qualified_share": _rate(self.share(self.qualified)),
                "converted": self.converted, "converted_share": _rate(self.share(self.converted)),
                "junk": self.junk, "junk_share": _rate(self.share(self.junk))}


@dataclass(frozen=True)
class Slice:
    """What a funnel of a ``--by`` report is restricted to: a manager, a source or a creation month."""

    by: str
    key: str | None
    label: str

    def to_data(self) -> dict[str, Any]:
        """The slice as JSON data."""
        return {"by": self.by, "key": self.key, "label": self.label}


@dataclass(frozen=True)
class Funnel:
    """One funnel: the stages in order (in progress, success, failures, removed) and its totals."""

    stages: list[StageFigures]
    cards: int
    won: int
    lost: int
    open: int
    moved_out: int
    win_rate: float | None  # won / (won + lost)
    cycle_median_seconds: float | None  # creation -> won, over the won cards
    weakest: Weakest | None
    slice: Slice | None = None  # None for the total
    channels: list[Channel] | None = None  # lead funnels: quality per source

    def stage(self, stage_id: str) -> StageFigures:
        """The figures of one stage by its STATUS_ID."""
        for figures in self.stages:
            if figures.stage.id == stage_id:
                return figures
        raise KeyError(stage_id)

    def counts(self) -> dict[str, int]:
        """STATUS_ID -> count, in funnel order (handy in tests and scripts)."""
        return {figures.stage.id: figures.count for figures in self.stages}

    def to_data(self) -> dict[str, Any]:
        """The funnel as JSON data: ``stages`` in order, then the totals."""
        data: dict[str, Any] = {}
        if self.slice is not None:
            data["slice"] = self.slice.to_data()
        data.update({
            "stages": [figures.to_data() for figures in self.stages],
            "cards": self.cards,
            "won": self.won,
            "lost": self.lost,
            "open": self.open,
            "moved_out": self.moved_out,
            "win_rate": _rate(self.win_rate),
            "cycle_median_seconds": _seconds(self.cycle_median_seconds),
            "weakest_stage": self.weakest.to_data() if self.weakest else None,
        })
        if self.channels is not None:
            data["channels"] = [channel.to_data() for channel in self.channels]
        return data


@dataclass(frozen=True)
class Period:
    """Which cards a report covers: ``created`` (the cohort created in [start, end)) or ``active``
    (in the funnel during [start, end), figures as of its end); bounds are aware UTC or None."""

    kind: str = "created"
    start: datetime | None = None
    end: datetime | None = None
    timezone: str = "UTC"

    @property
    def bounded(self) -> bool:
        """True when the period has a start or an end."""
        return self.start is not None or self.end is not None

    def to_data(self) -> dict[str, Any]:
        """The period as JSON data (ISO-8601 UTC bounds, the zone dates were read in)."""
        return {"kind": self.kind, "from": _iso(self.start), "to": _iso(self.end), "timezone": self.timezone}


@dataclass(frozen=True)
class Card:
    """One card in a drill-down list."""

    id: int
    title: str
    amount: Decimal | None
    currency: str
    manager_id: int | None
    manager: str
    entered_at: datetime | None  # the last time the card entered the stage (None: counted without entering it)
    days_in_stage: float | None  # from entering to the next move (or to now / the period's end)
    url: str | None
    slice_key: str | None = None  # with ``--by``: the slice the card belongs to

    def to_data(self) -> dict[str, Any]:
        """The card as JSON data."""
        return {"id": self.id, "title": self.title, "amount": _money(self.amount), "currency": self.currency,
                "manager_id": self.manager_id, "manager": self.manager, "entered_at": _iso(self.entered_at),
                "days_in_stage": None if self.days_in_stage is None else round(self.days_in_stage, 2),
                "url": self.url, "slice": self.slice_key}


class CardList(list[Card]):
    """The cards counted at one stage (a list of ``Card``), with the stage and how many there are in all."""

    def __init__(self, stage: Stage, cards: list[Card], total: int, *, mode: str = "conversion", timezone: str | None = None):
        super().__init__(cards)
        self.stage = stage
        self.total = total  # may be larger than len(self) when the list was cut at a limit
        self.mode = mode
        self.timezone = timezone  # the portal's, for showing dates

    def to_data(self) -> dict[str, Any]:
        """The list as JSON data."""
        return {"stage": self.stage.to_data(), "mode": self.mode, "total": self.total,
                "cards": [card.to_data() for card in self]}

    def to_json(self) -> str:
        """``to_data()`` as indented JSON text."""
        return _dump(self.to_data())


@dataclass(frozen=True)
class FunnelReport:
    """A funnel report: what it covers, the total funnel, one funnel per slice, drill-down lists."""

    entity: str
    pipeline: Pipeline
    mode: str
    period: Period
    total: Funnel
    slices: list[Funnel] = field(default_factory=list)
    by: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    portal: str | None = None
    generated_at: datetime | None = None
    cards: dict[str, CardList] = field(default_factory=dict)  # STATUS_ID -> cards of the total funnel

    @property
    def stages(self) -> list[StageFigures]:
        """The total funnel's stages."""
        return self.total.stages

    @property
    def weakest(self) -> Weakest | None:
        """The total funnel's weakest transition."""
        return self.total.weakest

    def funnels(self) -> list[Funnel]:
        """The total first, then the slices."""
        return [self.total, *self.slices]

    def to_data(self) -> dict[str, Any]:
        """The report as JSON data: what it covers, then the total funnel's keys, then ``slices``."""
        data: dict[str, Any] = {
            "report": "funnel",
            "entity": self.entity,
            "pipeline": self.pipeline.to_data(),
            "mode": self.mode,
            "period": self.period.to_data(),
            "filters": self.filters,
            "portal": self.portal,
            "generated_at": _iso(self.generated_at),
            "by": self.by,
        }
        data.update(self.total.to_data())
        if self.by is not None:
            data["slices"] = [funnel.to_data() for funnel in self.slices]
        if self.cards:
            data["stage_cards"] = {stage_id: cards.to_data() for stage_id, cards in self.cards.items()}
        return data

    def to_json(self) -> str:
        """``to_data()`` as indented JSON text (UTF-8, names unescaped)."""
        return _dump(self.to_data())


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{Decimal(value):.2f}"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
