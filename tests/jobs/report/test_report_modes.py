"""The counting rules of the three modes, one card at a time and over random groups of cards."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.report.figures import stage_figures, weakest
from jobs.report.model import FAILURE, PROCESS, REMOVED, SUCCESS, Stage
from jobs.report.modes import EnteredGroup, FactGroup, Funnel, tally

STAGES = [
    Stage("NEW", "New", PROCESS, 1), Stage("NEEDS", "Needs", PROCESS, 2), Stage("PROPOSAL", "Proposal", PROCESS, 3),
    Stage("WON", "Won", SUCCESS, 4), Stage("LOSE", "Lose", FAILURE, 0), Stage("APOLOGY", "Apology", FAILURE, 0),
    Stage("OLD", "Old", REMOVED, 0),
]
FUNNEL = Funnel(STAGES)


@pytest.mark.parametrize(
    ("reach", "position", "letter", "conversion", "classic"),
    [
        (1, "NEW", "P", ["NEW"], ["NEW"]),
        (3, "NEEDS", "P", ["NEW", "NEEDS", "PROPOSAL"], ["NEEDS"]),  # went back: still counts up to the furthest
        (3, "PROPOSAL", "P", ["NEW", "NEEDS", "PROPOSAL"], ["PROPOSAL"]),  # skipped NEEDS: filled in
        (4, "WON", "S", ["NEW", "NEEDS", "PROPOSAL", "WON"], ["WON"]),  # won: every stage and success
        (2, "LOSE", "F", ["NEW", "NEEDS", "LOSE"], ["LOSE"]),  # lost: up to the furthest, and its failure stage
        (0, "APOLOGY", "F", ["NEW", "APOLOGY"], ["APOLOGY"]),  # created lost: the first stage still counts
        (4, "NEEDS", "P", ["NEW", "NEEDS", "PROPOSAL"], ["NEEDS"]),  # reopened after won: all in-progress, no success
        (2, "OLD", "P", ["NEW", "NEEDS"], []),  # positioned at a removed stage: only history counts there
        (0, "GONE", None, ["NEW"], []),  # a stage the dictionary never had
    ],
    ids=["new", "back", "skipped", "won", "lost", "created-lost", "reopened", "removed", "unknown"],
)
def test_members_per_mode(reach: int, position: str, letter: str | None, conversion: list[str], classic: list[str]) -> None:
    assert FUNNEL.members("conversion", reach, position, letter) == conversion
    assert FUNNEL.members("classic", reach, position, letter) == classic


def test_entered_mode_is_counted_from_entered_groups_only() -> None:
    facts = [FactGroup(None, 3, "PROPOSAL", "P", False, "RUB", 2, Decimal("10"))]
    entered = [EnteredGroup(None, "NEW", "RUB", 1, Decimal("5")), EnteredGroup(None, "PROPOSAL", "RUB", 2, Decimal("10")),
               EnteredGroup(None, "OLD", "RUB", 1, Decimal("5"))]
    counts = tally(FUNNEL, "entered", facts, entered)[None].counts
    assert dict(counts) == {"NEW": 1, "PROPOSAL": 2, "OLD": 1}
    conversion = tally(FUNNEL, "conversion", facts, entered)[None].counts
    assert dict(conversion) == {"NEW": 2, "NEEDS": 2, "PROPOSAL": 2, "OLD": 1}  # removed stages from history in every mode


def test_totals_by_position_moved_cards_apart() -> None:
    facts = [
        FactGroup("a", 4, "WON", "S", False, "RUB", 3, Decimal("300")),
        FactGroup("a", 2, "LOSE", "F", False, "USD", 1, Decimal("7")),
        FactGroup("b", 2, "NEEDS", "P", True, "RUB", 2, Decimal("0")),
        FactGroup("b", 1, "NEW", "P", False, "RUB", 4, Decimal("1")),
        FactGroup("b", 0, "GONE", "F", False, "RUB", 1, Decimal("0")),  # unknown stage: the mirror's letter decides
    ]
    result = tally(FUNNEL, "conversion", facts, [])
    a, b = result["a"], result["b"]
    assert (a.cards, a.won, a.lost, a.open, a.moved_out) == (4, 3, 1, 0, 0)
    assert (b.cards, b.won, b.lost, b.open, b.moved_out) == (7, 0, 1, 4, 2)
    assert dict(a.amounts["NEW"]) == {"RUB": Decimal("300"), "USD": Decimal("7")}
    assert a.qualified == 3 and b.qualified == 2  # left the first stage and not lost


group = st.builds(
    FactGroup,
    slice=st.sampled_from([None, "x"]),
    reach=st.integers(0, 4),
    position=st.sampled_from([s.id for s in STAGES] + ["GONE"]),
    letter=st.sampled_from(["P", "S", "F", None]),
    moved=st.booleans(),
    currency=st.sampled_from(["RUB", ""]),
    cards=st.integers(1, 5),
    amount=st.decimals(0, 1000, places=2),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(group, max_size=12))
def test_conversion_counts_never_grow_along_the_funnel(groups: list[FactGroup]) -> None:
    for t in tally(FUNNEL, "conversion", groups, []).values():
        counts = [t.counts.get(s.id, 0) for s in STAGES if s.semantics == PROCESS]
        assert counts[0] == t.cards  # every card reached the first stage
        assert counts == sorted(counts, reverse=True)
        assert t.counts.get("WON", 0) <= counts[-1]
        assert t.cards == t.won + t.lost + t.open + t.moved_out
        figures = stage_figures(STAGES, t)
        assert all(f.drop_off is None or f.drop_off >= 0 for f in figures)
        found = weakest(figures)
        if found is not None:
            assert found.drop_off > 0 and found.stage.semantics == PROCESS


@settings(max_examples=200, deadline=None)
@given(st.lists(group, max_size=12))
def test_classic_counts_each_card_once(groups: list[FactGroup]) -> None:
    for key, t in tally(FUNNEL, "classic", groups, []).items():
        placed = sum(g.cards for g in groups if g.slice == key and g.position in FUNNEL.by_id and g.position != "OLD")
        assert sum(t.counts.values()) == placed
