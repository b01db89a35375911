"""Deal funnels from a mirror synced from hand-built histories: every figure of the three modes, worked out by hand.

The paths are in ``scenario.DEAL_PATHS``. Pipeline 0's stages: NEW, PREPARATION, PREPAYMENT_INVOICE,
EXECUTING, FINAL_INVOICE, WON | LOSE, APOLOGY | removed: UC_PILOT (deleted on the portal, its row kept
in the mirror), UC_TRIAL (created and deleted between two syncs: no row at all). D8 is deleted.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from jobs import report
from jobs.errors import UserError
from tests.jobs.report.scenario import Scenario

DAY = 86400.0
ORDER = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON", "LOSE", "APOLOGY",
         "UC_PILOT", "UC_TRIAL"]


def counts(*values: int) -> dict[str, int]:
    """Counts in ``ORDER``."""
    return dict(zip(ORDER, values))


def passed(found: dict[str, int]) -> dict[str, int]:
    """Without the removed stages none of the cards passed: a filtered report does not list them."""
    return {k: v for k, v in found.items() if v or not k.startswith("UC_")}


def funnel(scenario: Scenario, **options: object) -> report.FunnelReport:
    return report.funnel(scenario.engine, now=scenario.now, **options)


# ---------------------------------------------------------------- the three modes over all time


def test_conversion_mode(scenario: Scenario) -> None:
    r = funnel(scenario)
    f = r.total
    assert [s.stage.id for s in f.stages] == ORDER
    assert f.counts() == counts(9, 8, 6, 3, 2, 2, 1, 0, 1, 1)
    assert [s.stage.semantics for s in f.stages] == ["process"] * 5 + ["success", "failure", "failure", "removed", "removed"]
    assert f.stage("UC_PILOT").stage.name == "Пилот" and f.stage("UC_TRIAL").stage.name == "UC_TRIAL"
    assert (f.cards, f.won, f.lost, f.open, f.moved_out) == (9, 2, 1, 5, 1)
    assert f.win_rate == pytest.approx(2 / 3)
    assert f.cycle_median_seconds == 4 * DAY  # D1 took 7 days, D7 1 day
    shares = [s.share for s in f.stages]
    assert shares == pytest.approx([1, 8 / 9, 6 / 9, 3 / 9, 2 / 9, 2 / 9, 1 / 9, 0, 1 / 9, 1 / 9])
    assert [s.conversion for s in f.stages[:6]] == pytest.approx([None, 8 / 9, 6 / 8, 3 / 6, 2 / 3, 1.0])
    assert [s.drop_off for s in f.stages] == [None, 1, 2, 3, 1, 0, None, None, None, None]
    assert (f.weakest.stage.id, f.weakest.next.id, f.weakest.drop_off) == ("PREPAYMENT_INVOICE", "EXECUTING", 3)
    assert f.weakest.drop_rate == pytest.approx(0.5)
    rub = {"NEW": 3760, "PREPARATION": 3360, "PREPAYMENT_INVOICE": 2650, "EXECUTING": 2100, "FINAL_INVOICE": 1900,
           "WON": 1900, "LOSE": 500, "UC_PILOT": 50, "UC_TRIAL": 10}
    for stage_id, amount in rub.items():
        usd = {"USD": Decimal("300.00")} if stage_id in ("NEW", "PREPARATION", "PREPAYMENT_INVOICE") else {}
        assert f.stage(stage_id).amounts == {"RUB": Decimal(amount), **usd}, stage_id
    assert f.stage("APOLOGY").amounts == {}


def test_time_in_stage(scenario: Scenario) -> None:
    f = funnel(scenario).total
    durations = {s.stage.id: (s.stays, s.median_seconds, s.p90_seconds) for s in f.stages}
    assert durations == {
        "NEW": (8, 1 * DAY, pytest.approx(1.3 * DAY)),  # seven 1-day stays and D2's 2 days
        "PREPARATION": (3, 2 * DAY, 2 * DAY),  # D1, D3, D5 (D5's ends when it moves to pipeline 1)
        "PREPAYMENT_INVOICE": (3, 1 * DAY, pytest.approx(2.6 * DAY)),  # 1, 1, 3
        "EXECUTING": (1, 2 * DAY, 2 * DAY),
        "FINAL_INVOICE": (1, 1 * DAY, 1 * DAY),
        "WON": (0, None, None), "LOSE": (0, None, None),
        "APOLOGY": (1, 2 * DAY, 2 * DAY),  # D6 before it was reopened
        "UC_PILOT": (1, 1 * DAY, 1 * DAY), "UC_TRIAL": (1, 1 * DAY, 1 * DAY),
    }


def test_classic_mode(scenario: Scenario) -> None:
    f = funnel(scenario, mode="classic").total
    assert f.counts() == counts(1, 3, 1, 1, 0, 2, 1, 0, 1, 1)  # D5 counts where it left the pipeline from
    assert (f.cards, f.won, f.lost, f.open, f.moved_out) == (9, 2, 1, 5, 1)
    assert (f.weakest.stage.id, f.weakest.next.id) == ("EXECUTING", "FINAL_INVOICE")


def test_entered_mode(scenario: Scenario) -> None:
    f = funnel(scenario, mode="entered").total
    assert f.counts() == counts(8, 4, 4, 2, 1, 2, 1, 1, 1, 1)  # D4 never entered NEW; D6 entered APOLOGY
    assert (f.weakest.stage.id, f.weakest.next.id, f.weakest.drop_off) == ("NEW", "PREPARATION", 4)
    assert f.stage("NEW").amounts == {"RUB": Decimal(3560), "USD": Decimal(300)}


def test_moved_card_counts_in_its_new_pipeline_too(scenario: Scenario) -> None:
    for spec in (1, "1", "Повторные продажи"):
        f = funnel(scenario, pipeline=spec).total
        assert f.counts()["C1:NEW"] == 1 and f.counts()["C1:PREPARATION"] == 1
        assert (f.cards, f.open, f.moved_out) == (1, 1, 0)


def test_deleted_cards_only_on_request(scenario: Scenario) -> None:
    f = funnel(scenario, include_deleted=True).total
    assert f.counts() == counts(10, 9, 6, 3, 2, 2, 1, 0, 1, 1)  # D8 reached PREPARATION
    assert (f.cards, f.open) == (10, 6)


# ---------------------------------------------------------------- periods


def test_created_period(scenario: Scenario) -> None:
    f = funnel(scenario, date_from="2026-03-02", date_to="2026-03-03").total  # days 0 and 1: D1, D2, D3
    assert f.counts() == passed(counts(3, 3, 3, 1, 1, 1, 1, 0, 0, 0))
    assert (f.cards, f.won, f.lost, f.open) == (3, 1, 1, 1)
    later = funnel(scenario, date_from="2026-03-03T09:03:00+03:00").total  # from D3's creation on
    assert later.cards == 7


def test_active_period(scenario: Scenario) -> None:
    """In the funnel on 8-9 March (days 6 and 7), as it was at the end of the 9th.

    D2 was lost on day 5 and not touched since: out. D6 was lost but reopened on day 6: in. D7 and D10
    were created later: out. D5 moved to pipeline 1 on day 6: counted where it left from.
    """
    r = funnel(scenario, period="active", date_from="2026-03-08", date_to="2026-03-09")
    f = r.total
    assert f.counts() == passed(counts(6, 5, 4, 2, 1, 1, 0, 0, 1, 0))
    assert (f.cards, f.won, f.lost, f.open, f.moved_out) == (6, 1, 0, 4, 1)
    assert f.stage("NEW").stays == 5 and f.stage("PREPARATION").median_seconds == 2 * DAY
    assert f.cycle_median_seconds == 7 * DAY
    assert r.period.start.isoformat() == "2026-03-07T21:00:00+00:00" and r.period.end.isoformat() == "2026-03-09T21:00:00+00:00"


# ---------------------------------------------------------------- slices


def test_by_assigned(scenario: Scenario) -> None:
    r = funnel(scenario, by="assigned")
    assert r.total.counts() == counts(9, 8, 6, 3, 2, 2, 1, 0, 1, 1)
    by = {f.slice.label: f for f in r.slices}
    assert list(by) == ["Андрей Соколов", "Иван Петров", "Мария Кузнецова"]
    assert by["Мария Кузнецова"].counts() == counts(3, 3, 2, 1, 1, 1, 1, 0, 0, 0)
    assert by["Иван Петров"].counts() == counts(4, 4, 3, 2, 1, 1, 0, 0, 0, 1)
    assert by["Андрей Соколов"].counts() == counts(2, 1, 1, 0, 0, 0, 0, 0, 1, 0)
    assert [by[n].weakest.stage.id for n in by] == ["PREPAYMENT_INVOICE", "EXECUTING", "PREPAYMENT_INVOICE"]
    assert [by[n].win_rate for n in by] == [None, 1.0, 0.5]
    assert [f.slice.key for f in r.slices] == ["1", "3", "2"]
    maria = report.funnel(scenario.engine, assigned="Кузнецова", now=scenario.now).total
    assert maria.counts() == passed(by["Мария Кузнецова"].counts())
    assert report.funnel(scenario.engine, assigned=2, now=scenario.now).total.counts() == maria.counts()


def test_by_source(scenario: Scenario) -> None:
    r = funnel(scenario, by="source")
    by = {f.slice.key: f for f in r.slices}
    assert [(f.slice.key, f.slice.label) for f in r.slices] == [("CALL", "Звонок"), ("WEB", "Веб-сайт"), (None, "(no source)")]
    assert by["WEB"].counts() == counts(5, 5, 3, 1, 1, 1, 0, 0, 1, 1)
    assert by["CALL"].counts() == counts(3, 3, 3, 2, 1, 1, 1, 0, 0, 0)
    assert by[None].counts() == counts(1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert funnel(scenario, source="CALL").total.counts() == passed(by["CALL"].counts())


def test_by_month(scenario: Scenario) -> None:
    r = funnel(scenario, by="month")
    assert [f.slice.label for f in r.slices] == ["2026-03", "2026-04"]
    march, april = r.slices
    assert march.counts() == counts(8, 7, 5, 2, 1, 1, 1, 0, 1, 1)
    assert april.counts() == counts(1, 1, 1, 1, 1, 1, 0, 0, 0, 0)
    assert (march.cycle_median_seconds, april.cycle_median_seconds) == (7 * DAY, 1 * DAY)


# ---------------------------------------------------------------- drill-down


def test_cards_at_a_stage(scenario: Scenario) -> None:
    ids = scenario.deals
    cards = report.cards(scenario.engine, stage="PREPAYMENT_INVOICE", now=scenario.now)
    assert cards.total == 6 == len(cards)
    assert [c.id for c in cards] == [ids["D9"], ids["D3"], ids["D1"], ids["D2"], ids["D7"], ids["D4"]]
    d9, d3, d1, d2, d7, d4 = cards
    assert d1.days_in_stage == pytest.approx(1.0) and d2.days_in_stage == pytest.approx(3.0)
    assert d9.days_in_stage == pytest.approx(33 - 9 / 1440)  # still there: from day 7 09:09 to the portal's now, day 40 09:00
    assert d7.entered_at is None and d7.days_in_stage is None  # skipped: counted without entering
    assert d1.entered_at.isoformat() == "2026-03-05T06:01:00+00:00"
    assert (d1.title, d1.amount, d1.currency, d1.manager) == ("Сделка D1", Decimal("1000.00"), "RUB", "Мария Кузнецова")
    assert d3.currency == "USD"
    assert d1.url == f"{scenario.server.base_url}/crm/deal/details/{ids['D1']}/"
    classic = report.cards(scenario.engine, stage="PREPARATION", mode="classic", now=scenario.now)
    assert sorted(c.id for c in classic) == sorted([ids["D3"], ids["D5"], ids["D10"]])
    removed = report.cards(scenario.engine, stage="UC_TRIAL", now=scenario.now)
    assert [c.id for c in removed] == [ids["D10"]] and removed.stage.semantics == "removed"
    limited = report.cards(scenario.engine, stage="NEW", limit=2, now=scenario.now)
    assert (len(limited), limited.total) == (2, 9)


def test_funnel_carries_the_drill_down_lists(scenario: Scenario) -> None:
    r = funnel(scenario, cards_per_stage=3)
    for figures in r.stages:
        assert r.cards[figures.stage.id].total == figures.count
        assert len(r.cards[figures.stage.id]) == min(3, figures.count)


# ---------------------------------------------------------------- what is not there


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pipeline": "nope"}, "no pipeline 'nope' in the mirror; pipelines: 0 \"Общая\", 1 \"Повторные продажи\""),
        ({"pipeline": 7}, "no pipeline '7'"),
        ({"assigned": "Nobody"}, "no manager 'Nobody' in the mirror; users: 1 Андрей Соколов, 2 Мария Кузнецова, 3 Иван Петров"),
        ({"source": "FAX"}, "no source 'FAX' in the mirror; sources: CALL (Звонок)"),
        ({"mode": "funnel"}, "unknown mode 'funnel': use one of conversion, classic, entered"),
        ({"date_from": "yesterday"}, "--from 'yesterday' is not a date"),
        ({"entity": "lead", "pipeline": "1"}, "--pipeline is for deals"),
    ],
    ids=["pipeline-name", "pipeline-id", "manager", "source", "mode", "date", "lead-pipeline"],
)
def test_unknown_names_what_exists(scenario: Scenario, options: dict[str, object], message: str) -> None:
    with pytest.raises(UserError) as caught:
        report.funnel(scenario.engine, **options)
    assert message in str(caught.value)
    assert caught.value.exit_code == 1


def test_unknown_stage(scenario: Scenario) -> None:
    with pytest.raises(UserError, match=r"no stage 'WIN' in this funnel; stages: NEW \(Новая\), .*UC_PILOT \(removed\)"):
        report.cards(scenario.engine, stage="WIN")
