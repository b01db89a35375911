"""OAuth mode (auth=TOKEN, expiry, the token endpoint) and the event.* methods that need it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from connector.emulator.methods.events import KNOWN_EVENTS
from tests.conftest import OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, WEBHOOK_CODE

HOOK = f"/rest/1/{WEBHOOK_CODE}"
# keys of the real refresh reply (bitrix24-rest.md 1.2)
TOKEN_REPLY_KEYS = {
    "access_token", "client_endpoint", "domain", "expires", "expires_in", "member_id", "refresh_token",
    "scope", "server_endpoint", "status", "user_id",
}


@pytest.fixture
def whoami(register_method: Any) -> None:
    register_method("test.whoami", lambda call: {"user": call.user_id, "auth": call.auth})


@pytest.fixture
def app(make_emulator: Any, clock: Any, whoami: None) -> Any:
    return make_emulator(http=False, oauth=True, clock=clock, access_ttl=3600)


def call(app: Any, method: str, token: str, **params: Any) -> Any:
    return app.request("POST", f"/rest/{method}", body=json.dumps({**params, "auth": token}), content_type="application/json")


def refresh(app: Any, refresh_token: str, secret: str = OAUTH_CLIENT_SECRET) -> Any:
    query = f"grant_type=refresh_token&client_id={OAUTH_CLIENT_ID}&client_secret={secret}&refresh_token={refresh_token}"
    return app.request("GET", f"/oauth/token/?{query}")


def test_token_in_query_form_or_json(app: Any) -> None:
    token = app.oauth["access_token"]
    by_query = app.request("GET", f"/rest/test.whoami.json?auth={token}")
    by_form = app.request("POST", "/rest/test.whoami/", body=f"auth={token}", content_type="application/x-www-form-urlencoded")
    by_json = call(app, "test.whoami", token)
    for reply in (by_query, by_form, by_json):
        assert (reply.status, reply.json()["result"]) == (200, {"user": 1, "auth": "oauth"})


def test_auth_parameter_is_not_passed_to_the_method(app: Any, register_method: Any) -> None:
    register_method("test.params", lambda call: call.params)
    assert call(app, "test.params", app.oauth["access_token"], x=1).json()["result"] == {"x": 1}


def test_expired_token_then_refresh(app: Any, clock: Any) -> None:
    old_access, old_refresh = app.oauth["access_token"], app.oauth["refresh_token"]
    clock.advance(3601)
    expired = call(app, "test.whoami", old_access)
    assert (expired.status, expired.json()) == (
        401, {"error": "expired_token", "error_description": "The access token provided has expired."}
    )

    reply = refresh(app, old_refresh)
    assert reply.status == 200
    tokens = reply.json()
    assert set(tokens) == TOKEN_REPLY_KEYS
    assert tokens["refresh_token"] != old_refresh and tokens["access_token"] != old_access
    assert tokens["expires_in"] == 3600 and tokens["expires"] == int(clock() + 3600)
    assert tokens["member_id"] == app.oauth["member_id"]
    assert call(app, "test.whoami", tokens["access_token"]).status == 200

    reused = refresh(app, old_refresh)  # a refresh token works once: the reply carries a new one
    assert (reused.status, reused.json()["error"]) == (400, "invalid_grant")
    assert refresh(app, tokens["refresh_token"]).status == 200
    assert app.stats()["token_refreshes"] == 2


def test_expire_tokens_helper(app: Any) -> None:
    app.expire_tokens()
    assert call(app, "test.whoami", app.oauth["access_token"]).json()["error"] == "expired_token"


@pytest.mark.parametrize(
    "query, error",
    [
        (f"grant_type=refresh_token&client_id={OAUTH_CLIENT_ID}&client_secret=wrong&refresh_token=R", "invalid_client"),
        ("grant_type=refresh_token&client_id=nobody&client_secret=x&refresh_token=R", "invalid_client"),
        (f"grant_type=refresh_token&client_id={OAUTH_CLIENT_ID}&client_secret={OAUTH_CLIENT_SECRET}&refresh_token=bogus", "invalid_grant"),
        (f"grant_type=password&client_id={OAUTH_CLIENT_ID}&client_secret={OAUTH_CLIENT_SECRET}", "invalid_request"),
    ],
    ids=["wrong-secret", "unknown-client", "unknown-refresh-token", "unsupported-grant"],
)
def test_token_endpoint_errors(app: Any, query: str, error: str) -> None:
    reply = app.request("GET", f"/oauth/token/?{query}")
    assert (reply.status, reply.json()["error"]) == (400, error)


def test_expired_refresh_token_is_invalid_grant(app: Any, clock: Any) -> None:
    clock.advance(181 * 86400)
    assert refresh(app, app.oauth["refresh_token"]).json()["error"] == "invalid_grant"


def test_authorization_code_grant(app: Any, clock: Any) -> None:
    code = app.authorization_code(OAUTH_CLIENT_ID)
    query = f"grant_type=authorization_code&client_id={OAUTH_CLIENT_ID}&client_secret={OAUTH_CLIENT_SECRET}&code={code}"
    reply = app.request("GET", f"/oauth/token/?{query}")
    assert reply.status == 200
    assert call(app, "test.whoami", reply.json()["access_token"]).status == 200
    assert app.request("GET", f"/oauth/token/?{query}").json()["error"] == "invalid_grant"  # one use
    late = app.authorization_code(OAUTH_CLIENT_ID)
    clock.advance(31)
    assert app.request("GET", f"/oauth/token/?{query.replace(code, late)}").json()["error"] == "invalid_grant"


def test_removed_app_gets_invalid_token(app: Any) -> None:
    app.remove_oauth_client(OAUTH_CLIENT_ID)
    reply = call(app, "test.whoami", app.oauth["access_token"])
    assert (reply.status, reply.json()["error"]) == (401, "invalid_token")


def test_refresh_over_http_names_the_emulator_endpoints(make_emulator: Any, whoami: None) -> None:
    emulator = make_emulator(oauth=True)
    emulator.app.expire_tokens()
    reply = requests.get(emulator.oauth["token_url"], params={
        "grant_type": "refresh_token", "client_id": OAUTH_CLIENT_ID, "client_secret": OAUTH_CLIENT_SECRET,
        "refresh_token": emulator.oauth["refresh_token"],
    }, timeout=10)
    tokens = reply.json()
    assert tokens["client_endpoint"] == emulator.oauth_url
    again = requests.post(tokens["client_endpoint"] + "test.whoami", json={"auth": tokens["access_token"]}, timeout=10)
    assert again.json()["result"]["auth"] == "oauth"


def test_refresh_over_https_names_https_endpoints(portal: Any, tmp_path: Any, whoami: None) -> None:
    from connector.emulator.app import EmulatorApp
    from connector.emulator.server import EmulatorServer
    from connector.emulator.tls import self_signed, server_context
    from tests.conftest import GENEROUS

    cert, key = self_signed(tmp_path)
    app = EmulatorApp(portal, **GENEROUS)
    tokens = app.add_oauth_client(OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET)
    with EmulatorServer(app, tls=server_context(cert, key)) as server:
        reply = requests.get(f"{server.base_url}/oauth/token/", verify=str(cert), timeout=10, params={
            "grant_type": "refresh_token", "client_id": OAUTH_CLIENT_ID, "client_secret": OAUTH_CLIENT_SECRET,
            "refresh_token": tokens["refresh_token"],
        })
        fresh = reply.json()
        assert fresh["client_endpoint"] == server.oauth_url == f"https://127.0.0.1:{server.port}/rest/"
        again = requests.post(fresh["client_endpoint"] + "test.whoami", json={"auth": fresh["access_token"]},
                              verify=str(cert), timeout=10)
        assert again.json()["result"]["auth"] == "oauth"


# ---------------------------------------------------------------- events


EVENT_METHODS = ["event.bind", "event.unbind", "event.get", "event.offline.get", "event.offline.clear",
                 "event.offline.error", "event.offline.list", "events"]


@pytest.mark.parametrize("method", EVENT_METHODS)
def test_event_methods_refuse_webhooks(app: Any, method: str) -> None:
    reply = app.request("POST", f"{HOOK}/{method}", body="event=ONCRMDEALADD", content_type="application/x-www-form-urlencoded")
    assert (reply.status, reply.json()["error"]) == (403, "WRONG_AUTH_TYPE")


def test_bind_get_unbind(app: Any) -> None:
    token = app.oauth["access_token"]
    handler = "http://127.0.0.1:9/handler/"
    assert call(app, "event.bind", token, event="ONCRMDEALADD", handler=handler).json()["result"] is True
    assert call(app, "event.bind", token, event="onCrmDealUpdate", handler=handler, auth_type=1).json()["result"] is True
    assert call(app, "event.bind", token, event="ONCRMDEALUPDATE", event_type="offline").json()["result"] is True
    listed = call(app, "event.get", token).json()["result"]
    assert listed == [
        {"event": "ONCRMDEALADD", "handler": handler, "auth_type": "0", "offline": 0},
        {"event": "ONCRMDEALUPDATE", "handler": handler, "auth_type": "1", "offline": 0},
        {"event": "ONCRMDEALUPDATE", "handler": "", "auth_type": "0", "offline": 1},
    ]
    assert call(app, "event.unbind", token, event="ONCRMDEALUPDATE", handler=handler).json()["result"] == {"count": 1}
    assert call(app, "event.unbind", token, event="ONCRMDEALUPDATE", handler=handler).json()["result"] == {"count": 0}
    assert call(app, "event.unbind", token, event="ONCRMDEALUPDATE", event_type="offline").json()["result"] == {"count": 1}
    assert len(call(app, "event.get", token).json()["result"]) == 1
    assert "ONCRMDEALMOVETOCATEGORY" in call(app, "events", token).json()["result"]


def test_bind_errors(app: Any) -> None:
    token = app.oauth["access_token"]
    unknown = call(app, "event.bind", token, event="ONSOMETHINGELSE", handler="http://127.0.0.1/")
    assert (unknown.status, unknown.json()) == (400, {"error": "ERROR_EVENT_NOT_FOUND", "error_description": "Event not found"})
    assert call(app, "event.bind", token, event="ONCRMDEALADD").status == 400  # online needs a handler


def _queue(app: Any, token: str, **params: Any) -> list[dict[str, Any]]:
    return call(app, "event.offline.list", token, **params).json()["result"]


def test_offline_queue_keeps_one_record_per_object(app: Any) -> None:
    token = app.oauth["access_token"]
    for event in ("ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE", "ONCRMLEADADD"):
        call(app, "event.bind", token, event=event, event_type="offline")
    portal = app.portal
    portal.emit("ONCRMDEALADD", {"ID": 5})
    portal.emit("ONCRMDEALUPDATE", {"ID": 6})
    for _ in range(1000):
        portal.emit("ONCRMDEALUPDATE", {"ID": 5})
    portal.emit("ONCRMLEADADD", {"ID": 5})  # another object with the same number
    portal.emit("ONCRMDEALDELETE", {"ID": 6})
    portal.emit("ONCRMCONTACTADD", {"ID": 1})  # not bound: not queued

    rows = _queue(app, token)
    assert [(r["EVENT_NAME"], r["EVENT_DATA"]["FIELDS"]["ID"]) for r in rows] == [
        ("ONCRMDEALUPDATE", 5), ("ONCRMLEADADD", 5), ("ONCRMDEALDELETE", 6)
    ]
    assert all(isinstance(r["ID"], str) and r["PROCESS_ID"] == "" and r["ERROR"] == "0" for r in rows)
    assert call(app, "event.offline.list", token).json()["total"] == 3
    assert _queue(app, token, filter={"EVENT_NAME": "ONCRMLEADADD"})[0]["EVENT_DATA"]["FIELDS"]["ID"] == 5


def test_offline_get_clear_and_reserve(app: Any) -> None:
    token = app.oauth["access_token"]
    call(app, "event.bind", token, event="ONCRMDEALUPDATE", event_type="offline")
    for deal in range(1, 8):
        app.portal.emit("ONCRMDEALUPDATE", {"ID": deal})

    taken = call(app, "event.offline.get", token, limit=2).json()["result"]  # clear=1 by default
    assert taken["process_id"] is None
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in taken["events"]] == [1, 2]
    assert set(taken["events"][0]) == {"ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL", "MESSAGE_ID"}
    assert len(_queue(app, token)) == 5

    reserved = call(app, "event.offline.get", token, limit=3, clear=0).json()["result"]
    process = reserved["process_id"]
    assert process and [e["EVENT_DATA"]["FIELDS"]["ID"] for e in reserved["events"]] == [3, 4, 5]
    other = call(app, "event.offline.get", token, clear=0).json()["result"]  # a parallel reader gets the rest
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in other["events"]] == [6, 7]
    assert {r["PROCESS_ID"] for r in _queue(app, token)} == {process, other["process_id"]}

    first_message = reserved["events"][0]["MESSAGE_ID"]
    assert call(app, "event.offline.error", token, process_id=process, message_id=[first_message]).json()["result"] is True
    assert call(app, "event.offline.clear", token, process_id=process).json()["result"] is True
    left = _queue(app, token)
    assert sorted(r["EVENT_DATA"]["FIELDS"]["ID"] for r in left) == [3, 6, 7]
    failed = call(app, "event.offline.get", token, error=1).json()["result"]["events"]
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in failed] == [3]
    assert call(app, "event.offline.clear", token).status == 400  # process_id is required


def test_offline_queue_is_split_by_auth_connector(app: Any) -> None:
    token = app.oauth["access_token"]
    call(app, "event.bind", token, event="ONCRMDEALADD", event_type="offline", auth_connector="mirror")
    app.portal.emit("ONCRMDEALADD", {"ID": 1})
    assert _queue(app, token) == []
    assert len(_queue(app, token, auth_connector="mirror")) == 1


def test_event_names_are_upper_case_crm_events() -> None:
    assert all(name == name.upper() and name.startswith("ON") for name in KNOWN_EVENTS)


def test_bad_limit_is_a_400_not_a_crash(app: Any) -> None:
    reply = call(app, "event.offline.get", app.oauth["access_token"], limit="many")
    assert (reply.status, reply.json()["error"]) == (400, "ERROR_ARGUMENT")
