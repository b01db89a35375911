"""The one retry helper: attempts and one deadline per operation, waits it knows or a jittered backoff."""

from __future__ import annotations

import random

import pytest

from connector import errors
from connector.retry import Deadline, Retry, RetryPolicy

BUSY = errors.QueryLimitExceeded("QUERY_LIMIT_EXCEEDED", "Too many requests", 503, "crm.deal.list")
FATAL = errors.BadRequest("", "Parameter 'filter' must be array.", 400, "crm.deal.list")


def _retry(clock, **policy):
    log = []
    retry = Retry(RetryPolicy(**{"attempts": 4, "max_elapsed": 100.0, "base": 1.0, "cap": 8.0, **policy}),
                  clock=clock, sleep=clock.sleep, rng=random.Random(1), on_retry=lambda *args: log.append(args))
    return retry, log


def test_again_waits_the_backoff_until_the_attempts_are_spent(fake_time):
    retry, log = _retry(fake_time)
    assert [retry.again(BUSY, label="x") for _ in range(4)] == [True, True, True, False]
    assert len(fake_time.sleeps) == 3  # doubling from 1 s, plus under a second of jitter each
    assert all(base <= s < base + 1 for base, s in zip([1, 2, 4], fake_time.sleeps)) and [entry[2] for entry in log] == [1, 2, 3]


def test_a_wait_that_passes_the_deadline_is_not_slept(fake_time):
    retry, _ = _retry(fake_time, attempts=10)
    assert retry.again(BUSY, wait=60)
    assert not retry.again(BUSY, wait=60)  # 120 s > 100 s
    assert fake_time.sleeps == [60] and retry.deadline.last is BUSY


def test_progress_starts_the_count_and_the_deadline_afresh(fake_time):
    retry, _ = _retry(fake_time, attempts=2)
    assert retry.again(BUSY, wait=90)
    retry.progressed()
    fake_time.advance(500)  # e.g. the consumer took its time with the rows: the next deadline starts at its first use
    assert retry.again(BUSY, wait=90) and retry.failures == 1


def test_run_raises_what_may_not_be_retried_at_once(fake_time):
    retry, _ = _retry(fake_time)
    calls = []

    def attempt(deadline):
        calls.append(deadline.remaining())
        raise FATAL

    with pytest.raises(errors.BadRequest):
        retry.run(attempt, retriable=lambda exc: isinstance(exc, errors.RetriableError))
    assert calls == [100.0] and fake_time.sleeps == []


def test_run_repeats_until_it_works_and_uses_the_wait_it_is_told(fake_time):
    retry, log = _retry(fake_time)
    outcomes = iter([BUSY, BUSY, "ok"])

    def attempt(deadline):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry.run(attempt, retriable=lambda exc: True, wait_for=lambda exc: 5.0, label="crm.deal.list") == "ok"
    assert fake_time.sleeps == [5.0, 5.0] and [entry[0] for entry in log] == ["crm.deal.list"] * 2


def test_an_expired_deadline_retries_nothing(fake_time):
    deadline = Deadline(fake_time, 10)
    retry, _ = _retry(fake_time)
    retry = Retry(retry.policy, clock=fake_time, sleep=fake_time.sleep, rng=random.Random(1), deadline=deadline)
    assert deadline.expire(BUSY) is BUSY
    assert not retry.again(BUSY, wait=0)


def test_the_backoff_is_capped(fake_time):
    policy = RetryPolicy(base=1.0, cap=8.0)
    rng = random.Random(3)
    assert all(8 <= policy.backoff(n, rng) < 9 for n in range(4, 200))
