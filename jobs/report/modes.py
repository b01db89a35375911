"""The three counting modes: at which stages one card counts, given what SQL found out about it.

SQL groups the cards by (slice, reach, position, currency); this module turns those few groups into
per-stage counts and sums. The rules are the README's ("Reports", semantics), stated once here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from jobs.report.model import FAILURE, PROCESS, REMOVED, SUCCESS, Stage

SEMANTIC_LETTERS = {"P": PROCESS, "S": SUCCESS, "F": FAILURE}


@dataclass(frozen=True)
class FactGroup:
    """Cards of one slice that share their facts: how far they got, where they are, their currency.

    ``reach`` is the highest stage index among the card's history rows in the pipeline and its
    position (0 when none of them is an in-progress or success stage); ``position`` the STATUS_ID of
    the stage the card is at (or left the pipeline from, when ``moved``); ``letter`` the P/S/F
    semantics the mirror recorded for that position, used when the stage is not in the dictionary.
    """

    slice: str | None
    reach: int
    position: str
    letter: str | None
    moved: bool
    currency: str
    cards: int
    amount: Decimal


@dataclass(frozen=True)
class EnteredGroup:
    """Cards of one slice and currency that entered one stage (a history row in it, or positioned there)."""

    slice: str | None
    stage: str
    currency: str
    cards: int
    amount: Decimal


@dataclass
class Tally:
    """What one funnel counts: per stage cards and money, and the totals by position."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    amounts: dict[str, dict[str, Decimal]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Decimal)))
    cards: int = 0
    won: int = 0
    lost: int = 0
    open: int = 0
    moved_out: int = 0
    qualified: int = 0

    def add(self, stage_id: str, cards: int, currency: str, amount: Decimal) -> None:
        """Count ``cards`` (worth ``amount`` in ``currency``) at a stage."""
        self.counts[stage_id] += cards
        self.amounts[stage_id][currency] += amount


class Funnel:
    """A pipeline's stages split the way the modes need them."""

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)
        self.by_id = {stage.id: stage for stage in self.stages}
        self.process = [stage for stage in self.stages if stage.semantics == PROCESS]
        self.success = next((stage for stage in self.stages if stage.semantics == SUCCESS), None)
        self.removed = {stage.id for stage in self.stages if stage.semantics == REMOVED}

    def semantics_of(self, stage_id: str, letter: str | None) -> str:
        """The semantics of a position: the dictionary's, else the P/S/F the mirror recorded (P when unknown)."""
        stage = self.by_id.get(stage_id)
        if stage is not None and stage.semantics != REMOVED:
            return stage.semantics
        return SEMANTIC_LETTERS.get((letter or "P").upper(), PROCESS)

    def reached(self, reach: int) -> list[Stage]:
        """The in-progress stages a card with this reach passed: the first up to the furthest (all after success)."""
        furthest = min(max(reach, 1), len(self.process))
        return self.process[:furthest]

    def members(self, mode: str, reach: int, position: str, letter: str | None) -> list[str]:
        """STATUS_IDs of the funnel stages (not removed ones) a card counts at in ``conversion`` or ``classic`` mode.

        conversion: every in-progress stage up to the furthest reached (skipped ones included), plus
        the success or failure stage it is positioned at. classic: the stage it is positioned at.
        """
        at_position = [position] if position in self.by_id and position not in self.removed else []
        if mode == "classic":
            return at_position
        if mode != "conversion":
            raise ValueError(f"mode {mode!r} is counted from entered stages, not from facts")
        semantics = self.semantics_of(position, letter)
        placed = self.by_id.get(position)
        members = [stage.id for stage in self.reached(max(reach, placed.index if placed else 0))]
        if semantics in (SUCCESS, FAILURE):
            members += at_position
        return members


def tally(
    funnel: Funnel,
    mode: str,
    facts: Iterable[FactGroup],
    entered: Iterable[EnteredGroup],
) -> dict[str | None, Tally]:
    """Per slice, the counts and sums of every stage under ``mode`` and the totals by position.

    Removed stages count the cards that entered them in every mode (they are listed apart).
    """
    tallies: dict[str | None, Tally] = defaultdict(Tally)
    for group in facts:
        t = tallies[group.slice]
        t.cards += group.cards
        semantics = funnel.semantics_of(group.position, group.letter)
        if group.moved:
            t.moved_out += group.cards
        elif semantics == SUCCESS:
            t.won += group.cards
        elif semantics == FAILURE:
            t.lost += group.cards
        else:
            t.open += group.cards
        if group.reach >= 2 and semantics != FAILURE:
            t.qualified += group.cards
        if mode != "entered":
            for stage_id in funnel.members(mode, group.reach, group.position, group.letter):
                t.add(stage_id, group.cards, group.currency, group.amount)
    for group in entered:
        if mode == "entered" or group.stage in funnel.removed:
            tallies[group.slice].add(group.stage, group.cards, group.currency, group.amount)
    return dict(tallies)
