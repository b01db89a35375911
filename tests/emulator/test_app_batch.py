"""batch: up to 50 commands, halt, $result references, PHP-shaped reply, always HTTP 200."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
import requests

from connector.emulator.registry import ApiError, Result
from connector.encoding import encode_query
from tests.conftest import WEBHOOK_CODE

HOOK = f"/rest/1/{WEBHOOK_CODE}"
# the shape of a real batch reply (bitrix24-rest.md section 5): key order and the time block of a command
PARTS = ["result", "result_error", "result_total", "result_next", "result_time"]
TIME_KEYS = {"start", "finish", "duration", "processing", "date_start", "date_finish"}


@pytest.fixture
def methods(register_method: Any) -> None:
    """test.rows (list of 60 rows, paged), test.items (items wrapper), test.echo, test.fail."""

    def rows(call: Any) -> Result:
        start = int(call.param("start") or 0)
        after = int((call.param("filter") or {}).get(">ID", 0) or 0)
        data = [{"ID": str(i), "TITLE": f"row {i}"} for i in range(after + 1, 61)]
        page = data[max(start, 0):max(start, 0) + 50]
        if start == -1:
            return Result(page, total=0)
        return Result(page, total=len(data), next=start + 50 if start + 50 < len(data) else None)

    def items(call: Any) -> Result:
        return Result({"items": [{"id": 7, "stageId": "NEW"}, {"id": 9, "stageId": "WON"}]}, total=2)

    def fail(call: Any) -> Any:
        raise ApiError("", "Not found")

    register_method("test.rows", rows)
    register_method("test.items", items)
    register_method("test.echo", lambda call: call.params)
    register_method("test.fail", fail)


def batch(app: Any, payload: dict[str, Any]) -> Any:
    reply = app.request("POST", f"{HOOK}/batch", body=json.dumps(payload), content_type="application/json")
    assert reply.status == 200
    return reply.json()


def test_reply_shape_matches_the_real_portal(emulator_app: Any, methods: None) -> None:
    body = batch(emulator_app, {"cmd": {"one": "test.echo?x=1", "list": "test.rows"}})
    assert list(body) == ["result", "time"]
    assert list(body["result"]) == PARTS
    assert body["result"]["result_error"] == []
    assert body["result"]["result_total"] == {"list": 60}
    assert body["result"]["result_next"] == {"list": 50}
    assert set(body["result"]["result_time"]) == {"one", "list"}
    assert TIME_KEYS <= set(body["result"]["result_time"]["one"])


def test_halt_0_runs_everything_and_collects_errors(emulator_app: Any, methods: None) -> None:
    body = batch(emulator_app, {"halt": 0, "cmd": {"a": "test.fail", "b": "test.echo?x=2", "c": "no.such.method"}})
    result = body["result"]
    assert result["result"] == {"b": {"x": "2"}}
    assert result["result_error"] == {
        "a": {"error": "", "error_description": "Not found"},
        "c": {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
    }


@pytest.mark.parametrize("halt", [1, True, "1", "true"])
def test_halt_stops_at_the_first_failing_command(emulator_app: Any, methods: None, halt: Any) -> None:
    body = batch(emulator_app, {"halt": halt, "cmd": {"a": "test.echo?x=1", "b": "test.fail", "c": "test.echo?x=3"}})
    assert body["result"]["result"] == {"a": {"x": "1"}}
    assert list(body["result"]["result_error"]) == ["b"]


def test_all_failed_gives_php_empty_arrays_like_the_real_reply(emulator_app: Any, methods: None) -> None:
    body = batch(emulator_app, {"cmd": ["test.fail", "test.fail"]})
    assert body["result"]["result"] == []
    assert body["result"]["result_error"] == [{"error": "", "error_description": "Not found"}] * 2
    assert body["result"]["result_total"] == body["result"]["result_next"] == body["result"]["result_time"] == []


def test_array_cmd_gives_lists(emulator_app: Any, methods: None) -> None:
    body = batch(emulator_app, {"cmd": ["test.echo?x=0", "test.echo?x=1"]})
    assert body["result"]["result"] == [{"x": "0"}, {"x": "1"}]
    assert isinstance(body["result"]["result_time"], list)


def test_partial_array_cmd_keeps_numeric_keys_as_object(emulator_app: Any, methods: None) -> None:
    body = batch(emulator_app, {"cmd": ["test.fail", "test.echo?x=1"]})
    assert body["result"]["result"] == {"1": {"x": "1"}}
    assert body["result"]["result_error"] == [{"error": "", "error_description": "Not found"}]


def test_references_into_lists_items_and_totals(emulator_app: Any, methods: None) -> None:
    cmd = {
        "c0": "test.rows?start=-1",
        "c1": "test.rows?start=-1&filter[>ID]=$result[c0][49][ID]",
        "wrapped": "test.items",
        "echo": "test.echo?first=$result[wrapped][items][1][id]&total=$result_total[c0]"
                "&text=id+$result[c0][0][ID]+of+$result[c0][0][TITLE]&missing=$result[nope][1]&row=$result[c0][0]",
    }
    result = batch(emulator_app, {"halt": 1, "cmd": cmd})["result"]
    assert [r["ID"] for r in result["result"]["c1"]] == [str(i) for i in range(51, 61)]
    assert result["result"]["echo"] == {
        "first": 9, "total": 0, "text": "id 1 of row 1", "missing": "", "row": {"ID": "1", "TITLE": "row 1"},
    }


def test_percent_encoded_references_are_decoded_before_substitution(emulator_app: Any, methods: None) -> None:
    inner = encode_query({"filter": {">ID": "$result[c0][49][ID]"}, "start": -1})
    assert "%24result%5Bc0%5D" in inner
    result = batch(emulator_app, {"cmd": {"c0": "test.rows?start=-1", "c1": f"test.rows?{inner}"}})["result"]
    assert result["result"]["c1"][0]["ID"] == "51"


def test_double_encoded_form_request_as_in_the_docs(emulator: Any, methods: None) -> None:
    """cmd values inside a form body are encoded twice: %2524result%255B..."""
    inner = "test.echo?ID=" + quote("$result[get][x]", safe="")
    body = "halt=0&cmd[get]=" + quote("test.echo?x=42", safe="") + "&cmd[next]=" + quote(inner, safe="")
    reply = requests.post(emulator.url + "batch", data=body,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert reply.status_code == 200
    assert reply.json()["result"]["result"]["next"] == {"ID": "42"}


def test_more_than_50_commands_is_refused(emulator_app: Any, methods: None) -> None:
    reply = emulator_app.request(
        "POST", f"{HOOK}/batch", body=json.dumps({"cmd": ["test.echo"] * 51}), content_type="application/json"
    )
    assert (reply.status, reply.json()["error"]) == (400, "ERROR_BATCH_LENGTH_EXCEEDED")
    assert emulator_app.stats()["batch_commands_total"] == 0


def test_exactly_50_commands_run(emulator_app: Any, methods: None) -> None:
    body = batch(emulator_app, {"cmd": [f"test.echo?i={i}" for i in range(50)]})
    assert [r["i"] for r in body["result"]["result"]] == [str(i) for i in range(50)]


def test_batch_inside_batch_is_refused_per_command(emulator_app: Any, methods: None) -> None:
    body = batch(emulator_app, {"cmd": {"inner": "batch?cmd[x]=test.echo", "ok": "test.echo?y=1"}})
    assert body["result"]["result_error"] == {
        "inner": {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED", "error_description": "Method is not allowed for batch usage"}
    }
    assert body["result"]["result"] == {"ok": {"y": "1"}}


def test_commands_run_with_the_batch_auth(emulator_app: Any, methods: None, register_method: Any) -> None:
    seen: list[tuple[int, str]] = []

    def whoami(call: Any) -> bool:
        seen.append((call.user_id, call.auth))
        return True

    register_method("test.whoami", whoami)
    body = batch(emulator_app, {"cmd": {"w": "test.whoami?auth=stolen", "e": "event.get"}})
    assert seen == [(1, "webhook")]
    assert body["result"]["result_error"]["e"]["error"] == "WRONG_AUTH_TYPE"


def test_empty_batch(emulator_app: Any) -> None:
    body = batch(emulator_app, {})
    assert body["result"] == {"result": [], "result_error": [], "result_total": [], "result_next": [], "result_time": []}


def test_empty_objects_inside_command_results_are_php_arrays(emulator_app: Any, register_method: Any) -> None:
    # PHP prints an empty associative array as []: a plain call and a batched one must agree
    register_method("test.empty", lambda call: {"TIMESTAMP_X": {}, "ID": "1"})
    plain = emulator_app.request("POST", f"{HOOK}/test.empty", body="{}", content_type="application/json").json()
    batched = batch(emulator_app, {"cmd": {"e": "test.empty"}})["result"]["result"]["e"]
    assert plain["result"] == {"TIMESTAMP_X": [], "ID": "1"}
    assert batched == plain["result"]
