"""Fixtures of the connector tests: one fake time source for clocks and sleeps, and client builders."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from connector.auth import WebhookAuth
from connector.client import Bitrix24Client, RetryPolicy
from connector.ratelimit import LeakyBucket, OperatingLedger
from connector.transport import HttpTransport

class FailFirstCommand:
    """Wraps a transport: after the first request, the first command of every batch fails with ``error``.

    The rest of the batch reply is dropped, as when the portal halts a chained export at a failed page.
    """

    def __init__(self, inner: Any, error: dict[str, str]):
        self.inner, self.fetch_token, self.close = inner, inner.fetch_token, inner.close
        self.error = error
        self.batches = 0

    def send(self, method: str, params: Any, auth: Any) -> Any:
        reply = self.inner.send(method, params, auth)
        self.batches += 1
        if method != "batch" or self.batches == 1:
            return reply
        first = next(iter(params["cmd"]))
        return replace(reply, result={**reply.result, "result": {}, "result_error": {first: dict(self.error)}})


FAST_RETRY = RetryPolicy(attempts=4, max_elapsed=900.0, base=0.01, cap=0.05)


class FakeTime:
    """Unix time that only moves when someone sleeps: ``time()`` as a clock, ``sleep(s)`` records and advances."""

    def __init__(self, start: float = 1_780_000_000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Advance time instead of waiting."""
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep."""
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    """A fresh fake time source."""
    return FakeTime()


def make_client(transport: Any, auth: Any, fake: FakeTime, *, burst: float = 1_000_000, rate: float = 1_000_000, retry: RetryPolicy = FAST_RETRY, **options: Any) -> Bitrix24Client:
    """A client whose bucket, ledger, backoff and deadline all run on ``fake`` (no real sleeps)."""
    return Bitrix24Client(
        transport,
        auth,
        bucket=LeakyBucket(burst, rate, clock=fake, sleep=fake.sleep),
        ledger=OperatingLedger(clock=fake),
        retry=retry,
        clock=fake,
        sleep=fake.sleep,
        **options,
    )


@pytest.fixture
def client_for(fake_time: FakeTime) -> Any:
    """``client_for(server_or_url, **options)``: an HTTP client on fake time for an emulator or a webhook URL."""
    made: list[Bitrix24Client] = []

    def build(target: Any, **options: Any) -> Bitrix24Client:
        url = target if isinstance(target, str) else target.url
        transport = options.pop("transport", None) or HttpTransport(read_timeout=options.pop("read_timeout", 10.0))
        client = make_client(transport, options.pop("auth", None) or WebhookAuth(url), fake_time, **options)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()
