"""Report periods: ``--from``/``--to`` read in the portal's timezone, and creation months as UTC bounds.

A date alone means the portal-local day (``--to`` includes that whole day); a date and time with an
offset (``2026-03-01T09:00+03:00``, ``...Z``) is taken as written.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobs.errors import UserError
from jobs.report.model import PERIODS, Period

_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2}):?(\d{2})?$", re.IGNORECASE)


class PeriodError(UserError):
    """A ``--from``/``--to``/``--period`` the report cannot read."""


def zone(name: str | None) -> tzinfo:
    """The portal's timezone from ``b24sync_portal.timezone``: ``+03:00``, ``UTC+3``, ``Europe/Moscow``; UTC when empty."""
    text = (name or "").strip()
    if not text or text.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(f"the mirror's portal timezone {text!r} is neither an offset like +03:00 nor a zone name")


def _moment(value: str | date | datetime, tz: tzinfo, *, end: bool, option: str) -> datetime:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=tz)
        return moment.astimezone(timezone.utc)
    if isinstance(value, date):
        day = value + timedelta(days=1) if end else value
        return datetime.combine(day, time(), tz).astimezone(timezone.utc)
    text = str(value).strip()
    try:
        if len(text) == 10:
            return _moment(date.fromisoformat(text), tz, end=end, option=option)
        return _moment(datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T")), tz, end=end, option=option)
    except ValueError:
        raise PeriodError(f"{option} {text!r} is not a date: write YYYY-MM-DD, or YYYY-MM-DDTHH:MM[+HH:MM]") from None


def parse_period(
    date_from: str | date | datetime | None,
    date_to: str | date | datetime | None,
    kind: str = "created",
    tz_name: str | None = None,
) -> Period:
    """The period ``[from, to)`` in UTC; ``to`` given as a date includes that whole day."""
    if kind not in PERIODS:
        raise PeriodError(f"unknown period {kind!r}: use one of {', '.join(PERIODS)}")
    tz = zone(tz_name)
    start = None if date_from in (None, "") else _moment(date_from, tz, end=False, option="--from")
    end = None if date_to in (None, "") else _moment(date_to, tz, end=True, option="--to")
    if start is not None and end is not None and end <= start:
        raise PeriodError(f"--to ({end.isoformat()}) is not after --from ({start.isoformat()})")
    return Period(kind=kind, start=start, end=end, timezone=(tz_name or "UTC").strip() or "UTC")


def month_starts(first: datetime, last: datetime, tz_name: str | None) -> list[tuple[str, datetime]]:
    """``("2026-03", start in UTC)`` for every portal-local month from ``first``'s to ``last``'s."""
    tz = zone(tz_name)
    local = first.astimezone(tz)
    year, month = local.year, local.month
    end = last.astimezone(tz)
    months: list[tuple[str, datetime]] = []
    while (year, month) <= (end.year, end.month):
        start = datetime(year, month, 1, tzinfo=tz).astimezone(timezone.utc)
        months.append((f"{year:04d}-{month:02d}", start))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
