"""The leaky bucket and the operating-time ledger, driven by a fake clock (no real sleeps)."""

from __future__ import annotations

import pytest

from connector import errors
from connector.client import RetryPolicy
from connector.emulator.limits import LeakyBucket as PortalBucket
from connector.ratelimit import PLANS, OperatingLedger, RequestPacer


def test_bucket_lets_a_burst_through_then_paces_at_the_drain_rate(fake_time):
    bucket = RequestPacer(burst=50, rate=2.0, headroom=0, clock=fake_time, sleep=fake_time.sleep)
    waits = [bucket.acquire() for _ in range(50)]
    assert waits == [0.0] * 50
    assert bucket.acquire() == pytest.approx(0.5)
    assert bucket.acquire() == pytest.approx(0.5)
    assert fake_time.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


def test_bucket_drains_while_idle(fake_time):
    bucket = RequestPacer(burst=10, rate=2.0, headroom=0, clock=fake_time, sleep=fake_time.sleep)
    for _ in range(10):
        bucket.acquire()
    fake_time.advance(3.0)  # 6 slots drained
    assert [bucket.reserve() for _ in range(6)] == [0.0] * 6
    assert bucket.reserve() == pytest.approx(0.5)


def test_reservations_of_concurrent_callers_queue_up(fake_time):
    bucket = RequestPacer(burst=2, rate=2.0, headroom=0, clock=fake_time, sleep=fake_time.sleep)
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, pytest.approx(0.5), pytest.approx(1.0), pytest.approx(1.5)]


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_a_client_paced_by_our_bucket_never_overflows_the_portals_bucket(fake_time, plan):
    burst, rate = PLANS[plan]
    ours = RequestPacer(burst=burst, rate=rate, clock=fake_time, sleep=fake_time.sleep)
    portal = PortalBucket(rate, burst, clock=fake_time)
    refused = 0
    for i in range(int(burst) * 4):
        ours.acquire()
        refused += not portal.admit()
        if i % 7 == 0:
            fake_time.advance(0.13)  # some work between calls
    assert refused == 0


def test_bucket_believes_the_portal_after_a_503(fake_time):
    bucket = RequestPacer(burst=50, rate=2.0, headroom=0, clock=fake_time, sleep=fake_time.sleep)
    bucket.acquire()
    bucket.overflowed()  # another client on our IP filled it
    assert bucket.reserve() == pytest.approx(0.5)


def test_enterprise_limits_are_configurable(fake_time):
    bucket = RequestPacer.for_plan("enterprise", headroom=0, clock=fake_time, sleep=fake_time.sleep)
    assert [bucket.reserve() for _ in range(250)] == [0.0] * 250
    assert bucket.reserve() == pytest.approx(0.2)


def test_bucket_rejects_nonsense():
    with pytest.raises(ValueError):
        RequestPacer(burst=50, rate=0)


def _time(operating, reset_at):
    return {"start": 0, "finish": 0, "operating": operating, "operating_reset_at": reset_at}


def test_ledger_is_silent_while_a_method_is_far_from_its_budget(fake_time):
    ledger = OperatingLedger(480, clock=fake_time)
    ledger.record("crm.deal.list", _time(12.5, fake_time() + 300))
    assert ledger.operating("CRM.DEAL.LIST") == 12.5
    assert ledger.delay("crm.deal.list") == 0.0


def test_ledger_slows_a_method_above_80_percent_and_pauses_it_near_the_budget(fake_time):
    ledger = OperatingLedger(480, clock=fake_time)
    ledger.record("crm.deal.list", _time(400, fake_time() + 300))
    assert ledger.delay("crm.deal.list") == pytest.approx(3.0)  # 1 % of the time to reset
    ledger.record("crm.deal.list", _time(476, fake_time() + 300))
    assert ledger.delay("crm.deal.list") == pytest.approx(300)
    assert ledger.delay("crm.lead.list") == 0.0  # other methods keep going
    fake_time.advance(300)
    assert ledger.delay("crm.deal.list") == 0.0  # the oldest bucket dropped out


