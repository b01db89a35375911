"""The transport seam: HTTP on a pooled session, and the emulator in-process through its WSGI callable."""

from __future__ import annotations

import json
import logging

import pytest
import responses

from connector import errors
from connector.auth import OAuthAuth, Tokens, WebhookAuth
from connector.emulator.app import EmulatorApp
from connector.transport import HttpTransport, WsgiTransport

from tests.conftest import make_client


@pytest.fixture
def in_process(emulator_app):
    """A webhook auth whose host does not exist: only the in-process transport can reach it."""
    code = next(iter(emulator_app.webhooks))
    return WsgiTransport(emulator_app), WebhookAuth(f"http://portal.invalid/rest/1/{code}/")


def test_wsgi_transport_speaks_the_same_protocol(in_process, emulator_app):
    transport, auth = in_process
    reply = transport.send("crm.deal.add", {"fields": {"TITLE": "Сделка «Ромашка»"}}, auth)
    deal_id = reply.result
    reply = transport.send("crm.deal.list", {"filter": {"ID": deal_id}, "select": ["ID", "TITLE"], "start": -1}, auth)
    assert reply.result == [{"ID": str(deal_id), "TITLE": "Сделка «Ромашка»"}]
    assert reply.total == 0 and reply.next is None and "operating" in reply.time
    assert emulator_app.stats()["requests_total"] == 2


@pytest.mark.parametrize(
    ("fault", "raised"),
    [("reset", errors.TransportError), ("timeout", errors.TransportError), ("cut", errors.BadReplyError), ("html", errors.ServerError), ("5xx", errors.ServerError)],
)
def test_wsgi_transport_turns_app_faults_into_transport_errors(in_process, emulator_app, fault, raised):
    transport, auth = in_process
    emulator_app.faults.push(fault)
    with pytest.raises(raised):
        transport.send("crm.category.list", {"entityTypeId": 2}, auth)
    assert transport.send("crm.category.list", {"entityTypeId": 2}, auth).result["categories"]


def test_a_client_on_the_wsgi_transport_retries_and_refreshes(portal, fake_time):
    app = EmulatorApp(portal, secret="inproc-code", rate=1e6, burst=1e6)
    tokens = app.add_oauth_client("local.app", "inproc-secret")
    app.expire_tokens()
    auth = OAuthAuth("local.app", "inproc-secret", Tokens.from_reply({**tokens, "client_endpoint": "http://portal.invalid/rest/", "server_endpoint": "http://portal.invalid/rest/"}))
    client = make_client(WsgiTransport(app), auth, fake_time)
    app.faults.push("reset")
    assert client.result("crm.category.list", {"entityTypeId": 2})["categories"][0]["id"] == 0
    assert app.stats()["token_refreshes"] == 1 and auth.generation == 1


def test_http_transport_reuses_one_connection(emulator, caplog):
    transport = HttpTransport()
    auth = WebhookAuth(emulator.url)
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        for _ in range(5):
            transport.send("crm.category.list", {"entityTypeId": 2}, auth)
    opened = [r for r in caplog.records if "Starting new HTTP connection" in r.getMessage()]
    assert len(opened) == 1
    transport.close()


@responses.activate
def test_http_transport_posts_utf8_json_and_does_not_follow_redirects_itself():
    url = "https://portal.example.ru/rest/1/c0de1234/crm.deal.add"
    responses.post(url, json={"result": 5})
    transport = HttpTransport(connect_timeout=3, read_timeout=70)
    assert transport.timeout == (3, 70)
    transport.send("crm.deal.add", {"fields": {"TITLE": "Ёлка", "OPPORTUNITY": 10.5}}, WebhookAuth("https://portal.example.ru/rest/1/c0de1234/"))
    request = responses.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body.decode("utf-8")) == {"fields": {"TITLE": "Ёлка", "OPPORTUNITY": 10.5}}
    assert "Ёлка".encode() in request.body


@responses.activate
def test_a_redirect_to_the_same_host_is_a_bad_reply():
    url = "https://portal.example.ru/rest/1/c0de1234/profile"
    responses.post(url, status=302, headers={"Location": "/login/"})
    with pytest.raises(errors.BadReplyError):
        HttpTransport().send("profile", {}, WebhookAuth("https://portal.example.ru/rest/1/c0de1234/"))


def test_connect_failure_names_no_url():
    transport = HttpTransport(connect_timeout=2)
    with pytest.raises(errors.ConnectFailed) as info:
        transport.send("profile", {}, WebhookAuth("http://127.0.0.1:9/rest/1/c0de-secret-42/"))
    assert "c0de-secret-42" not in str(info.value) and "127.0.0.1" not in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None
