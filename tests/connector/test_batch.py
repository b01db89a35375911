"""batch: packing any number of calls into requests of 50, results in order, per-command errors with names, halt."""

from __future__ import annotations

import pytest

from connector import errors
from connector.auth import WebhookAuth
from connector.catalog import is_write
from connector.encoding import command_text
from connector.envelope import BatchParts, Reply
from connector.transport import MockTransport

from tests.conftest import make_client


def _add(title):
    return ("crm.deal.add", {"fields": {"TITLE": title}})


def test_120_calls_go_in_three_requests_and_come_back_in_order(emulator, client_for):
    client = client_for(emulator)
    ids = client.batch([_add(f"Сделка {i}") for i in range(120)])
    assert emulator.stats()["requests_total"] == 3
    assert len(ids) == 120 and len(set(ids)) == 120
    deals = client.batch([("crm.deal.get", {"id": deal_id}) for deal_id in ids])
    assert [d["TITLE"] for d in deals] == [f"Сделка {i}" for i in range(120)]
    stats = emulator.stats()
    assert stats["requests_total"] == 6 and stats["batch_commands_total"] == 240


def test_named_calls_return_a_mapping(emulator, client_for):
    client = client_for(emulator)
    calls = {f"deal_{i}": _add(f"№{i}") for i in range(55)}
    calls["stages"] = ("crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}})
    result = client.batch(calls)
    assert list(result) == list(calls)
    assert result["stages"][0]["STATUS_ID"] == "NEW"


def test_per_command_errors_carry_the_command_name(emulator, client_for):
    client = client_for(emulator)
    real = client.result("crm.deal.add", {"fields": {"TITLE": "есть"}})
    calls = {"known": ("crm.deal.get", {"id": real}), "missing": ("crm.deal.get", {"id": 99999}), "bogus": ("crm.no.such", {})}
    out = client.batch(calls, collect=True)
    assert out["known"]["TITLE"] == "есть"
    assert isinstance(out["missing"], errors.BatchCommandError) and out["missing"].command == "missing"
    assert isinstance(out["missing"].error, errors.NotFound)
    assert out["bogus"].command == "bogus" and isinstance(out["bogus"].error, errors.MethodNotFound)
    assert "missing" in str(out["missing"])


def test_without_halt_everything_runs_then_the_first_error_is_raised(emulator, client_for):
    client = client_for(emulator)
    with pytest.raises(errors.BatchCommandError) as info:
        client.batch([("crm.deal.get", {"id": 99999}), _add("после ошибки")])
    assert info.value.command == "c0"
    assert [d["TITLE"] for d in emulator.portal.records["deal"].values()] == ["после ошибки"]


def test_halt_stops_at_the_first_error_and_sends_no_further_packet(emulator, client_for):
    client = client_for(emulator)
    calls = [_add("до"), ("crm.deal.get", {"id": 99999}), _add("не будет")] + [_add(f"x{i}") for i in range(60)]
    with pytest.raises(errors.BatchCommandError) as info:
        client.batch(calls, halt=True)
    assert info.value.command == "c1" and isinstance(info.value.error, errors.NotFound)
    assert [d["TITLE"] for d in emulator.portal.records["deal"].values()] == ["до"]
    assert emulator.stats()["requests_total"] == 1


def test_references_between_commands_of_one_packet(emulator, client_for):
    client = client_for(emulator)
    added, fetched = client.batch([_add("по ссылке"), ("crm.deal.get", {"id": "$result[c0]"})])
    assert fetched["ID"] == str(added) and fetched["TITLE"] == "по ссылке"


def test_a_command_blocked_by_operating_time_is_repeated_after_the_reset(make_emulator, client_for, fake_time):
    server = make_emulator(operating_budget=0.001, clock=fake_time)
    client = client_for(server)
    first, second = client.batch([("crm.category.list", {"entityTypeId": 2}), ("crm.category.list", {"entityTypeId": 2})])
    assert first == second and first["categories"][0]["id"] == 0
    assert server.stats()["rejected_429"] == 1
    assert max(fake_time.sleeps) >= 590


def test_a_write_inside_a_batch_is_not_repeated_after_a_server_error(emulator, client_for, register_method):
    from connector.emulator.registry import ApiError

    calls = []

    def flaky(call):
        calls.append(1)
        raise ApiError("INTERNAL_SERVER_ERROR", "Internal server error", 500)

    register_method("test.thing.add", flaky)  # an "add": the catalog counts it as a write
    client = client_for(emulator)
    out = client.batch([("test.thing.add", {"x": 1})], collect=True)
    assert isinstance(out[0].error, errors.ServerError)
    assert len(calls) == 1


def test_a_read_inside_a_batch_is_repeated_after_a_server_error(emulator, client_for, register_method):
    from connector.emulator.registry import ApiError

    calls = []

    def flaky(call):
        calls.append(1)
        if len(calls) == 1:
            raise ApiError("INTERNAL_SERVER_ERROR", "Internal server error", 500)
        return {"ok": True}

    register_method("test.thing.get", flaky)
    client = client_for(emulator)
    assert client.batch([("test.thing.get", {})]) == [{"ok": True}]
    assert len(calls) == 2


def test_batch_parts_read_php_quirks():
    reply = Reply(
        result={
            "result": [],
            "result_error": {"a": {"error": "insufficient_scope", "error_description": ""}},
            "result_total": [],
            "result_next": [],
            "result_time": [],
        }
    )
    parts = BatchParts.from_reply(reply)
    assert parts.results == {} and parts.errors["a"]["error"] == "insufficient_scope"
    listed = BatchParts.from_reply(Reply(result={"result": [{"ID": "1"}, {"ID": "2"}]}))
    assert listed.results == {"0": {"ID": "1"}, "1": {"ID": "2"}}


def test_command_text_encodes_like_php():
    text = command_text("crm.deal.list", {"filter": {">ID": "$result[p0][49][ID]"}, "select": ["ID"], "start": -1})
    assert text == "crm.deal.list?filter[%3EID]=%24result%5Bp0%5D%5B49%5D%5BID%5D&select[0]=ID&start=-1"
    assert command_text("server.time", None) == "server.time"


@pytest.mark.parametrize(
    ("method", "params", "write"),
    [
        ("crm.deal.list", None, False),
        ("crm.deal.get", None, False),
        ("crm.status.entity.types", None, False),
        ("user.get", None, False),
        ("profile", None, False),
        ("server.time", None, False),
        ("crm.deal.add", None, True),
        ("crm.deal.update", None, True),
        ("crm.status.delete", None, True),
        ("event.bind", None, True),
        ("event.offline.get", {}, True),
        ("event.offline.get", {"clear": 0}, False),
        ("batch", None, True),
    ],
)
def test_what_counts_as_a_write(method, params, write):
    assert is_write(method, params) is write


def _blocking(error_time=None, result_time=None, outer_time=None):
    """A MockTransport whose batch reply says command ``c0`` is blocked, with the given time details."""

    def handler(request):
        error = {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}
        if error_time is not None:
            error["time"] = error_time
        times = {"c0": result_time} if result_time is not None else []
        body = {"result": [], "result_error": {"c0": error}, "result_total": [], "result_next": [], "result_time": times}
        return {"result": body, "time": outer_time or {}}

    return MockTransport(handler)


@pytest.mark.parametrize("where", ["error_time", "result_time", "outer_time"])
def test_a_command_blocked_inside_a_batch_is_blocked_until_the_replys_reset(fake_time, where):
    """No call to the method before the portal's operating_reset_at, not a fixed minute later."""
    reset = fake_time() + 540
    block = {"start": 0, "finish": 0, "operating": 481, "operating_reset_at": reset}
    client = make_client(_blocking(**{where: block}), WebhookAuth("https://p.example.ru/rest/1/blockcode0/"), fake_time)
    with pytest.raises(errors.BatchCommandError):
        client.batch([("crm.deal.list", {})], halt=True)
    assert client.ledger.delay("crm.deal.list") == pytest.approx(540)
    assert client.ledger.delay("crm.lead.list") == 0.0


def test_a_blocked_command_without_any_reset_time_uses_the_methods_last_known_reset(fake_time):
    client = make_client(_blocking(), WebhookAuth("https://p.example.ru/rest/1/blockcode0/"), fake_time)
    client.ledger.record("crm.deal.list", {"operating": 100, "operating_reset_at": fake_time() + 420})
    with pytest.raises(errors.BatchCommandError):
        client.batch([("crm.deal.list", {})], halt=True)
    assert client.ledger.delay("crm.deal.list") == pytest.approx(420)