def test_ledger_blocks_only_the_method_that_got_429(fake_time):
    ledger = OperatingLedger(480, clock=fake_time)
    until = ledger.block("crm.deal.list", fake_time() + 120)
    assert until == fake_time() + 120
    assert ledger.delay("crm.deal.list") == pytest.approx(120)
    assert ledger.delay("crm.deal.get") == 0.0
    assert ledger.delay_for(["crm.deal.get", "crm.deal.list"]) == pytest.approx(120)
    fake_time.advance(120)
    assert ledger.delay("crm.deal.list") == 0.0


def test_a_429_without_retry_time_uses_the_last_known_reset_then_one_bucket(fake_time):
    ledger = OperatingLedger(480, clock=fake_time, fallback_block=60)
    ledger.record("crm.deal.list", _time(100, fake_time() + 200))
    ledger.block("crm.deal.list")
    assert ledger.delay("crm.deal.list") == pytest.approx(200)
    ledger.block("user.get")  # nothing known about it
    assert ledger.delay("user.get") == pytest.approx(60)


def test_ledger_ignores_replies_without_operating_figures(fake_time):
    ledger = OperatingLedger(480, clock=fake_time)
    ledger.record("server.time", {"start": 1, "finish": 2})
    ledger.record("server.time", None)
    ledger.record("server.time", {"operating": "oops"})
    assert ledger.operating("server.time") == 0.0
    assert ledger.delay("server.time") == 0.0


# ---------------------------------------------------------------- the client against the emulator's real limits


def test_a_polite_client_sees_no_503_at_the_default_limits(make_emulator, client_for, fake_time):
    server = make_emulator(rate=2.0, burst=50.0, clock=fake_time)  # the portal's defaults, on fake time
    client = client_for(server, burst=50, rate=2.0)
    for _ in range(130):
        client.call("profile")
    assert server.stats()["rejected_503"] == 0
    assert sum(fake_time.sleeps) == pytest.approx((130 - 49) / 2.0, abs=1.0)  # paced at 2/s after the burst


def test_an_impolite_client_would_have_seen_503s(make_emulator, client_for, fake_time):
    """The control for the test above: without our bucket the same calls overflow the portal's."""
    server = make_emulator(rate=2.0, burst=50.0, clock=fake_time)
    client = client_for(server, retry=RetryPolicy(attempts=1))
    with pytest.raises(errors.QueryLimitExceeded):
        for _ in range(130):
            client.call("profile")
    assert server.stats()["rejected_503"] == 1


def test_the_ledger_pauses_a_method_before_the_portal_blocks_it(make_emulator, client_for, fake_time):
    server = make_emulator(operating_budget=0.05, clock=fake_time)
    client = client_for(server)
    client.ledger = OperatingLedger(0.05, safety=0.01, clock=fake_time)
    for _ in range(60):
        client.call("crm.deal.list", {"start": -1, "select": ["ID"]})
    assert server.stats()["rejected_429"] == 0
    assert client.counters["ledger_pauses"] >= 1 and max(fake_time.sleeps) >= 590
    assert client.ledger.operating("crm.deal.list") < 0.05


def test_a_429_with_nothing_known_blocks_longer_each_time_up_to_the_window(fake_time):
    """No reset time from the portal: 60 s, then doubling, never more than the 10-minute window."""
    ledger = OperatingLedger(480, clock=fake_time, fallback_block=60)
    blocks = []
    for _ in range(6):
        blocks.append(ledger.block("crm.deal.list") - fake_time())
        fake_time.advance(blocks[-1])
    assert blocks == [60, 120, 240, 480, 600, 600]
    ledger.record("crm.deal.list", _time(10, None))  # the method answered again: start over
    assert ledger.block("crm.deal.list") - fake_time() == 60


def test_a_429_without_its_own_reset_prefers_the_methods_known_reset_to_a_hint(fake_time):
    ledger = OperatingLedger(480, clock=fake_time)
    ledger.block("user.get", hint=fake_time() + 300)  # nothing known about user.get: the hint
    assert ledger.delay("user.get") == pytest.approx(300)
    ledger.record("crm.deal.list", _time(100, fake_time() + 200))
    ledger.block("crm.deal.list", hint=fake_time() + 500)
    assert ledger.delay("crm.deal.list") == pytest.approx(200)
