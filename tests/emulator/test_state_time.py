"""Portal time texts: the fast formatter behind ``Portal.now_text`` prints exactly what datetime prints."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from connector.emulator.state import Portal, iso_seconds
from connector.envelope import parse_offset

OFFSETS = ["+03:00", "-03:00", "+00:00", "+05:30", "-09:30", "+14:00"]


def reference(moment: float, tz: timezone) -> str:
    """What ``Portal.now().isoformat()`` prints for this moment."""
    return datetime.fromtimestamp(moment, tz).replace(microsecond=0).isoformat()


def moments() -> list[float]:
    """Random moments plus the edges: day and year ends, fractions that round into the next second."""
    rng = random.Random(20260301)
    values: list[float] = [rng.uniform(0, 2e9) for _ in range(3000)]
    values += [rng.randrange(0, 2**31) for _ in range(500)]
    for whole in (0, 86399, 1_767_225_599, 4_102_444_799):
        values += [whole + f for f in (0.0, 1e-7, 0.5, 0.999999, 0.9999994, 0.9999995, 0.9999996)]
    return values


@pytest.mark.parametrize("offset", OFFSETS)
def test_iso_seconds_prints_what_datetime_prints(offset: str) -> None:
    tz = parse_offset(offset)
    values = moments()
    assert [iso_seconds(m, tz) for m in values] == [reference(m, tz) for m in values]


def test_moments_outside_the_fast_path_match_too() -> None:
    odd = timezone(timedelta(seconds=1.5))  # not a whole-second offset
    plain = parse_offset("+03:00")
    for moment in (-86400.25, -1.0, -0.5, 1_767_000_000.3):
        for tz in (odd, plain):
            assert iso_seconds(moment, tz) == reference(moment, tz)


def test_now_text_is_now_isoformat() -> None:
    portal = Portal("+03:00", clock=lambda: 1_767_225_599.9999996)  # rounds into the next second
    assert portal.now_text() == portal.now().isoformat() == "2026-01-01T03:00:00+03:00"
