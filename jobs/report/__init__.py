"""Funnel reports from the mirror: figures per stage computed in SQL, rendered for people and for tools.

    report = funnel(engine, pipeline="sales", mode="conversion", date_from="2026-01-01", by="assigned")
    render_table(report, console); render_csv(report); report.to_json(); render_html(report)
    cards(engine, stage="PROPOSAL")  # the drill-down of one stage

The semantics are the README's ("Reports"); ``model`` holds the stable data shapes.
"""

from __future__ import annotations

from jobs.report.build import cards, funnel
from jobs.report.model import Card, CardList, Channel, Funnel, FunnelReport, Period, Pipeline, Slice, Stage, StageFigures, Weakest
from jobs.report.render_csv import render_cards_csv, render_csv
from jobs.report.render_html import render_html
from jobs.report.render_table import render_cards_table, render_table
from jobs.report.scope import ReportError

__all__ = [
    "Card", "CardList", "Channel", "Funnel", "FunnelReport", "Period", "Pipeline", "ReportError", "Slice", "Stage",
    "StageFigures", "Weakest", "cards", "funnel", "render_cards_csv", "render_cards_table", "render_csv",
    "render_html", "render_table",
]
