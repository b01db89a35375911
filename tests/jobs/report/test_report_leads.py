"""The lead funnel and lead quality per source channel, from the hand-built lead paths (``scenario.LEAD_PATHS``).

Lead statuses: NEW, IN_PROCESS, PROCESSED, CONVERTED (success) | JUNK (failure).
"""

from __future__ import annotations

import pytest

from jobs import report
from tests.jobs.report.scenario import Scenario

DAY = 86400.0
ORDER = ["NEW", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK"]


def leads(scenario: Scenario, **options: object) -> report.FunnelReport:
    return report.funnel(scenario.engine, entity="lead", now=scenario.now, **options)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("conversion", [7, 5, 3, 3, 2]), ("classic", [1, 1, 0, 3, 2]), ("entered", [6, 3, 2, 3, 2])],
)
def test_lead_funnel_modes(scenario: Scenario, mode: str, expected: list[int]) -> None:
    f = leads(scenario, mode=mode).total
    assert f.counts() == dict(zip(ORDER, expected))
    assert (f.cards, f.won, f.lost, f.open, f.win_rate) == (7, 3, 2, 2, 0.6)


def test_lead_figures(scenario: Scenario) -> None:
    r = leads(scenario)
    f = r.total
    assert r.pipeline.id == 0 and r.entity == "lead"
    assert (f.weakest.stage.id, f.weakest.next.id) == ("IN_PROCESS", "PROCESSED")
    assert f.weakest.drop_rate == pytest.approx(0.4)
    durations = {s.stage.id: (s.stays, s.median_seconds, s.p90_seconds) for s in f.stages}
    assert durations["NEW"] == (5, 1 * DAY, pytest.approx(1.6 * DAY))
    assert durations["IN_PROCESS"] == (2, 1.5 * DAY, pytest.approx(1.9 * DAY))
    assert durations["PROCESSED"] == (2, 1 * DAY, 1 * DAY)
    assert f.cycle_median_seconds == 1 * DAY  # 3, 1 and 1 days to conversion


def test_lead_quality_per_channel(scenario: Scenario) -> None:
    channels = leads(scenario).total.channels
    assert [(c.source_id, c.name, c.leads, c.qualified, c.converted, c.junk) for c in channels] == [
        ("WEB", "Веб-сайт", 3, 2, 1, 1),  # L1 converted, L3 left NEW and is open, L2 junk
        ("CALL", "Звонок", 3, 1, 1, 1),  # L6 converted (created in PROCESSED), L4 never left NEW, L5 junk
        (None, "(no source)", 1, 1, 1, 0),  # L7 converted straight from NEW
    ]
    web = channels[0]
    assert (web.share(web.qualified), web.share(web.converted), web.share(web.junk)) == pytest.approx((2 / 3, 1 / 3, 1 / 3))
    data = channels[0].to_data()
    assert data["qualified_share"] == pytest.approx(0.666667) and data["junk_share"] == pytest.approx(0.333333)


def test_lead_cards_link_to_lead_pages(scenario: Scenario) -> None:
    cards = report.cards(scenario.engine, entity="lead", stage="CONVERTED", now=scenario.now)
    assert sorted(c.id for c in cards) == sorted(scenario.leads[n] for n in ("L1", "L6", "L7"))
    assert all(c.url == f"{scenario.server.base_url}/crm/lead/details/{c.id}/" for c in cards)
