"""Report periods: dates in the portal's timezone, offsets taken as written, ``--to`` including its day."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from jobs.errors import UserError
from jobs.report.period import month_starts, parse_period, zone

MSK = timezone(timedelta(hours=3))


@pytest.mark.parametrize(
    ("start", "end", "tz", "expected"),
    [
        ("2026-03-01", "2026-03-31", "+03:00", ("2026-02-28T21:00:00+00:00", "2026-03-31T21:00:00+00:00")),
        ("2026-03-01T09:30", None, "+03:00", ("2026-03-01T06:30:00+00:00", None)),
        ("2026-03-01T09:30+05:00", "2026-03-02T00:00:00Z", "+03:00", ("2026-03-01T04:30:00+00:00", "2026-03-02T00:00:00+00:00")),
        (None, "2026-03-31", "Europe/Berlin", (None, "2026-03-31T22:00:00+00:00")),  # summer time from 29 March
        (date(2026, 1, 1), datetime(2026, 1, 2, 12, tzinfo=MSK), None, ("2026-01-01T00:00:00+00:00", "2026-01-02T09:00:00+00:00")),
        ("2026-03-01", None, "UTC+3", ("2026-02-28T21:00:00+00:00", None)),
    ],
    ids=["dates", "local-time", "offsets", "zone-name", "python-values", "utc-plus"],
)
def test_bounds(start: object, end: object, tz: str | None, expected: tuple[str | None, str | None]) -> None:
    period = parse_period(start, end, "created", tz)
    assert (period.start and period.start.isoformat(), period.end and period.end.isoformat()) == expected


@pytest.mark.parametrize(
    ("start", "end", "kind", "message"),
    [
        ("1 March", None, "created", "--from '1 March' is not a date"),
        (None, "2026-02-30", "created", "--to '2026-02-30' is not a date"),
        ("2026-03-02", "2026-03-01", "created", "is not after --from"),
        (None, None, "closed", "unknown period 'closed': use one of created, active"),
    ],
)
def test_refused(start: str | None, end: str | None, kind: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_period(start, end, kind, "+03:00")


def test_zone_and_months() -> None:
    assert zone(None) == timezone.utc and zone("-04:30") == timezone(-timedelta(hours=4, minutes=30))
    with pytest.raises(UserError, match="neither an offset"):
        zone("Mars/Olympus")
    months = month_starts(datetime(2025, 12, 31, 22, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc), "+03:00")
    assert [(label, start.isoformat()) for label, start in months] == [
        ("2026-01", "2025-12-31T21:00:00+00:00"), ("2026-02", "2026-01-31T21:00:00+00:00")]
