"""From counted stages to figures: shares, conversion, drop-off, the weakest stage, win rate.

Pure arithmetic over what ``modes.tally`` counted and the durations SQL ranked; no database here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from jobs.report.model import FAILURE, PROCESS, REMOVED, SUCCESS, Channel, Funnel, Slice, Stage, StageFigures, Weakest
from jobs.report.modes import Tally


@dataclass(frozen=True)
class Durations:
    """Completed stays in one stage: how many, and their median and 90th percentile in seconds."""

    stays: int
    median: float | None
    p90: float | None


def ordered(stages: Sequence[Stage]) -> list[Stage]:
    """Stages in report order: in progress (by index), success, failures, then removed stages (unknown sort last)."""
    rank = {PROCESS: 0, SUCCESS: 1, FAILURE: 2, REMOVED: 3}
    return sorted(stages, key=lambda s: (rank[s.semantics], s.index, s.sort if s.sort is not None else 1 << 30, s.id))


def stage_figures(
    stages: Sequence[Stage],
    tally: Tally,
    durations: Mapping[str, Durations] | None = None,
) -> list[StageFigures]:
    """Figures per stage: share of the first stage, conversion and drop-off from the previous one.

    Conversion and drop-off run along the in-progress stages and on to the success stage; failure
    and removed stages only get their share of the first stage.
    """
    durations = durations or {}
    order = ordered(stages)
    first = tally.counts.get(order[0].id, 0) if order and order[0].semantics == PROCESS else 0
    result: list[StageFigures] = []
    previous: int | None = None
    for stage in order:
        count = tally.counts.get(stage.id, 0)
        conversion = drop_off = drop_rate = None
        if stage.semantics in (PROCESS, SUCCESS):
            if previous is not None:
                drop_off = previous - count
                if previous:
                    conversion = count / previous
                    drop_rate = 1 - conversion
            previous = count
        stay = durations.get(stage.id, Durations(0, None, None))
        amounts = {currency: Decimal(value) for currency, value in sorted(tally.amounts.get(stage.id, {}).items())
                   if count}
        result.append(StageFigures(
            stage=stage, count=count, share=count / first if first else None, conversion=conversion,
            drop_off=drop_off, drop_rate=drop_rate, amounts=amounts, stays=stay.stays,
            median_seconds=stay.median, p90_seconds=stay.p90,
        ))
    return result


def weakest(figures: Sequence[StageFigures]) -> Weakest | None:
    """The transition losing the largest share of its cards (ties: more cards lost, then the earlier one).

    Only transitions along in-progress stages to the success stage that lose at least one card count.
    """
    chain = [f for f in figures if f.stage.semantics in (PROCESS, SUCCESS)]
    best: tuple[float, int, int] | None = None
    found: Weakest | None = None
    for position, (before, after) in enumerate(zip(chain, chain[1:])):
        if after.drop_rate is None or after.drop_off is None or after.drop_off <= 0:
            continue
        key = (after.drop_rate, after.drop_off, -position)
        if best is None or key > best:
            best = key
            found = Weakest(before.stage, after.stage, after.drop_off, after.drop_rate)
    return found


def win_rate(won: int, lost: int) -> float | None:
    """won / (won + lost); None while no card is closed."""
    closed = won + lost
    return won / closed if closed else None


def funnel(
    stages: Sequence[Stage],
    tally: Tally,
    *,
    durations: Mapping[str, Durations] | None = None,
    cycle_median: float | None = None,
    slice: Slice | None = None,
    channels: list[Channel] | None = None,
) -> Funnel:
    """One funnel's figures and totals."""
    figures = stage_figures(stages, tally, durations)
    return Funnel(
        stages=figures, cards=tally.cards, won=tally.won, lost=tally.lost, open=tally.open,
        moved_out=tally.moved_out, win_rate=win_rate(tally.won, tally.lost), cycle_median_seconds=cycle_median,
        weakest=weakest(figures), slice=slice, channels=channels,
    )
