"""The seeded-portal generator: a deterministic plan with a realistic funnel, played through the methods."""

from __future__ import annotations

import collections
import logging
from datetime import datetime, timedelta, timezone
from typing import Any
import pytest

from connector.emulator import pipelines, seed
from connector.emulator.methods import users
from connector.emulator.registry import invoke
from connector.emulator.seed import DEAL_PATH, make_plan
from connector.emulator.state import Portal

END = datetime(2026, 11, 26, tzinfo=timezone(timedelta(hours=3))).timestamp()
MSK = timezone(timedelta(hours=3))


@pytest.fixture(scope="module")
def plan() -> seed.SeedPlan:
    return make_plan(3000, 11, END)


def reached(plan: seed.SeedPlan, funnel: int) -> collections.Counter[str]:
    """How many deals of a pipeline ever entered each stage (the funnel)."""
    counts: collections.Counter[str] = collections.Counter()
    for deal in plan.deals:
        stages = [("NEW", deal.pipeline)] + [(stage, f) for _, f, stage in deal.moves]
        for stage in {s for s, f in stages if f == funnel}:
            counts[stage] += 1
    return counts


def test_plan_is_deterministic() -> None:
    assert make_plan(400, 5, END) == make_plan(400, 5, END)
    assert make_plan(400, 5, END) != make_plan(400, 6, END)


def test_plan_sizes(plan: seed.SeedPlan) -> None:
    assert len(plan.deals) == 3000
    assert len(plan.leads) == 4500
    assert len(plan.managers) == 8
    converted = [lead for lead in plan.leads if lead.deal is not None]
    assert converted and all(plan.deals[lead.deal].lead == lead.index for lead in converted)
    assert {d.pipeline for d in plan.deals} == {0, 1, 2}


def test_default_funnel_falls_and_has_one_weakest_stage(plan: seed.SeedPlan) -> None:
    counts = reached(plan, 0)
    path = [counts[stage] for stage in DEAL_PATH + ("WON",)]
    assert all(a > b for a, b in zip(path, path[1:])), path
    ratios = [b / a for a, b in zip(path, path[1:])]
    weakest = min(range(len(ratios)), key=ratios.__getitem__)
    assert DEAL_PATH[weakest] == "PREPAYMENT_INVOICE"
    assert ratios[weakest] < sorted(ratios)[1] - 0.15  # clearly the weakest, not a tie
    assert counts["LOSE"] > 0 and counts["APOLOGY"] > 0 and counts["WON"] > 0


def test_deals_move_forward_with_skips_and_end_in_one_final_stage(plan: seed.SeedPlan) -> None:
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


