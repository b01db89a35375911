"""One deadline per logical operation: every wait (bucket, ledger pause, 429 block, backoff) counts against it.

All on fake time: a client that would sleep past ``RetryPolicy.max_elapsed`` fails with the last
error instead, and the sleeps it did make never add up to more than the deadline.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from connector import errors
from connector.auth import WebhookAuth
from connector.client import Bitrix24Client, RetryPolicy
from connector.envelope import Reply
from connector.transport import HttpTransport, MockTransport

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


# ---------------------------------------------------------------- a portal that accepts and never answers


class Silent:
    """A listening socket that accepts every connection and never answers (holds it until stopped)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.stop()


@pytest.mark.parametrize("operation", ["list_all", "call", "batch"])
def test_a_portal_that_never_answers_fails_within_the_deadline(silent, operation):
    """Each read waits at most what is left of the deadline (not 65 s per attempt); the error names the host, never the code."""
    code = "silentwebhook0code"
    client = Bitrix24Client(  # the real clock: the socket's silence takes real time
        HttpTransport(), WebhookAuth(f"http://127.0.0.1:{silent.port}/rest/1/{code}/"),
        retry=RetryPolicy(attempts=6, max_elapsed=1.5, base=0.05, cap=0.1),
    )
    started = time.monotonic()
    with pytest.raises(errors.TransportError) as info:
        if operation == "list_all":
            list(client.list_all("crm.deal.list"))
        elif operation == "call":
            client.call("crm.deal.list")
        else:
            client.batch([("crm.deal.get", {"id": 1})])
    elapsed = time.monotonic() - started
    client.close()
    assert elapsed < 1.5 + 5.0  # bounded by the deadline (and some slack), where each attempt used to wait 65 s
    message = str(info.value)
    assert f"127.0.0.1:{silent.port}" in message and "read timeout" in message
    assert code not in message and code not in repr(info.value)
    assert len(silent.held) >= 1


def test_the_read_timeout_of_an_attempt_is_what_is_left_of_the_deadline(fake_time):
    seen = []

    def handler(request):
        seen.append(request.timeout)
        fake_time.advance(30)  # the portal takes 30 s to answer 503
        return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}

    client = make_client(MockTransport(handler), WebhookAuth(WEBHOOK), fake_time, retry=RetryPolicy(attempts=10, max_elapsed=100, base=1.0, cap=1.0))
    with pytest.raises(errors.QueryLimitExceeded):
        client.call("crm.deal.list")
    assert seen[0] == pytest.approx(100)
    assert all(later < earlier for earlier, later in zip(seen, seen[1:]))  # every attempt gets only what is left
    assert len(seen) == 4 and fake_time() - 1_780_000_000 <= 100 + 30


def test_http_transport_bounds_connect_and_read_by_the_timeout():
    transport = HttpTransport(connect_timeout=10, read_timeout=65)
    assert transport._limits(None) == (10, 65)
    assert transport._limits(30) == (10, 30)
    assert transport._limits(2.5) == (2.5, 2.5)
    assert transport._limits(-1)[1] > 0  # never zero or negative: requests refuses those


def test_a_retry_policy_can_be_bounded_for_a_command():
    policy = RetryPolicy(attempts=4).within(7)
    assert (policy.attempts, policy.max_elapsed) == (4, 7.0)
    for bad in ({"attempts": 0}, {"max_elapsed": 0}, {"max_elapsed": float("nan")}, {"base": -1}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)
