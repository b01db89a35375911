"""Shares, conversion, drop-off, the weakest stage and the win rate from counted stages."""

from __future__ import annotations

from decimal import Decimal

from jobs.report.figures import Durations, funnel, stage_figures, weakest, win_rate
from jobs.report.model import FAILURE, PROCESS, REMOVED, SUCCESS, Stage
from jobs.report.modes import Tally

STAGES = [
    Stage("LOSE", "Lose", FAILURE, 0, 70), Stage("B", "B", PROCESS, 2, 20), Stage("A", "A", PROCESS, 1, 10),
    Stage("C", "C", PROCESS, 3, 30), Stage("WON", "Won", SUCCESS, 4, 60), Stage("OLD", "Old", REMOVED, 0, 25),
]


def counted(**counts: int) -> Tally:
    t = Tally()
    for stage_id, n in counts.items():
        t.add(stage_id, n, "RUB", Decimal(n) * 10)
    return t


def test_figures_in_funnel_order_with_conversion_along_the_chain() -> None:
    figs = stage_figures(STAGES, counted(A=10, B=8, C=4, WON=2, LOSE=3, OLD=1), {"A": Durations(5, 60.0, 90.0)})
    assert [f.stage.id for f in figs] == ["A", "B", "C", "WON", "LOSE", "OLD"]
    a, b, c, won, lose, old = figs
    assert (a.share, a.conversion, a.drop_off) == (1.0, None, None)
    assert (b.share, b.conversion, b.drop_off, b.drop_rate) == (0.8, 0.8, 2, 0.19999999999999996)
    assert (c.conversion, c.drop_off) == (0.5, 4)
    assert (won.conversion, won.drop_off, won.share) == (0.5, 2, 0.2)
    assert (lose.share, lose.conversion, lose.drop_off) == (0.3, None, None)
    assert old.share == 0.1 and old.conversion is None
    assert a.amounts == {"RUB": Decimal(100)} and (a.stays, a.median_seconds, a.p90_seconds) == (5, 60.0, 90.0)


def test_weakest_is_the_largest_rate_then_the_larger_loss_then_the_earlier() -> None:
    assert weakest(stage_figures(STAGES, counted(A=10, B=8, C=4, WON=2))).stage.id == "B"  # B->C and C->WON lose 50%; B loses 4
    tie = weakest(stage_figures(STAGES, counted(A=4, B=2, C=1, WON=1)))
    assert (tie.stage.id, tie.next.id, tie.drop_off) == ("A", "B", 2)
    assert weakest(stage_figures(STAGES, counted(A=3, B=3, C=3, WON=3))) is None  # nothing lost
    assert weakest(stage_figures(STAGES, counted())) is None
    classic = weakest(stage_figures(STAGES, counted(A=1, B=5, C=0, WON=2)))  # counts may grow in classic mode
    assert (classic.stage.id, classic.drop_rate) == ("B", 1.0)


def test_win_rate_and_totals() -> None:
    assert win_rate(0, 0) is None and win_rate(3, 1) == 0.75
    t = counted(A=2)
    t.cards, t.won, t.lost, t.open = 5, 1, 3, 1
    f = funnel(STAGES, t, cycle_median=3600.0)
    assert (f.cards, f.won, f.lost, f.open, f.win_rate, f.cycle_median_seconds) == (5, 1, 3, 1, 0.25, 3600.0)
    data = f.to_data()
    assert list(data)[:2] == ["stages", "cards"] and data["weakest_stage"]["id"] == "A"
