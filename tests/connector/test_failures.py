"""The failure table: status, body and expected outcome for every error class, with mocks and with the emulator.

Outcomes: ``"retried"`` (the call succeeds on a later attempt), ``"refresh"`` (the OAuth token is
refreshed once and the call repeated), or the error class raised at once. Reads retry every
retriable error; writes only those where the portal certainly did not run the call.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from connector import errors
from connector.auth import MemoryTokenStore, OAuthAuth, Tokens, WebhookAuth
from connector.client import RetryPolicy
from connector.emulator.faults import FaultPlan, html_page
from connector.transport import HttpTransport

from tests.conftest import make_client

CODE = "failtable0code"
WEBHOOK = f"https://portal.example.ru/rest/1/{CODE}/"
OAUTH_ENDPOINT = "https://portal.example.ru/rest/"
TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"
OK = {"result": [{"ID": "1"}], "total": 1, "time": {"start": 1, "finish": 1, "operating": 0.01, "operating_reset_at": 1_780_000_600}}


def _err(code, text=""):
    return {"error": code, "error_description": text}


def _refused():
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/x", NewConnectionError(None, "Connection refused")))


def _reset():
    return requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))


# (id, status, body or exception, expected outcome, auth kind)
READ_TABLE = [
    ("503-query-limit", 503, _err("QUERY_LIMIT_EXCEEDED", "Too many requests"), "retried", "webhook"),
    ("429-operation-time", 429, {**_err("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."),
                                 "time": {"operating": 481, "operating_reset_at": 1_780_000_120}}, "retried", "webhook"),
    ("500-internal", 500, _err("INTERNAL_SERVER_ERROR", "Internal server error"), "retried", "webhook"),
    ("500-unexpected-answer", 500, _err("ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response"), "retried", "webhook"),
    ("502-plain-text", 502, "Bad Gateway", "retried", "webhook"),
    ("502-html-page", 502, html_page(502, "Bad Gateway").decode(), "retried", "webhook"),
    ("503-html-page", 503, html_page(503, "Service Unavailable").decode(), "retried", "webhook"),
    ("200-html-page", 200, "<html><body>maintenance</body></html>", "retried", "webhook"),
    ("200-truncated-json", 200, '{"result": [{"ID": "1"}, {"ID', "retried", "webhook"),
    ("200-no-result", 200, {"total": 3}, "retried", "webhook"),
    ("connect-refused", 0, _refused(), "retried", "webhook"),
    ("connect-timeout", 0, requests.exceptions.ConnectTimeout("connect timeout"), "retried", "webhook"),
    ("read-timeout", 0, requests.exceptions.ReadTimeout("read timeout"), "retried", "webhook"),
    ("connection-reset", 0, _reset(), "retried", "webhook"),
    ("body-cut", 0, requests.exceptions.ChunkedEncodingError("IncompleteRead"), "retried", "webhook"),
    ("401-expired-token", 401, _err("expired_token", "The access token provided has expired."), "refresh", "oauth"),
    ("401-expired-token-webhook", 401, _err("expired_token", "The access token provided has expired."), errors.AuthFailed, "webhook"),
    ("401-no-auth", 401, _err("NO_AUTH_FOUND", "Wrong authorization data"), errors.AuthFailed, "webhook"),
    ("401-invalid-token", 401, _err("invalid_token", "Unable to get application by token"), errors.AuthFailed, "oauth"),
    ("401-status-only", 401, _err("SOMETHING_NEW", "?"), errors.AuthFailed, "webhook"),
    ("403-insufficient-scope", 403, _err("insufficient_scope", "The request requires higher privileges"), errors.AuthFailed, "webhook"),
    ("403-wrong-auth-type", 403, _err("WRONG_AUTH_TYPE", "Current authorization type is denied"), errors.AuthFailed, "webhook"),
    ("403-access-denied", 403, _err("ACCESS_DENIED", "REST API is available only on commercial plans"), errors.AccessDenied, "webhook"),
    ("503-overload-blocked", 503, _err("OVERLOAD_LIMIT", "REST API is blocked due to overload"), errors.AccessDenied, "webhook"),
    ("500-portal-deleted", 500, _err("PORTAL_DELETED", "Portal was deleted"), errors.AccessDenied, "webhook"),
    ("400-not-found-empty-code", 400, _err("", "Not found"), errors.NotFound, "webhook"),
    ("400-not-found-code", 400, _err("NOT_FOUND", "Element not found"), errors.NotFound, "webhook"),
    ("400-legacy-bad-param", 400, _err("", "Parameter 'filter' must be array."), errors.BadRequest, "webhook"),
    ("400-numeric-code", 400, _err(0, "SHIPMENT_DOCUMENT entity is not supported"), errors.BadRequest, "webhook"),
    ("400-invalid-arg", 400, _err("INVALID_ARG_VALUE", "Invalid filter: field 'X' is not allowed in filter"), errors.BadRequest, "webhook"),
    ("400-batch-too-long", 400, _err("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded"), errors.BadRequest, "webhook"),
    ("404-method-not-found", 404, _err("ERROR_METHOD_NOT_FOUND", "Method not found!"), errors.MethodNotFound, "webhook"),
    ("405-batch-method", 405, _err("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage"), errors.BadRequest, "webhook"),
]

WRITE_TABLE = [
    ("503-query-limit", 503, _err("QUERY_LIMIT_EXCEEDED", "Too many requests"), "retried", "webhook"),
    ("429-operation-time", 429, _err("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."), "retried", "webhook"),
    ("connect-refused", 0, _refused(), "retried", "webhook"),
    ("connect-timeout", 0, requests.exceptions.ConnectTimeout("connect timeout"), "retried", "webhook"),
    ("401-expired-token", 401, _err("expired_token", "The access token provided has expired."), "refresh", "oauth"),
    ("500-internal", 500, _err("INTERNAL_SERVER_ERROR", "Internal server error"), errors.ServerError, "webhook"),
    ("502-html-page", 502, html_page(502, "Bad Gateway").decode(), errors.ServerError, "webhook"),
    ("200-html-page", 200, "<html>proxy</html>", errors.BadReplyError, "webhook"),
    ("200-truncated-json", 200, '{"result": 1', errors.BadReplyError, "webhook"),
    ("read-timeout", 0, requests.exceptions.ReadTimeout("read timeout"), errors.TransportError, "webhook"),
    ("connection-reset", 0, _reset(), errors.TransportError, "webhook"),
    ("body-cut", 0, requests.exceptions.ChunkedEncodingError("IncompleteRead"), errors.BadReplyError, "webhook"),
]


def _auth(kind):
    if kind == "webhook":
        return WebhookAuth(WEBHOOK)
    tokens = Tokens.from_reply({"access_token": "acc-old-token", "refresh_token": "ref-old-token", "client_endpoint": OAUTH_ENDPOINT})
    return OAuthAuth("local.app", "app-secret-xyz", tokens, store=MemoryTokenStore())


def _register(url, status, body):
    if isinstance(body, Exception):
        responses.post(url, body=body)
    elif isinstance(body, str):
        responses.post(url, status=status, body=body, content_type="text/html" if "<" in body else "text/plain")
    else:
        responses.post(url, status=status, json=body)


def _run_row(fake_time, caplog, method, status, body, expected, kind, success_result):
    auth = _auth(kind)
    url = (WEBHOOK if kind == "webhook" else OAUTH_ENDPOINT) + method
    _register(url, status, body)
    responses.post(url, json=success_result)
    responses.get(TOKEN_URL, json={"access_token": "acc-new-token", "refresh_token": "ref-new-token"})
    client = make_client(HttpTransport(), auth, fake_time)
    posts = lambda: [c for c in responses.calls if c.request.method == "POST"]  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="connector.client"):
        if isinstance(expected, type):
            with pytest.raises(expected) as info:
                client.call(method, {"fields": {"TITLE": "x"}} if method.endswith(".add") else {"start": -1})
            assert type(info.value) is expected or expected is errors.TransportError
            assert len(posts()) == 1, "a fatal error (or an unsafe write) must not be repeated"
            return client
        reply = client.call(method, {"fields": {"TITLE": "x"}} if method.endswith(".add") else {"start": -1})
    assert reply.result == success_result["result"]
    assert len(posts()) == 2
    token_calls = [c for c in responses.calls if c.request.method == "GET"]
    if expected == "refresh":
        assert len(token_calls) == 1
        assert [json.loads(c.request.body)["auth"] for c in posts()] == ["acc-old-token", "acc-new-token"]
    else:
        assert token_calls == []
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(method in w and "attempt 1" in w for w in warnings), warnings
    return client


@responses.activate
@pytest.mark.parametrize(("status", "body", "expected", "kind"), [row[1:] for row in READ_TABLE], ids=[row[0] for row in READ_TABLE])
def test_read_failure_table_with_mocks(fake_time, caplog, status, body, expected, kind):
    _run_row(fake_time, caplog, "crm.deal.list", status, body, expected, kind, OK)
    if status == 429:  # waited for the method's reset time, not a short backoff
        assert fake_time.sleeps and max(fake_time.sleeps) >= 119


@responses.activate
@pytest.mark.parametrize(("status", "body", "expected", "kind"), [row[1:] for row in WRITE_TABLE], ids=[row[0] for row in WRITE_TABLE])
def test_write_failure_table_with_mocks(fake_time, caplog, status, body, expected, kind):
    _run_row(fake_time, caplog, "crm.deal.add", status, body, expected, kind, {"result": 17})


@responses.activate
@pytest.mark.parametrize(
    "token_failure",
    [requests.exceptions.ReadTimeout("read timeout"), _reset(), "500"],
    ids=["token-endpoint-timeout", "token-endpoint-dropped", "token-endpoint-500"],
)
def test_a_write_whose_token_refresh_failed_is_repeated_and_applied_once(fake_time, token_failure):
    """The write was refused at auth (expired_token); only the token endpoint failed, so repeating it is safe."""
    url = OAUTH_ENDPOINT + "crm.deal.add"
    expired = _err("expired_token", "The access token provided has expired.")
    responses.post(url, status=401, json=expired)
    responses.post(url, status=401, json=expired)
    responses.post(url, json={"result": 17})
    if token_failure == "500":
        responses.get(TOKEN_URL, status=500, json=_err("INTERNAL_SERVER_ERROR", "oops"))
    else:
        responses.get(TOKEN_URL, body=token_failure)
    responses.get(TOKEN_URL, json={"access_token": "acc-new-token", "refresh_token": "ref-new-token"})
    client = make_client(HttpTransport(), _auth("oauth"), fake_time)
    assert client.result("crm.deal.add", {"fields": {"TITLE": "x"}}) == 17
    posts = [json.loads(c.request.body)["auth"] for c in responses.calls if c.request.method == "POST"]
    assert posts == ["acc-old-token", "acc-old-token", "acc-new-token"]  # the portal ran it once, with the new token


@responses.activate
def test_retries_are_bounded_in_count(fake_time):
    url = WEBHOOK + "crm.deal.list"
    responses.post(url, status=503, json=_err("QUERY_LIMIT_EXCEEDED", "Too many requests"))
    client = make_client(HttpTransport(), WebhookAuth(WEBHOOK), fake_time, retry=RetryPolicy(attempts=3, base=0.01))
    with pytest.raises(errors.QueryLimitExceeded):
        client.call("crm.deal.list")
    assert len(responses.calls) == 3


@responses.activate
def test_retries_are_bounded_in_total_time(fake_time):
    url = WEBHOOK + "crm.deal.list"
    far = fake_time() + 5000  # the method unblocks long after our deadline: give up now, do not sleep
    responses.post(url, status=429, json={**_err("OPERATION_TIME_LIMIT", "blocked"), "time": {"operating_reset_at": far}})
    client = make_client(HttpTransport(), WebhookAuth(WEBHOOK), fake_time, retry=RetryPolicy(attempts=6, max_elapsed=660))
    with pytest.raises(errors.OperationTimeLimit) as info:
        client.call("crm.deal.list")
    assert info.value.retry_at == far
    assert len(responses.calls) == 1
    assert fake_time.sleeps == []


@responses.activate
def test_a_domain_move_is_followed_once_and_remembered(fake_time):
    responses.post(WEBHOOK + "profile", status=302, headers={"Location": f"https://new.example.ru/rest/1/{CODE}/profile"})
    responses.post(f"https://new.example.ru/rest/1/{CODE}/profile", json={"result": {"ID": "1"}})
    responses.post(f"https://new.example.ru/rest/1/{CODE}/server.time", json={"result": "2026-01-01T00:00:00+03:00"})
    auth = WebhookAuth(WEBHOOK)
    client = make_client(HttpTransport(), auth, fake_time)
    assert client.result("profile") == {"ID": "1"}
    assert auth.origin == "https://new.example.ru"
    client.result("server.time")
    assert [c.request.url.split("/rest/")[0] for c in responses.calls] == [
        "https://portal.example.ru", "https://new.example.ru", "https://new.example.ru"
    ]
    assert json.loads(responses.calls[1].request.body) == {}


# ---------------------------------------------------------------- the same table against the emulator's faults

EMULATOR_RETRY = RetryPolicy(attempts=4, max_elapsed=900.0, base=1.0, cap=5.0)  # sleeps are fake; only timeouts are real


@pytest.mark.parametrize(
    "faults",
    [("5xx",), ("5xx", "5xx"), ("html",), ("html", "html"), ("cut",), ("reset",), ("timeout",), ("reset", "cut", "5xx")],
    ids=["500-json", "500-then-502-text", "502-html", "502-then-503-html", "cut-body", "reset", "timeout", "three-in-a-row"],
)
def test_reads_survive_every_emulator_fault(make_emulator, client_for, fake_time, caplog, faults):
    server = make_emulator(faults=FaultPlan.parse("hang=2"), clock=fake_time)
    client = client_for(server, read_timeout=0.3, retry=EMULATOR_RETRY)
    server.app.faults.push(*faults)
    with caplog.at_level(logging.WARNING, logger="connector.client"):
        categories = client.result("crm.category.list", {"entityTypeId": 2})
    assert [c["id"] for c in categories["categories"]] == [0]
    assert server.stats()["requests_total"] == len(faults) + 1
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == len(faults)


@pytest.mark.parametrize(
    ("fault", "raised", "applied"),
    [
        ("5xx", errors.ServerError, False),
        ("html", errors.ServerError, False),
        ("reset", errors.TransportError, False),
        ("timeout", errors.TransportError, False),
        ("cut", errors.BadReplyError, True),  # the deal WAS created: this is why a write is not repeated
    ],
    ids=["500", "html", "reset", "timeout", "cut"],
)
def test_writes_are_not_repeated_after_an_uncertain_failure(make_emulator, client_for, fake_time, fault, raised, applied):
    server = make_emulator(faults=FaultPlan.parse("hang=2"), clock=fake_time)
    client = client_for(server, read_timeout=0.3, retry=EMULATOR_RETRY)
    server.app.faults.push(fault)
    with pytest.raises(raised):
        client.call("crm.deal.add", {"fields": {"TITLE": "Сделка"}})
    assert server.stats()["requests_total"] == 1
    assert len(server.portal.records["deal"]) == (1 if applied else 0)


def test_a_write_refused_by_the_rate_limit_is_repeated_and_applied_once(make_emulator, client_for, fake_time):
    server = make_emulator(rate=1.0, burst=1.0, clock=fake_time)
    client = client_for(server, retry=EMULATOR_RETRY)  # our own bucket is generous: the portal's refuses
    client.call("crm.deal.add", {"fields": {"TITLE": "первая"}})
    client.call("crm.deal.add", {"fields": {"TITLE": "вторая"}})
    stats = server.stats()
    assert stats["rejected_503"] >= 1
    assert sorted(d["TITLE"] for d in server.portal.records["deal"].values()) == ["вторая", "первая"]


def test_a_write_blocked_by_operating_time_waits_for_the_reset_and_is_applied_once(make_emulator, client_for, fake_time):
    server = make_emulator(operating_budget=0.001, clock=fake_time)
    client = client_for(server, retry=EMULATOR_RETRY)
    client.call("crm.deal.add", {"fields": {"TITLE": "первая"}})  # crosses the budget, still runs
    client.call("crm.deal.add", {"fields": {"TITLE": "вторая"}})  # 429, then after the reset: runs
    assert server.stats()["rejected_429"] == 1
    assert len(server.portal.records["deal"]) == 2
    assert max(fake_time.sleeps) >= 590  # waited for the oldest bucket to drop out (10 minutes)


def test_a_429_blocks_only_that_method(make_emulator, client_for, fake_time):
    server = make_emulator(operating_budget=0.001, clock=fake_time)
    client = client_for(server, retry=RetryPolicy(attempts=1))
    client.call("crm.category.list", {"entityTypeId": 2})  # crosses the budget
    with pytest.raises(errors.OperationTimeLimit) as info:
        client.call("crm.category.list", {"entityTypeId": 2})
    assert info.value.retry_at and info.value.retry_at > fake_time()
    before = len(fake_time.sleeps)
    assert client.result("crm.status.list", {"filter": {"ENTITY_ID": "STATUS"}})  # another method: no wait
    assert len(fake_time.sleeps) == before
    client.retry = EMULATOR_RETRY
    client.call("crm.category.list", {"entityTypeId": 2})  # that method: waits until the reset first
    assert fake_time.sleeps[before:] and fake_time.sleeps[before] >= 590
    assert server.stats()["rejected_429"] == 1  # the wait came from our ledger, not from another 429


@pytest.mark.parametrize(
    ("method", "params", "raised"),
    [
        ("crm.nothing.here", {}, errors.MethodNotFound),
        ("crm.category.get", {"entityTypeId": 2, "id": 999}, errors.NotFound),
        ("crm.stagehistory.list", {"entityTypeId": 2, "filter": {"NOPE": 1}}, errors.BadRequest),
        ("event.bind", {"event": "ONCRMDEALADD", "handler": "https://example.ru/h"}, errors.AuthFailed),
    ],
    ids=["unknown-method", "not-found", "bad-filter", "event-needs-oauth"],
)
def test_fatal_emulator_errors_are_raised_at_once(emulator, client_for, method, params, raised):
    client = client_for(emulator)
    with pytest.raises(raised):
        client.call(method, params)
    assert emulator.stats()["requests_total"] == 1


def test_wrong_webhook_code_is_fatal(emulator, client_for):
    client = client_for(emulator.url.replace("/rest/1/", "/rest/1/x").rstrip("/") + "/")
    with pytest.raises(errors.AuthFailed):
        client.call("profile")


def test_expired_token_from_the_emulator_is_refreshed(make_emulator, client_for):
    server = make_emulator(oauth=True)
    server.app.expire_tokens()
    data = server.oauth
    auth = OAuthAuth(data["client_id"], data["client_secret"], Tokens.from_reply(data))
    client = client_for(server, auth=auth)
    assert client.result("crm.category.list", {"entityTypeId": 2})["categories"]
    assert server.stats()["token_refreshes"] == 1
    assert client.counters["expired_token"] == 1
