"""The renderers over the scenario's report: stable CSV headers, the documented JSON shape, the terminal
table, and an HTML page that is one self-contained file (nothing it would fetch) with escaped text.
"""

from __future__ import annotations

import csv
import io
import json
import re

from rich.console import Console

from jobs import report
from jobs.report.model import FAILURE, Funnel, FunnelReport, Pipeline, Period, Stage, StageFigures
from jobs.report.render_csv import CARD_HEADERS, FUNNEL_HEADERS
from tests.jobs.report.scenario import Scenario


def by_assigned(scenario: Scenario) -> FunnelReport:
    return report.funnel(scenario.engine, by="assigned", cards_per_stage=5, now=scenario.now)


def test_csv_one_row_per_stage_and_slice(scenario: Scenario) -> None:
    r = by_assigned(scenario)
    rows = list(csv.DictReader(io.StringIO(report.render_csv(r))))
    assert tuple(rows[0]) == FUNNEL_HEADERS
    assert len(rows) == 10 * 4  # ten stages: the total and three managers
    total = {row["stage_id"]: row for row in rows if row["slice_label"] == "total"}
    ppi = total["PREPAYMENT_INVOICE"]
    assert (ppi["count"], ppi["share"], ppi["conversion"], ppi["drop_off"], ppi["weakest"]) == ("6", "0.666667", "0.75", "2", "yes")
    assert ppi["amounts"] == "RUB 2650.00; USD 300.00" and ppi["median_seconds"] == "86400.0"
    assert [row["stage_id"] for row in rows if row["weakest"] == "yes"] == ["PREPAYMENT_INVOICE", "PREPAYMENT_INVOICE",
                                                                             "EXECUTING", "PREPAYMENT_INVOICE"]
    maria = [row for row in rows if row["slice_key"] == "2"]
    assert {row["slice_by"] for row in maria} == {"assigned"} and maria[0]["slice_label"] == "Мария Кузнецова"
    cards = list(csv.DictReader(io.StringIO(report.render_cards_csv(r.cards["NEW"]))))
    assert tuple(cards[0]) == CARD_HEADERS and len(cards) == 5


def test_json_shape(scenario: Scenario) -> None:
    data = json.loads(by_assigned(scenario).to_json())
    assert data["report"] == "funnel" and data["entity"] == "deal" and data["by"] == "assigned"
    assert data["pipeline"] == {"id": 0, "name": "Общая", "key": None}
    assert data["period"] == {"kind": "created", "from": None, "to": None, "timezone": "+03:00"}
    stage = data["stages"][2]
    assert list(stage) == ["id", "name", "semantics", "sort", "color", "count", "share", "conversion", "drop_off",
                           "drop_rate", "amounts", "stays", "median_seconds", "p90_seconds"]
    assert (stage["id"], stage["count"], stage["amounts"]) == ("PREPAYMENT_INVOICE", 6, {"RUB": "2650.00", "USD": "300.00"})
    assert (data["won"], data["lost"], data["open"], data["moved_out"], data["cards"]) == (2, 1, 5, 1, 9)
    assert data["win_rate"] == 0.666667 and data["cycle_median_seconds"] == 345600.0
    assert data["weakest_stage"] == {"id": "PREPAYMENT_INVOICE", "name": "Счёт на предоплату", "next_id": "EXECUTING",
                                     "next_name": "В работе", "drop_off": 3, "drop_rate": 0.5}
    assert [s["slice"] for s in data["slices"]] == [
        {"by": "assigned", "key": "1", "label": "Андрей Соколов"}, {"by": "assigned", "key": "3", "label": "Иван Петров"},
        {"by": "assigned", "key": "2", "label": "Мария Кузнецова"}]
    assert [s["stages"][0]["count"] for s in data["slices"]] == [2, 4, 3]
    assert data["stage_cards"]["NEW"]["total"] == 9 and len(data["stage_cards"]["NEW"]["cards"]) == 5
    lead = json.loads(report.funnel(scenario.engine, entity="lead").to_json())
    assert lead["channels"][0] == {"source_id": "WEB", "name": "Веб-сайт", "leads": 3, "qualified": 2,
                                   "qualified_share": 0.666667, "converted": 1, "converted_share": 0.333333,
                                   "junk": 1, "junk_share": 0.333333}


def test_table_names_the_weakest_stage(scenario: Scenario) -> None:
    out = io.StringIO()
    report.render_table(by_assigned(scenario), Console(file=out, width=160, color_system=None))
    text = out.getvalue()
    assert "Deal funnel: Общая" in text and "mode conversion" in text and "by manager" in text
    assert 'Weakest stage: PREPAYMENT_INVOICE "Счёт на предоплату" -> EXECUTING "В работе": 50.0% lost (3 cards)' in text
    assert "9 cards: 2 won, 1 lost, 5 open, 1 moved to another pipeline; win rate 66.7%" in text
    assert "UC_TRIAL UC_TRIAL (removed)" in text and "████████████████████████" in text
    assert "Мария Кузнецова" in text  # the slice table


def test_html_is_one_file_that_fetches_nothing(scenario: Scenario) -> None:
    page = report.render_html(by_assigned(scenario))
    assert page.startswith("<!doctype html>") and "<svg" in page and "</html>" in page
    assert not re.search(r"<(?:link|script|img|iframe|source|video|audio|object|embed)\b[^>]*\b(?:src|href)=\"(?!data:)",
                         page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page and "@font-face" not in page
    # the only addresses are the links to the cards on the portal, followed only when clicked
    hrefs = re.findall(r'<a href="([^"]+)"', page)
    assert hrefs and all(re.fullmatch(rf"{re.escape(scenario.server.base_url)}/crm/deal/details/\d+/", h) for h in hrefs)


def test_html_escapes_portal_text() -> None:
    stage = Stage("UC_X", '<script>alert("x")</script>', FAILURE, 0, 10, "red;background:url(http://x)")
    figures = StageFigures(stage, 1, 1.0, None, None, None)
    hostile = FunnelReport("deal", Pipeline(3, "<b>Sales</b> & co", "k"), "conversion", Period(),
                           Funnel([figures], 1, 0, 1, 0, 0, 0.0, None, None))
    page = report.render_html(hostile)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;Sales&lt;/b&gt; &amp; co" in page and "url(http" not in page  # a bad colour is not used
