"""The emulator's wire protocol: routing, parameter formats, auth errors, envelopes and stats."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest
import requests

from connector.emulator.registry import ApiError, Result, invoke
from tests.conftest import WEBHOOK_CODE

HOOK = f"/rest/1/{WEBHOOK_CODE}"


@pytest.fixture
def echo(register_method: Any) -> list[dict[str, Any]]:
    """``test.echo`` returns its parameters; every call is recorded."""
    seen: list[dict[str, Any]] = []

    def handler(call: Any) -> Any:
        seen.append({"params": call.params, "user_id": call.user_id, "auth": call.auth})
        return call.params

    register_method("test.echo", handler)
    return seen


def test_get_query_with_nested_keys(emulator_app: Any, echo: list) -> None:
    reply = emulator_app.request("GET", f"{HOOK}/test.echo?filter%5B%3EID%5D=5&filter[@STAGE_ID][]=NEW&select[]=ID&select[]=TITLE&start=-1")
    assert reply.status == 200
    assert reply.json()["result"] == {
        "filter": {">ID": "5", "@STAGE_ID": ["NEW"]},
        "select": ["ID", "TITLE"],
        "start": "-1",
    }


def test_form_body_with_nested_keys_and_cyrillic(emulator_app: Any, echo: list) -> None:
    body = "fields%5BTITLE%5D=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0&fields[PHONE][0][VALUE]=%2B7999&fields[PHONE][0][VALUE_TYPE]=WORK"
    reply = emulator_app.request("POST", f"{HOOK}/test.echo", body=body, content_type="application/x-www-form-urlencoded")
    assert reply.json()["result"] == {"fields": {"TITLE": "Сделка", "PHONE": [{"VALUE": "+7999", "VALUE_TYPE": "WORK"}]}}


def test_json_body_keeps_types(emulator_app: Any, echo: list) -> None:
    body = json.dumps({"filter": {">ID": 5}, "start": -1, "flag": True, "order": {"ID": "ASC"}})
    reply = emulator_app.request("POST", f"{HOOK}/test.echo", body=body, content_type="application/json; charset=utf-8")
    assert reply.json()["result"] == {"filter": {">ID": 5}, "start": -1, "flag": True, "order": {"ID": "ASC"}}


def test_body_overrides_query_like_php_request(emulator_app: Any, echo: list) -> None:
    reply = emulator_app.request("POST", f"{HOOK}/test.echo?a=query&b=query", body="b=body", content_type="application/x-www-form-urlencoded")
    assert reply.json()["result"] == {"a": "query", "b": "body"}


def test_multipart_form_over_http(emulator: Any, echo: list) -> None:
    files = {"fields[TITLE]": (None, "Компания"), "fields[LOGO]": ("logo.png", b"\x89PNG")}
    reply = requests.post(emulator.url + "test.echo", files=files, timeout=10)
    assert reply.status_code == 200
    assert reply.json()["result"] == {"fields": {"TITLE": "Компания", "LOGO": ["logo.png", "iVBORw=="]}}


def test_invalid_json_body_is_a_400(emulator_app: Any, echo: list) -> None:
    reply = emulator_app.request("POST", f"{HOOK}/test.echo", body="{nope", content_type="application/json")
    assert reply.status == 400
    assert reply.json()["error"] == "INVALID_REQUEST"


@pytest.mark.parametrize("suffix", ["test.echo", "test.echo.json", "test.echo/", "test.echo.json/", "TEST.Echo"])
def test_webhook_path_variants(emulator_app: Any, echo: list, suffix: str) -> None:
    reply = emulator_app.request("GET", f"{HOOK}/{suffix}?x=1")
    assert reply.status == 200
    assert reply.json()["result"] == {"x": "1"}
    assert emulator_app.stats()["by_method"] == {"test.echo": 1}


@pytest.mark.parametrize(
    "path, status, code, description",
    [
        (f"/rest/1/wrong-code/test.echo", 401, "NO_AUTH_FOUND", "Wrong authorization data"),
        (f"/rest/2/{WEBHOOK_CODE}/test.echo", 401, "NO_AUTH_FOUND", "Wrong authorization data"),
        ("/rest/test.echo", 401, "NO_AUTH_FOUND", "Wrong authorization data"),
        ("/rest/test.echo?auth=unknown-token", 401, "NO_AUTH_FOUND", "Wrong authorization data"),
        (f"{HOOK}/crm.nothing.here", 404, "ERROR_METHOD_NOT_FOUND", "Method not found!"),
        (f"{HOOK}/event.get", 403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method"),
    ],
    ids=["wrong-code", "wrong-user", "oauth-without-token", "unknown-token", "unknown-method", "event-with-webhook"],
)
def test_error_statuses(emulator_app: Any, echo: list, path: str, status: int, code: str, description: str) -> None:
    reply = emulator_app.request("POST", path)
    assert (reply.status, reply.json()) == (status, {"error": code, "error_description": description})
    assert echo == []


def test_handler_errors_keep_their_status_and_empty_code(emulator_app: Any, register_method: Any) -> None:
    def fail(call: Any) -> Any:
        raise ApiError("", "ID is not defined or invalid.")

    register_method("test.fail", fail)
    reply = emulator_app.request("GET", f"{HOOK}/test.fail")
    assert (reply.status, reply.json()) == (400, {"error": "", "error_description": "ID is not defined or invalid."})


def test_unexpected_exception_is_a_logged_500(emulator_app: Any, register_method: Any, caplog: Any) -> None:
    def crash(call: Any) -> Any:
        raise RuntimeError("boom in handler")

    register_method("test.crash", crash)
    with caplog.at_level(logging.ERROR, logger="connector.emulator.app"):
        reply = emulator_app.request("GET", f"{HOOK}/test.crash")
    assert (reply.status, reply.json()["error"]) == (500, "INTERNAL_SERVER_ERROR")
    assert "boom in handler" in caplog.text
    assert WEBHOOK_CODE not in caplog.text


def test_success_envelope_shape(emulator_app: Any, register_method: Any) -> None:
    register_method("test.page", lambda call: Result([{"ID": "1"}], total=120, next=50))
    register_method("test.empty", lambda call: {})
    body = emulator_app.request("GET", f"{HOOK}/test.page").json()
    assert list(body) == ["result", "next", "total", "time"]
    assert set(body["time"]) == {
        "start", "finish", "duration", "processing", "date_start", "date_finish", "operating", "operating_reset_at"
    }
    assert body["time"]["date_start"].endswith("+03:00")
    assert isinstance(body["time"]["operating_reset_at"], int)
    assert emulator_app.request("GET", f"{HOOK}/test.empty").json()["result"] == []


def test_portal_offset_is_used_in_time_block(make_emulator: Any) -> None:
    from connector.emulator.state import Portal

    app = make_emulator(Portal("+05:00"), http=False)
    body = app.request("POST", f"{HOOK}/batch").json()
    assert body["time"]["date_finish"].endswith("+05:00")


def test_unknown_path_outside_rest(emulator_app: Any) -> None:
    assert emulator_app.request("GET", "/index.php").status == 404


def test_stats_count_requests_methods_writes_and_batch(emulator: Any, register_method: Any) -> None:
    register_method("test.write", lambda call: True)
    register_method("test.echo.get", lambda call: call.params)  # a reader: its last part is a read verb
    requests.get(emulator.url + "test.echo.get", timeout=10)
    requests.get(emulator.url + "test.write", timeout=10)
    requests.get(emulator.url + "nope.nope", timeout=10)
    cmd = {"a": "test.write", "b": "test.echo.get?x=1", "c": "test.write"}
    requests.post(emulator.url + "batch", json={"cmd": cmd}, timeout=10)
    stats = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=10).json()
    assert stats["requests_total"] == 4
    assert stats["by_method"] == {"test.echo.get": 2, "test.write": 3, "nope.nope": 1, "batch": 1}
    assert stats["writes_total"] == 3
    assert stats["batch_commands_total"] == 3
    assert stats["rejected_503"] == stats["rejected_429"] == 0
    assert emulator.stats() == stats

    requests.post(f"{emulator.base_url}/_emulator/reset-stats", timeout=10)
    assert emulator.stats()["requests_total"] == 0


def test_failed_write_is_not_counted_as_write(emulator_app: Any, register_method: Any) -> None:
    def refuse(call: Any) -> Any:
        raise ApiError("", "Not found")

    register_method("test.badwrite", refuse)
    emulator_app.request("GET", f"{HOOK}/test.badwrite")
    assert emulator_app.stats()["writes_total"] == 0


def test_wsgi_callable(emulator_app: Any, echo: list) -> None:
    import io

    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list) -> None:
        captured.update(status=status, headers=dict(headers))

    body = b"select[]=ID"
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": f"{HOOK}/test.echo.json", "QUERY_STRING": "start=-1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body), "HTTP_HOST": "portal.test",
    }
    chunks = emulator_app(environ, start_response)
    assert captured["status"] == "200 OK"
    assert captured["headers"]["Content-Type"].startswith("application/json")
    assert json.loads(b"".join(chunks))["result"] == {"start": "-1", "select": ["ID"]}


def test_server_repr_and_logs_hide_the_webhook_code(emulator: Any, echo: list, caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG, logger="connector"):
        requests.get(emulator.url + "test.echo", timeout=10)
        requests.get(emulator.url + "nope", timeout=10)
    server_lines = [r.getMessage() for r in caplog.records if r.name.startswith("connector")]
    assert any("test.echo" in line for line in server_lines)  # the server does log the request
    assert not any(WEBHOOK_CODE in line for line in server_lines)
    assert WEBHOOK_CODE not in repr(emulator)


def test_keep_alive_connection_is_reused(emulator: Any, echo: list) -> None:
    with requests.Session() as session:
        first = session.get(emulator.url + "test.echo", timeout=10, stream=False)
        second = session.get(emulator.url + "test.echo", timeout=10)
        assert first.headers.get("Connection", "").lower() != "close"
        assert second.status_code == 200
    assert emulator.stats()["by_method"]["test.echo"] == 2


def test_in_process_invoke_of_batch(portal: Any, echo: list) -> None:
    reply = invoke(portal, "batch", {"cmd": {"one": "test.echo?x=1", "two": "test.echo?y=$result[one][x]"}})
    assert reply["result"] == {"one": {"x": "1"}, "two": {"y": "1"}}


def test_webhook_of_another_user(make_emulator: Any, register_method: Any) -> None:
    register_method("test.whoami", lambda call: call.user_id)
    emulator = make_emulator(user_id=7)
    assert "/rest/7/" in emulator.url
    assert requests.get(emulator.url + "test.whoami", timeout=10).json()["result"] == 7
    wrong_user = emulator.url.replace("/rest/7/", "/rest/1/")
    assert requests.get(wrong_user + "test.whoami", timeout=10).status_code == 401


@pytest.mark.parametrize("path", ["/rest/1/{code}/", "/rest/1/{code}", "/rest/1/{code}/?auth=x", "/rest/api/1/{code}/crm.deal.list"])
def test_paths_without_a_method_never_log_the_code(emulator: Any, caplog: Any, path: str) -> None:
    with caplog.at_level(logging.DEBUG, logger="connector"):
        reply = requests.get(emulator.base_url + path.format(code=WEBHOOK_CODE), timeout=10)
    assert reply.status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("connector")]
    assert lines and not any(WEBHOOK_CODE in line for line in lines)


def _raw(emulator: Any, data: bytes) -> bytes:
    with socket.create_connection((emulator.host, emulator.port), timeout=10) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def test_malformed_requests_get_400_and_no_secret_in_logs(emulator: Any, caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG, logger="connector"):
        bad_line = _raw(emulator, f"GET /rest/1/{WEBHOOK_CODE}/x HTTP/1.1 extra\r\n\r\n".encode())
        bad_length = _raw(emulator, f"POST /rest/1/{WEBHOOK_CODE}/user.get HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".encode())
    assert bad_line.startswith(b"HTTP/1.") and b" 400 " in bad_line.split(b"\r\n", 1)[0]
    assert b" 400 " in bad_length.split(b"\r\n", 1)[0]
    assert not any(WEBHOOK_CODE in r.getMessage() for r in caplog.records)
