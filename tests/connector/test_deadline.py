"""One deadline per logical operation: every wait (bucket, ledger pause, 429 block, backoff) counts against it.

All on fake time: a client that would sleep past ``RetryPolicy.max_elapsed`` fails with the last
error instead, and the sleeps it did make never add up to more than the deadline.
"""

from __future__ import annotations

import pytest

from connector import errors
from connector.auth import WebhookAuth
from connector.client import RetryPolicy
from connector.envelope import Reply
from connector.transport import MockTransport

from tests.conftest import make_client

from .conftest import FailFirstCommand

WEBHOOK = "https://portal.example.ru/rest/1/deadline0code/"
CLI_LIKE = RetryPolicy(attempts=4, max_elapsed=120.0, base=0.5, cap=30.0)
BLOCKED = {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}


def scripted(answer):
    """A MockTransport answering every call through ``answer(method, params)``."""
    return MockTransport(lambda request: answer(request.method, request.params))


def _sent(client):
    return [request.method for request in client.transport.requests]


def _inner_429(method, params):
    """A batch whose every command is blocked by operating time, without saying until when."""
    if method != "batch":
        raise AssertionError(f"unexpected {method}")
    names = list(params["cmd"])
    return Reply({"result": [], "result_error": {n: dict(BLOCKED) for n in names}, "result_total": [], "result_next": [], "result_time": []})


def _client(fake_time, answer, **options):
    return make_client(scripted(answer), WebhookAuth(WEBHOOK), fake_time, retry=options.pop("retry", CLI_LIKE), **options)


def test_a_call_to_a_method_blocked_past_the_deadline_fails_at_once(fake_time):
    client = _client(fake_time, lambda m, p: Reply([]))
    client.ledger.block("crm.deal.list", fake_time() + 500)
    with pytest.raises(errors.OperationTimeLimit):
        client.call("crm.deal.list")
    assert _sent(client) == [] and sum(fake_time.sleeps) == 0


def test_a_call_whose_ledger_pause_fits_the_deadline_waits_it_out(fake_time):
    client = _client(fake_time, lambda m, p: Reply([]))
    client.ledger.block("crm.deal.list", fake_time() + 100)
    client.call("crm.deal.list")
    assert _sent(client) == ["crm.deal.list"] and sum(fake_time.sleeps) == pytest.approx(100)


def test_backoff_and_ledger_pauses_share_one_deadline(fake_time):
    """A 500, then a 429 that blocks the method for 110 s: 0.5+ s of backoff plus 110 s fits 120 s only once."""
    replies = iter([
        errors.ServerError("INTERNAL_SERVER_ERROR", "", 500, "crm.deal.list"),
        errors.OperationTimeLimit("OPERATION_TIME_LIMIT", "", 429, "crm.deal.list", retry_at=fake_time() + 60),
        errors.OperationTimeLimit("OPERATION_TIME_LIMIT", "", 429, "crm.deal.list", retry_at=fake_time() + 200),
    ])

    def answer(method, params):
        raise next(replies)

    client = _client(fake_time, answer)
    with pytest.raises(errors.OperationTimeLimit):
        client.call("crm.deal.list")
    assert len(_sent(client)) == 3
    assert sum(fake_time.sleeps) <= CLI_LIKE.max_elapsed


def test_a_bucket_wait_past_the_deadline_is_not_slept(fake_time):
    client = _client(fake_time, lambda m, p: Reply([]), burst=1, rate=0.001)
    client.bucket.capacity = 1.0
    client.call("profile")
    with pytest.raises(errors.QueryLimitExceeded):
        client.call("profile")  # the next slot is 1,000 s away
    assert _sent(client) == ["profile"] and sum(fake_time.sleeps) == 0
    assert client.bucket.reserve() == pytest.approx(1000)  # the refused call booked no slot


@pytest.mark.parametrize("concurrency", [1, 3])
def test_list_all_pages_blocked_by_operating_time_end_within_the_deadline(fake_time, concurrency):
    """The reviewer's repro: every page of every batch 429'd; the export fails with it inside 120 s."""
    client = _client(fake_time, _inner_429)
    started = fake_time()
    with pytest.raises(errors.BatchCommandError) as info:
        list(client.list_all("crm.deal.list", concurrency=concurrency))
    assert isinstance(info.value.error, errors.OperationTimeLimit)
    assert fake_time() - started <= CLI_LIKE.max_elapsed
    assert all(s <= CLI_LIKE.max_elapsed for s in fake_time.sleeps)


def test_batch_commands_blocked_by_operating_time_end_within_the_deadline(fake_time):
    client = _client(fake_time, _inner_429)
    started = fake_time()
    with pytest.raises(errors.BatchCommandError) as info:
        client.batch([("crm.deal.list", {}), ("crm.lead.list", {})])
    assert isinstance(info.value.error, errors.OperationTimeLimit)
    assert fake_time() - started <= CLI_LIKE.max_elapsed


@pytest.mark.parametrize("concurrency", [1, 3])
def test_export_segments_blocked_by_operating_time_end_within_the_deadline(make_emulator, client_for, fake_time, concurrency):
    server = make_emulator(seed=11, deals=400)
    client = client_for(server, retry=CLI_LIKE)
    client.transport = FailFirstCommand(client.transport, BLOCKED)
    started = fake_time()
    with pytest.raises(errors.BatchCommandError) as info:
        list(client.list_all("crm.deal.list", select=["ID"], batch_size=2, concurrency=concurrency))
    assert isinstance(info.value.error, errors.OperationTimeLimit)
    assert fake_time() - started <= CLI_LIKE.max_elapsed
