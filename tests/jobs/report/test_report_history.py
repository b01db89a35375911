"""History the portal no longer lists still counts: an older portal deletes a deal's won row when the deal
is reopened; the mirror keeps it, so the reopened deal has still passed every stage and entered WON.
"""

from __future__ import annotations

from typing import Any

from jobs import report
from tests.jobs.report.scenario import Scenario, moment


def test_reopened_deal_keeps_its_won_row(mirror_engine: Any) -> None:
    s = Scenario(mirror_engine).start(history="legacy")
    try:
        s.at(moment(0))
        deal = int(s.call("crm.deal.add", {"fields": {"TITLE": "Reopened", "STAGE_ID": "NEW"}}))
        for day, stage in ((1, "PREPARATION"), (2, "WON")):
            s.at(moment(day))
            s.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": stage}})
        s.at(moment(2, 30))
        s.sync()
        s.at(moment(3))
        s.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "PREPARATION"}})  # reopened
        listed = s.call("crm.stagehistory.list", {"entityTypeId": 2, "filter": {"OWNER_ID": deal}})["items"]
        assert "WON" not in [row["STAGE_ID"] for row in listed]  # the portal dropped it
        s.at(moment(4))
        s.sync()
    finally:
        s.stop()
    conversion = report.funnel(mirror_engine, now=s.now).total
    assert conversion.counts()["FINAL_INVOICE"] == 1 and conversion.counts()["WON"] == 0  # open again, not won
    assert (conversion.open, conversion.won) == (1, 0)
    entered = report.funnel(mirror_engine, mode="entered", now=s.now).total
    assert entered.counts()["WON"] == 1 and entered.counts()["PREPAYMENT_INVOICE"] == 0
    assert entered.stage("WON").stays == 1 and entered.stage("WON").median_seconds == 86400.0
