"""Limits: the leaky bucket (503), the per-method operating budget (429), and the latency model."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests

from connector.emulator import costs
from connector.emulator.app import ROUND_TRIP
from connector.emulator.limits import Blocked, LeakyBucket, OperatingBudget
from tests.conftest import WEBHOOK_CODE

HOOK = f"/rest/1/{WEBHOOK_CODE}"


@pytest.fixture
def methods(register_method: Any) -> None:
    """test.heavy costs 0.6 s, test.light 0.1 s, test.free nothing."""

    def heavy(call: Any) -> bool:
        call.charge(0.6)
        return True

    def light(call: Any) -> bool:
        call.charge(0.1)
        return True

    register_method("test.heavy", heavy)
    register_method("test.light", light)
    register_method("test.free", lambda call: True)


def get(app: Any, method: str, hook: str = HOOK) -> Any:
    return app.request("GET", f"{hook}/{method}")


# ---------------------------------------------------------------- leaky bucket


def test_bucket_unit(clock: Any) -> None:
    bucket = LeakyBucket(rate=2, burst=3, clock=clock)
    assert [bucket.admit() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)  # drains one request
    assert [bucket.admit(), bucket.admit()] == [True, False]
    clock.advance(10)
    assert bucket.level == 0


def test_bucket_answers_503_and_drains(make_emulator: Any, clock: Any, methods: None) -> None:
    app = make_emulator(http=False, rate=1, burst=3, clock=clock)
    statuses = [get(app, "test.free").status for _ in range(5)]
    assert statuses == [200, 200, 200, 503, 503]
    reply = get(app, "test.free")
    assert reply.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    clock.advance(1.0)
    assert get(app, "test.free").status == 200
    stats = app.stats()
    assert stats["rejected_503"] == 3
    assert stats["requests_total"] == 7


def test_batch_is_one_request_for_the_bucket(make_emulator: Any, clock: Any, methods: None) -> None:
    app = make_emulator(http=False, rate=1, burst=2, clock=clock)
    payload = json.dumps({"cmd": ["test.free"] * 50})
    replies = [app.request("POST", f"{HOOK}/batch", body=payload, content_type="application/json") for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 503]
    assert len(replies[0].json()["result"]["result"]) == 50


def test_bucket_over_http(make_emulator: Any, methods: None) -> None:
    emulator = make_emulator(rate=0.001, burst=2)
    statuses = [requests.get(emulator.url + "test.free", timeout=10).status_code for _ in range(3)]
    assert statuses == [200, 200, 503]
    assert requests.get(f"{emulator.base_url}/_emulator/stats", timeout=10).status_code == 200  # never limited


# ---------------------------------------------------------------- operating budget


def test_budget_unit_buckets_and_reset(clock: Any) -> None:
    budget = OperatingBudget(1.0, clock=clock)
    first = clock()
    assert budget.charge("k", 0.6).operating == pytest.approx(0.6)
    clock.advance(120)
    usage = budget.charge("k", 0.6)
    assert usage.operating == pytest.approx(1.2)
    assert usage.reset_at == int(first + 600)
    with pytest.raises(Blocked) as blocked:
        budget.check("k")
    assert blocked.value.usage.reset_at == int(first + 600)
    budget.check("other")  # other keys are not affected
    clock.now = first + 600  # the first bucket drops out
    budget.check("k")
    assert budget.usage("k").operating == pytest.approx(0.6)
    assert budget.usage("k").reset_at == int(first + 720)


def test_calls_within_one_minute_share_a_bucket(clock: Any) -> None:
    budget = OperatingBudget(100, clock=clock)
    start = clock()
    budget.charge("k", 1)
    clock.advance(59)
    budget.charge("k", 1)
    clock.advance(2)  # 61 s after the first call: a new bucket opens
    budget.charge("k", 1)
    clock.now = start + 600
    assert budget.usage("k").operating == pytest.approx(1)


def test_429_blocks_only_that_method_until_reset(make_emulator: Any, clock: Any, methods: None) -> None:
    app = make_emulator(http=False, operating_budget=1.0, clock=clock)
    started = clock()
    first = get(app, "test.heavy").json()["time"]
    assert first["operating"] == pytest.approx(0.6)
    assert first["operating_reset_at"] == int(started + 600)
    clock.advance(30)
    second = get(app, "test.heavy").json()["time"]  # crosses the budget, still allowed to finish
    assert second["operating"] == pytest.approx(1.2)

    blocked = get(app, "test.heavy")
    assert blocked.status == 429
    body = blocked.json()
    assert (body["error"], body["error_description"]) == (
        "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."
    )
    assert body["time"]["operating_reset_at"] == int(started + 600)

    assert get(app, "test.light").status == 200  # other methods keep working
    app.add_webhook("second-hook", user_id=1)
    assert get(app, "test.heavy", "/rest/1/second-hook").status == 200  # other webhooks too

    clock.now = started + 599
    assert get(app, "test.heavy").status == 429
    clock.now = started + 600  # the first bucket (both calls) drops out
    again = get(app, "test.heavy")
    assert again.status == 200
    assert again.json()["time"]["operating"] == pytest.approx(0.6)
    assert app.stats()["rejected_429"] == 2


def test_batch_bills_inner_commands_to_their_own_methods(make_emulator: Any, clock: Any, methods: None) -> None:
    app = make_emulator(http=False, operating_budget=1.0, clock=clock)
    payload = json.dumps({"cmd": {"a": "test.heavy", "b": "test.heavy", "c": "test.heavy", "d": "test.light"}})
    body = app.request("POST", f"{HOOK}/batch", body=payload, content_type="application/json").json()
    result = body["result"]
    assert result["result_time"]["a"]["operating"] == pytest.approx(0.6)
    assert result["result_time"]["b"]["operating"] == pytest.approx(1.2)
    assert result["result_error"] == {
        "c": {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}
    }
    assert result["result_time"]["d"]["operating"] == pytest.approx(0.1)
    assert body["time"]["operating"] == 0  # the outer batch is not billed (docs' claim)
    assert get(app, "test.heavy").status == 429
    assert get(app, "batch").status == 200


def test_oauth_app_and_webhook_have_separate_budgets(make_emulator: Any, clock: Any, methods: None) -> None:
    app = make_emulator(http=False, operating_budget=0.5, clock=clock, oauth=True)
    get(app, "test.heavy")
    assert get(app, "test.heavy").status == 429
    reply = app.request("GET", f"/rest/test.heavy?auth={app.oauth['access_token']}")
    assert reply.status == 200


def test_default_cost_is_charged_when_a_handler_charges_nothing(make_emulator: Any, clock: Any, methods: None) -> None:
    app = make_emulator(http=False, clock=clock)
    assert get(app, "test.free").json()["time"]["operating"] == pytest.approx(costs.CALL)
    assert app.stats()["operating_by_method"]["test.free"] == pytest.approx(costs.CALL)


# ---------------------------------------------------------------- latency


def test_latency_sleeps_cost_times_scale_plus_round_trip(make_emulator: Any, methods: None) -> None:
    slept: list[float] = []
    app = make_emulator(http=False, latency=2.0, sleep=slept.append)
    get(app, "test.heavy")
    get(app, "test.free")
    app.request("POST", f"{HOOK}/batch", body=json.dumps({"cmd": ["test.heavy", "test.light"]}), content_type="application/json")
    assert slept == pytest.approx([2 * 0.6 + ROUND_TRIP, 2 * costs.CALL + ROUND_TRIP, 2 * 0.7 + ROUND_TRIP])


def test_no_latency_by_default(make_emulator: Any, methods: None) -> None:
    slept: list[float] = []
    app = make_emulator(http=False, sleep=slept.append)
    get(app, "test.heavy")
    assert slept == []


def test_concurrent_requests_are_served_concurrently(make_emulator: Any, methods: None) -> None:
    """Two requests meet inside the latency sleep: impossible if the server handled one at a time."""
    barrier = threading.Barrier(2, timeout=20)
    emulator = make_emulator(latency=1.0, sleep=lambda seconds: barrier.wait())
    results: list[int] = []

    def call() -> None:
        results.append(requests.get(emulator.url + "test.heavy", timeout=30).status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200, 200]
    assert not barrier.broken
