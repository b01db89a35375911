"""Arguments at the client's boundary: method names that could reach elsewhere in the URL, bad IDs and
parameters are refused before any request; and the handler-function transport the unit tests use."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import errors
from connector.auth import OAuthAuth, Tokens, WebhookAuth
from connector.catalog import InvalidMethodName, check_method
from connector.encoding import ParamError
from connector.envelope import Reply
from connector.transport import MockTransport, Request

BAD_NAMES = [
    ("dot-dot", "crm..deal", "'..' in it"),
    ("parent", "../profile", "'/' at position 3"),
    ("slash", "crm.deal.list/../../x", "'/' at position 14"),
    ("query", "profile?auth=x", "'?' at position 8"),
    ("fragment", "profile#x", "'#' at position 8"),
    ("percent", "crm%2Edeal", "'%' at position 4"),
    ("space", "crm.deal list", "' ' at position 9"),
    ("newline", "profile\n", "'\\n' at position 8"),
    ("unicode", "сrm.deal.list", "'с' at position 1"),
    ("empty", "", "empty"),
    ("leading-dot", ".profile", "a dot at its start or end"),
    ("trailing-dot", "profile.", "a dot at its start or end"),
    ("too-long", "a" * 201, "longer than 200 characters"),
    ("not-text", 42, "a int, not text"),
    ("a-pasted-webhook", "https://portal.example.ru/rest/1/pasted0secret/crm.deal.list", "':' at position 6"),
]


def _never(request):
    raise AssertionError(f"no request may be sent, got {request}")


@pytest.mark.parametrize(("name", "reason"), [row[1:] for row in BAD_NAMES], ids=[row[0] for row in BAD_NAMES])
@pytest.mark.parametrize("operation", ["call", "batch", "list_all", "count", "ids", "pages"])
def test_a_bad_method_name_is_refused_before_any_request(mock_client, operation, name, reason):
    client = mock_client(_never)
    with pytest.raises(InvalidMethodName) as info:
        if operation == "call":
            client.call(name)
        elif operation == "batch":
            client.batch([("profile", {}), (name, {})])
        elif operation == "list_all":
            list(client.list_all(name))
        elif operation == "count":
            client.count(name)
        elif operation == "ids":
            list(client.ids(name))
        else:
            list(client.pages(name))
    assert str(info.value) == f"not a Bitrix24 method name ({reason}): use letters, digits, _ and single dots, e.g. crm.deal.list"
    assert "pasted0secret" not in str(info.value)
    assert client.transport.requests == [] and client.counters["requests"] == 0


@pytest.mark.parametrize("name", ["crm.deal.list", "batch", "profile", "crm.deal.list.json", "tasks.flow.Flow.get", "user_get", "a1.b2"])
def test_good_method_names_pass(name):
    assert check_method(name) == name


def test_no_auth_object_builds_a_url_from_a_bad_name():
    tokens = Tokens.from_reply({"access_token": "acc-1234", "refresh_token": "ref-1234", "client_endpoint": "https://p.example.ru/rest/"})
    for auth in (WebhookAuth("https://p.example.ru/rest/1/code1234/"), OAuthAuth("app", "arg-test-client-secret-77", tokens)):
        with pytest.raises(InvalidMethodName):
            auth.target("../../oauth/token", {})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_a_checked_name_only_ever_holds_name_characters(name):
    try:
        checked = check_method(name)
    except InvalidMethodName:
        return
    assert all(c.isascii() and (c.isalnum() or c in "_.") for c in checked) and ".." not in checked


@pytest.mark.parametrize(
    ("call", "raised", "message"),
    [
        (lambda c: list(c.list_all("crm.deal.list", {">ID": "abc"})), ValueError, "filter '>ID' must be an integer ID, got 'abc'"),
        (lambda c: list(c.list_all("crm.deal.list", ceiling="top")), ValueError, "ceiling must be an integer ID, got 'top'"),
        (lambda c: list(c.list_all("crm.deal.list", strategy="offset")), ValueError, "strategy must be 'chain' or 'window'"),
        (lambda c: c.call("crm.deal.add", {"fields": {"OPPORTUNITY": float("nan")}}), ParamError, "cannot be sent as JSON"),
        (lambda c: c.call("crm.deal.add", {"fields": {"X": object()}}), ParamError, "cannot encode object as JSON"),
        (lambda c: c.batch([("crm.deal.add", {"fields": {"TITLE": _nested(100)}})]), ParamError, "nested deeper than 64 levels"),
    ],
    ids=["id-filter", "ceiling", "strategy", "nan", "object", "too-deep-for-a-command"],
)
def test_bad_arguments_are_clear_errors_before_any_request(mock_client, call, raised, message):
    client = mock_client(_never)
    with pytest.raises(raised, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(client)
    assert client.transport.requests == []


def _nested(levels):
    value: object = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


# ---------------------------------------------------------------- MockTransport


def test_mock_transport_hands_the_handler_what_the_portal_would_decode(mock_client):
    seen: list[Request] = []

    def handler(request):
        seen.append(request)
        return {"result": {"ID": "5"}, "total": "1", "time": {"operating": 0.5}}

    client = mock_client(handler)
    reply = client.call("crm.deal.get", {"id": 5, "fields": {"OPPORTUNITY": Decimal("10.50")}})
    assert reply == Reply({"ID": "5"}, total=1, time={"operating": 0.5})
    (request,) = seen
    assert request.method == "crm.deal.get" and request.params == {"id": 5, "fields": {"OPPORTUNITY": "10.50"}}
    assert request.url.endswith("/rest/1/mockwebhook0code/crm.deal.get") and request.timeout == pytest.approx(900)
    assert "mockwebhook0code" not in repr(request)
    assert client.ledger.operating("crm.deal.get") == 0.5


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (Reply(7), 7),
        ({"result": 7}, 7),
        ((200, '{"result": 7}'), 7),
        ((200, b'{"result": 7}'), 7),
        ((404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}), errors.MethodNotFound),
        ((502, "<html>Bad Gateway</html>"), errors.ServerError),
        (errors.ConnectFailed("", "refused", 0, "crm.deal.add"), errors.ConnectFailed),
    ],
    ids=["reply", "body", "text", "bytes", "error-envelope", "html", "raised"],
)
def test_mock_transport_answers(answer, outcome):
    def handler(request):
        if isinstance(answer, Exception):
            raise answer
        return answer

    transport = MockTransport(handler)
    auth = WebhookAuth("https://p.example.ru/rest/1/code1234/")
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            transport.send("crm.deal.add", {}, auth)
    else:
        assert transport.send("crm.deal.add", {}, auth).result == outcome


def test_mock_transport_serves_the_token_endpoint(mock_client):
    tokens = Tokens.from_reply({"access_token": "acc-old-1", "refresh_token": "ref-old-1", "client_endpoint": "https://p.example.ru/rest/"})
    auth = OAuthAuth("local.app", "app-secret-1", tokens)

    def handler(request):
        if request.method == "oauth/token":
            assert request.params["refresh_token"] == "ref-old-1" and request.url == "https://oauth.bitrix.info/oauth/token/"
            return {"access_token": "acc-new-1", "refresh_token": "ref-new-1"}
        if request.params["auth"] == "acc-old-1":
            return 401, {"error": "expired_token", "error_description": "The access token provided has expired."}
        return {"result": {"ID": "1"}}

    client = mock_client(handler, auth=auth)
    assert client.result("profile") == {"ID": "1"}
    assert [r.method for r in client.transport.requests] == ["profile", "oauth/token", "profile"]