def test_leads_are_converted_junked_or_still_open(plan: seed.SeedPlan) -> None:
    finals = collections.Counter(lead.moves[-1][1] if lead.moves else "NEW" for lead in plan.leads)
    assert finals["CONVERTED"] > 0 and finals["JUNK"] > 0
    assert set(finals) <= {"NEW", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK"}
    # a lead still in progress is a recent one
    open_leads = [lead for lead in plan.leads if not lead.moves or lead.moves[-1][1] not in ("CONVERTED", "JUNK")]
    assert all(lead.created > END - 60 * 86400 for lead in open_leads)


def test_moments_cover_the_past_year_in_working_hours(plan: seed.SeedPlan) -> None:
    created = [d.created for d in plan.deals] + [lead.created for lead in plan.leads]
    assert min(created) < END - 330 * 86400 and max(created) < END
    moments = created + [m for d in plan.deals for m, _, _ in d.moves] + [m for lead in plan.leads for m, _ in lead.moves]
    assert all(plan.start <= m < END for m in moments)
    local = [datetime.fromtimestamp(m, MSK) for m in moments]
    assert all(9 <= t.hour < 21 and t.weekday() < 5 for t in local)
    for deal in plan.deals:
        times = [deal.created] + [m for m, _, _ in deal.moves]
        assert times == sorted(times)


def test_some_deals_change_pipeline(plan: seed.SeedPlan) -> None:
    switched = [d for d in plan.deals if any(f != d.pipeline for _, f, _ in d.moves)]
    assert switched and all(d.pipeline == 0 and d.moves[0][1:] == (1, "NEW") for d in switched)


def test_reused_clients_come_mostly_in_repeat_sales(plan: seed.SeedPlan) -> None:
    def reuse_share(funnel: int) -> float:
        direct = [d for d in plan.deals if d.pipeline == funnel and d.lead is None]
        return sum(d.reuse is not None for d in direct) / len(direct)

    assert reuse_share(1) > 0.8 > 0.5 > reuse_share(0)


# ---------------------------------------------------------------------------- played through the methods

FIXED_NOW = datetime(2026, 11, 26, 15, 30, tzinfo=MSK).timestamp()


def seeded(deals: int, seed_value: int) -> Portal:
    """A portal with defaults and users, seeded at a fixed 'now' (the portal keeps that clock)."""
    portal = Portal("+03:00", clock=lambda: FIXED_NOW)
    pipelines.install_defaults(portal)
    users.install_defaults(portal)
    seed.populate(portal, deals=deals, seed=seed_value)
    return portal


def state_of(portal: Portal) -> dict[str, Any]:
    return {name: getattr(portal, name) for name in
            ("records", "history", "statuses", "categories", "users", "userfields", "seq")}


@pytest.fixture(scope="module")
def small() -> Portal:
    return seeded(400, 3)


def test_populate_is_deterministic(small: Portal) -> None:
    assert state_of(seeded(400, 3)) == state_of(small)
    assert state_of(seeded(400, 4))["records"] != state_of(small)["records"]


def test_populate_restores_the_clock(small: Portal) -> None:
    assert small.clock() == FIXED_NOW


def test_seeded_portal_has_people_clients_and_pipelines(small: Portal) -> None:
    managers = [u for u in small.users.values() if u["WORK_POSITION"] == "Менеджер по продажам"]
    assert len(managers) == 8 and all(u["NAME"] and u["LAST_NAME"] for u in managers)
    assert len(small.records["deal"]) == 400 and len(small.records["lead"]) == 600
    assert [c["name"] for c in sorted(small.categories.values(), key=lambda c: c["id"])] == \
        ["Общая", "Повторные продажи", "Тендеры"]
    for entity in ("contact", "company"):
        records = small.records[entity].values()
        assert records and all(r["PHONE"] and r["EMAIL"] for r in records)
        assert all(r["PHONE"][0]["VALUE"].startswith("+79") for r in records)
    assignees = {d["ASSIGNED_BY_ID"] for d in small.records["deal"].values()}
    assert assignees <= {u["ID"] for u in managers} and len(assignees) == 8


def test_seeded_dates_cover_the_past_year(small: Portal) -> None:
    created = sorted(datetime.fromisoformat(d["DATE_CREATE"]) for d in small.records["deal"].values())
    today = datetime.fromtimestamp(FIXED_NOW, MSK).replace(hour=0, minute=0, second=0)
    assert created[0] < today - timedelta(days=300)
    assert created[-1] < today
    assert all(d["DATE_CREATE"].endswith("+03:00") for d in small.records["deal"].values())
    # deal IDs follow creation time, as on a real portal
    by_id = [small.records["deal"][i]["DATE_CREATE"] for i in sorted(small.records["deal"])]
    assert [datetime.fromisoformat(t) for t in by_id] == created


def test_leads_convert_into_deals_or_turn_junk(small: Portal) -> None:
    leads = small.records["lead"]
    statuses = collections.Counter(lead["STATUS_ID"] for lead in leads.values())
    assert statuses["CONVERTED"] > 0 and statuses["JUNK"] > 0
    linked = [d for d in small.records["deal"].values() if d["LEAD_ID"]]
    assert linked and all(leads[int(d["LEAD_ID"])]["STATUS_ID"] == "CONVERTED" for d in linked)
    assert all(d["CATEGORY_ID"] in ("0", "1") for d in linked)  # a converted lead starts in the main funnel


def test_deals_won_lost_and_user_fields(small: Portal) -> None:
    deals = list(small.records["deal"].values())
    stages = collections.Counter(d["STAGE_SEMANTIC_ID"] for d in deals)
    assert stages["S"] > 0 and stages["F"] > 0 and stages["P"] > 0
    codes = {field["FIELD_NAME"] for field in small.userfields["deal"].values()}
    assert {"UF_CRM_CHANNEL", "UF_CRM_CONTRACT"} <= codes
    assert all(d["UF_CRM_CHANNEL"] for d in deals)
    won = [d for d in deals if d["STAGE_SEMANTIC_ID"] == "S"]
    assert all(d["UF_CRM_CONTRACT"] and d["UF_CRM_CONTRACT"].startswith("Д-") for d in won)


def test_history_matches_current_stages(small: Portal) -> None:
    last: dict[int, dict[str, Any]] = {}
    for row in small.history[2]:
        last[row["OWNER_ID"]] = row
    for deal_id, deal in small.records["deal"].items():
        assert (last[deal_id]["STAGE_ID"], str(last[deal_id]["CATEGORY_ID"])) == (deal["STAGE_ID"], deal["CATEGORY_ID"])
    last_lead: dict[int, str] = {}
    for row in small.history[1]:
        last_lead[row["OWNER_ID"]] = row["STATUS_ID"]
    assert all(last_lead[i] == lead["STATUS_ID"] for i, lead in small.records["lead"].items())
    for rows in small.history.values():
        times = [datetime.fromisoformat(r["CREATED_TIME"]) for r in rows]
        assert times == sorted(times)  # history IDs follow time
    created = {r["OWNER_ID"]: r["CREATED_TIME"] for r in small.history[2] if r["TYPE_ID"] == 1}
    assert all(created[i] == d["DATE_CREATE"] for i, d in small.records["deal"].items())


def test_history_funnel_of_the_main_pipeline_falls(small: Portal) -> None:
    entered: dict[str, set[int]] = collections.defaultdict(set)
    for row in small.history[2]:
        if row["CATEGORY_ID"] == 0:
            entered[row["STAGE_ID"]].add(row["OWNER_ID"])
    counts = [len(entered[stage]) for stage in DEAL_PATH + ("WON",)]
    assert all(a > b for a, b in zip(counts, counts[1:])), counts


def test_seeded_portal_answers_through_the_api(small: Portal) -> None:
    assert invoke(small, "crm.deal.list", {"filter": {"CATEGORY_ID": 2}, "select": ["ID"]})
    history = invoke(small, "crm.stagehistory.list", {"entityTypeId": 2, "filter": {"OWNER_ID": 1}})
    assert history["items"] and history["items"][0]["TYPE_ID"] == 1


def test_big_seeds_log_progress(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(seed, "PROGRESS_MIN_DEALS", 10)
    with caplog.at_level(logging.INFO, logger="connector.emulator.seed"):
        seeded(20, 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "connector.emulator.seed"]
    assert len(lines) == 10 and lines[-1].startswith("seed: 100%")
