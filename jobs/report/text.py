"""How report figures read for people: percentages, money, durations, the period and the title.

Shared by the table, CSV and HTML renderers so that every output writes a figure the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from jobs.report.model import FunnelReport, Period

DASH = "—"
ENTITY_TITLES = {"deal": "Deal funnel", "lead": "Lead funnel"}
SLICE_TITLES = {"assigned": "manager", "source": "source", "month": "creation month"}


def percent(value: float | None) -> str:
    """``0.4567`` -> ``45.7%``; a dash for no value."""
    return DASH if value is None else f"{value * 100:.1f}%"


def money(amounts: Mapping[str, Decimal]) -> str:
    """``{"RUB": 1234500}`` -> ``1 234 500.00 RUB``; several currencies joined by ``; ``."""
    if not amounts:
        return DASH
    return "; ".join(f"{f'{Decimal(value):,.2f}'.replace(',', ' ')} {currency}".strip()
                     for currency, value in amounts.items())


def money_plain(amounts: Mapping[str, Decimal]) -> str:
    """Machine-readable amounts for CSV: ``RUB 1234500.00; USD 10.00`` (empty when none)."""
    return "; ".join(f"{currency} {Decimal(value):.2f}".strip() for currency, value in amounts.items())


def duration(seconds: float | None) -> str:
    """A time span at a readable scale: ``45 s``, ``12 min``, ``5.5 h``, ``3.2 d``."""
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def moment(value: datetime | None, tz_name: str | None = None) -> str:
    """A UTC moment shown in the portal's timezone, to the minute."""
    if value is None:
        return DASH
    from jobs.report.period import zone

    return value.astimezone(zone(tz_name)).strftime("%Y-%m-%d %H:%M")


def period(p: Period) -> str:
    """``created 2026-01-01 00:00 .. 2026-04-01 00:00 (+03:00)``, or ``all cards`` without bounds."""
    if not p.bounded:
        return f"{p.kind}: all time"
    start = moment(p.start, p.timezone) if p.start else "…"
    end = moment(p.end, p.timezone) if p.end else "…"
    return f"{p.kind} {start} .. {end} ({p.timezone})"


def title(report: FunnelReport) -> str:
    """``Deal funnel: Продажи`` / ``Lead funnel``."""
    name = ENTITY_TITLES.get(report.entity, "Funnel")
    return f"{name}: {report.pipeline.name}" if report.entity == "deal" else name


def subtitle(report: FunnelReport) -> str:
    """What the report covers in one line: pipeline, mode, period, filters."""
    parts = []
    if report.entity == "deal":
        key = f", key {report.pipeline.key}" if report.pipeline.key else ""
        parts.append(f"pipeline {report.pipeline.id}{key}")
    parts.append(f"mode {report.mode}")
    parts.append(period(report.period))
    for name, value in report.filters.items():
        if value not in (None, False, [], ""):
            parts.append(f"{name.replace('_', ' ')} {value}" if value is not True else name.replace("_", " "))
    if report.by:
        parts.append(f"by {SLICE_TITLES.get(report.by, report.by)}")
    return " · ".join(parts)


def totals(funnel_cards: int, won: int, lost: int, open_: int, moved_out: int) -> str:
    """``120 cards: 30 won, 40 lost, 45 open, 5 moved out``."""
    text = f"{funnel_cards} cards: {won} won, {lost} lost, {open_} open"
    return text + (f", {moved_out} moved to another pipeline" if moved_out else "")
