"""The funnel and drill-down lists as CSV: one row per stage (per slice with ``--by``), stable headers.

The headers are ``FUNNEL_HEADERS`` and ``CARD_HEADERS``; they only ever grow at the end.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from jobs.report import text
from jobs.report.model import CardList, FunnelReport

FUNNEL_HEADERS = (
    "slice_by", "slice_key", "slice_label", "stage_id", "stage_name", "semantics", "count", "share",
    "conversion", "drop_off", "drop_rate", "amounts", "stays", "median_seconds", "p90_seconds", "weakest",
)
CARD_HEADERS = ("id", "title", "amount", "currency", "manager_id", "manager", "entered_at", "days_in_stage", "url")


def _number(value: float | None, digits: int = 6) -> str:
    return "" if value is None else str(round(value, digits))


def _write(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()


def render_csv(report: FunnelReport) -> str:
    """The report as CSV text: the total funnel's stages first (empty slice columns), then each slice's."""
    rows = []
    for funnel in report.funnels():
        s = funnel.slice
        weakest = funnel.weakest.stage.id if funnel.weakest else None
        for f in funnel.stages:
            rows.append((
                s.by if s else "", "" if s is None or s.key is None else s.key, s.label if s else "total",
                f.stage.id, f.stage.name, f.stage.semantics, f.count, _number(f.share), _number(f.conversion),
                "" if f.drop_off is None else f.drop_off, _number(f.drop_rate), text.money_plain(f.amounts), f.stays,
                _number(f.median_seconds, 3), _number(f.p90_seconds, 3), "yes" if f.stage.id == weakest else "",
            ))
    return _write(FUNNEL_HEADERS, rows)


def render_cards_csv(cards: CardList) -> str:
    """A drill-down list as CSV text, one row per card."""
    return _write(CARD_HEADERS, (
        (c.id, c.title, "" if c.amount is None else f"{c.amount:.2f}", c.currency,
         "" if c.manager_id is None else c.manager_id, c.manager, c.entered_at.isoformat() if c.entered_at else "",
         "" if c.days_in_stage is None else f"{c.days_in_stage:.2f}", c.url or "")
        for c in cards
    ))
