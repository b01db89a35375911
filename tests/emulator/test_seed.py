"""The seeded-portal generator: a deterministic plan with a realistic funnel, played through the methods."""

from __future__ import annotations

import collections
from datetime import datetime, timedelta, timezone
import pytest

from connector.emulator import seed
from connector.emulator.seed import DEAL_PATH, make_plan

END = datetime(2026, 11, 26, tzinfo=timezone(timedelta(hours=3))).timestamp()
MSK = timezone(timedelta(hours=3))


@pytest.fixture(scope="module")
def plan() -> seed.Plan:
    return make_plan(3000, 11, END)


def reached(plan: seed.Plan, funnel: int) -> collections.Counter[str]:
    """How many deals of a pipeline ever entered each stage (the funnel)."""
    counts: collections.Counter[str] = collections.Counter()
    for deal in plan.deals:
        stages = [("NEW", deal.funnel)] + [(stage, f) for _, f, stage in deal.moves]
        for stage in {s for s, f in stages if f == funnel}:
            counts[stage] += 1
    return counts


def test_plan_is_deterministic() -> None:
    assert make_plan(400, 5, END) == make_plan(400, 5, END)
    assert make_plan(400, 5, END) != make_plan(400, 6, END)


def test_plan_sizes(plan: seed.Plan) -> None:
    assert len(plan.deals) == 3000
    assert len(plan.leads) == 4500
    assert len(plan.managers) == 8
    converted = [lead for lead in plan.leads if lead.deal is not None]
    assert converted and all(plan.deals[lead.deal].lead == lead.index for lead in converted)
    assert {d.funnel for d in plan.deals} == {0, 1, 2}


def test_default_funnel_falls_and_has_one_weakest_stage(plan: seed.Plan) -> None:
    counts = reached(plan, 0)
    path = [counts[stage] for stage in DEAL_PATH + ("WON",)]
    assert all(a > b for a, b in zip(path, path[1:])), path
    ratios = [b / a for a, b in zip(path, path[1:])]
    weakest = min(range(len(ratios)), key=ratios.__getitem__)
    assert DEAL_PATH[weakest] == "PREPAYMENT_INVOICE"
    assert ratios[weakest] < sorted(ratios)[1] - 0.15  # clearly the weakest, not a tie
    assert counts["LOSE"] > 0 and counts["APOLOGY"] > 0 and counts["WON"] > 0


def test_deals_move_forward_with_skips_and_end_in_one_final_stage(plan: seed.Plan) -> None:
    order = {stage: i for i, stage in enumerate(DEAL_PATH + ("WON",))}
    skips = 0
    for deal in plan.deals:
        previous = "NEW"
        for position, (_, _, stage) in enumerate(deal.moves):
            if stage in ("LOSE", "APOLOGY", "WON"):
                assert position == len(deal.moves) - 1  # nothing after a final stage
            if stage in order and previous in order and stage != "NEW":
                assert order[stage] > order[previous]
                skips += order[stage] - order[previous] > 1
            previous = stage
    assert skips > 0


def test_leads_are_converted_junked_or_still_open(plan: seed.Plan) -> None:
    finals = collections.Counter(lead.moves[-1][1] if lead.moves else "NEW" for lead in plan.leads)
    assert finals["CONVERTED"] > 0 and finals["JUNK"] > 0
    assert set(finals) <= {"NEW", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK"}
    # a lead still in progress is a recent one
    open_leads = [lead for lead in plan.leads if not lead.moves or lead.moves[-1][1] not in ("CONVERTED", "JUNK")]
    assert all(lead.created > END - 60 * 86400 for lead in open_leads)


def test_moments_cover_the_past_year_in_working_hours(plan: seed.Plan) -> None:
    created = [d.created for d in plan.deals] + [lead.created for lead in plan.leads]
    assert min(created) < END - 330 * 86400 and max(created) < END
    moments = created + [m for d in plan.deals for m, _, _ in d.moves] + [m for lead in plan.leads for m, _ in lead.moves]
    assert all(plan.start <= m < END for m in moments)
    local = [datetime.fromtimestamp(m, MSK) for m in moments]
    assert all(9 <= t.hour < 21 and t.weekday() < 5 for t in local)
    for deal in plan.deals:
        times = [deal.created] + [m for m, _, _ in deal.moves]
        assert times == sorted(times)


def test_some_deals_change_pipeline(plan: seed.Plan) -> None:
    switched = [d for d in plan.deals if any(f != d.funnel for _, f, _ in d.moves)]
    assert switched and all(d.funnel == 0 and d.moves[0][1:] == (1, "NEW") for d in switched)


def test_reused_clients_come_mostly_in_repeat_sales(plan: seed.Plan) -> None:
    def reuse_share(funnel: int) -> float:
        direct = [d for d in plan.deals if d.funnel == funnel and d.lead is None]
        return sum(d.reuse is not None for d in direct) / len(direct)

    assert reuse_share(1) > 0.8 > 0.5 > reuse_share(0)
