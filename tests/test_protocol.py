"""Tests of the shared protocol code: nested-parameter encoding, the reply envelope, error classification."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from connector import encoding, envelope, errors


# ---------------------------------------------------------------- encoding


def test_flatten_nested_params_php_style():
    params = {"filter": {">ID": 5, "@STAGE_ID": ["NEW", "WON"]}, "select": ["ID", "TITLE"], "start": -1}
    assert encoding.flatten(params) == [
        ("filter[>ID]", "5"),
        ("filter[@STAGE_ID][0]", "NEW"),
        ("filter[@STAGE_ID][1]", "WON"),
        ("select[0]", "ID"),
        ("select[1]", "TITLE"),
        ("start", "-1"),
    ]


def test_scalars_render_like_php():
    pairs = dict(encoding.flatten({"a": True, "b": False, "c": None, "d": Decimal("10.50"), "e": 2.0}))
    assert pairs == {"a": "1", "b": "0", "c": "", "d": "10.50", "e": "2"}


def test_encode_query_keeps_brackets_and_quotes_operators_and_cyrillic():
    query = encoding.encode_query({"filter": {">=DATE_MODIFY": "2026-01-01T00:00:00+03:00"}, "fields": {"NAME": "Сделка & Ко"}})
    assert "filter[%3E%3DDATE_MODIFY]=2026-01-01T00%3A00%3A00%2B03%3A00" in query
    assert "fields[NAME]=%D0%A1%D0%B4%D0%B5%D0%BB%D0%BA%D0%B0+%26+%D0%9A%D0%BE" in query


@pytest.mark.parametrize(
    "params",
    [
        {"filter": {">ID": "5", "!%TITLE": "test"}, "select": ["ID", "UF_*"]},
        {"cmd": {"a": "crm.deal.list?filter[>ID]=1", "b": "user.get"}, "halt": "1"},
        {"fields": {"PHONE": [{"VALUE": "+7 900", "VALUE_TYPE": "WORK"}], "TITLE": "Ёлка"}},
    ],
    ids=["filter-select", "batch-cmd", "multifield"],
)
def test_encode_then_decode_round_trips(params):
    assert encoding.decode_query(encoding.encode_query(params)) == params


def test_parse_pairs_appends_bracket_lists_and_keeps_assoc_keys():
    parsed = encoding.parse_pairs([("select[]", "ID"), ("select[]", "TITLE"), ("order[ID]", "ASC"), ("id", "7")])
    assert parsed == {"select": ["ID", "TITLE"], "order": {"ID": "ASC"}, "id": "7"}


def test_parse_pairs_sparse_numeric_keys_stay_a_mapping():
    assert encoding.parse_pairs([("x[1]", "a"), ("x[3]", "b")]) == {"x": {"1": "a", "3": "b"}}


# ---------------------------------------------------------------- envelope


def test_parse_success_reply_reads_total_next_and_operating():
    body = json.dumps(
        {"result": [{"ID": "1"}], "next": 50, "total": "120", "time": {"operating": 1.5, "operating_reset_at": 1700000600}}
    )
    reply = envelope.parse_reply(200, body, "crm.deal.list")
    assert reply.result == [{"ID": "1"}]
    assert (reply.total, reply.next) == (120, 50)
    assert reply.operating == 1.5 and reply.operating_reset_at == 1700000600


def test_last_page_has_no_next():
    reply = envelope.parse_reply(200, b'{"result":[],"total":0,"time":{}}')
    assert reply.next is None and reply.total == 0


def test_success_body_uses_real_key_order_and_php_empty_object():
    body = envelope.success_body({"items": [], "meta": {}}, total=3, next=50, time={"start": 1})
    assert list(body) == ["result", "next", "total", "time"]
    assert body["result"] == {"items": [], "meta": []}


def test_time_block_prints_portal_offset():
    block = envelope.time_block(1700000000.0, 1700000000.25, envelope.parse_offset("+03:00"), operating=0.1, operating_reset_at=1700000600)
    assert block["date_start"] == "2023-11-15T01:13:20+03:00"
    assert block["duration"] == 0.25 and block["operating"] == 0.1 and block["operating_reset_at"] == 1700000600


# ---------------------------------------------------------------- error classification (failure table)


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (503, '{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}', errors.QueryLimitExceeded),
        (429, '{"error":"OPERATION_TIME_LIMIT","error_description":"Method is blocked due to operation time limit."}', errors.OperationTimeLimit),
        (500, '{"error":"INTERNAL_SERVER_ERROR","error_description":"Internal server error"}', errors.ServerError),
        (502, "<html><body>502 Bad Gateway</body></html>", errors.ServerError),
        (200, '{"result": [{"ID": "1"}, {"ID"', errors.BadReplyError),
        (403, "<html>Forbidden</html>", errors.BadReplyError),
        (200, '{"total": 5}', errors.BadReplyError),
        (401, '{"error":"expired_token","error_description":"The access token provided has expired"}', errors.ExpiredToken),
        (401, '{"error":"NO_AUTH_FOUND","error_description":"Wrong authorization data"}', errors.AuthFailed),
        (403, '{"error":"insufficient_scope","error_description":"The request requires higher privileges"}', errors.AuthFailed),
        (403, '{"error":"ACCESS_DENIED","error_description":"REST API is available only on commercial plans"}', errors.AccessDenied),
        (404, '{"error":"ERROR_METHOD_NOT_FOUND","error_description":"Method not found!"}', errors.MethodNotFound),
        (400, '{"error":"","error_description":"Not found"}', errors.NotFound),
        (400, '{"error":"NOT_FOUND","error_description":"Smart process not found"}', errors.NotFound),
        (400, '{"error":"","error_description":"Parameter \'filter\' must be array."}', errors.BadRequest),
        (400, '{"error":0,"error_description":"SHIPMENT_DOCUMENT entity is not supported"}', errors.BadRequest),
        (400, '{"error":"INVALID_ARG_VALUE","error_description":"Invalid filter"}', errors.BadRequest),
    ],
    ids=[
        "503-query-limit", "429-operation-limit", "500-internal", "502-html", "200-truncated", "403-html-proxy",
        "200-no-result", "401-expired", "401-no-auth", "403-scope", "403-access-denied", "404-method",
        "400-empty-code-not-found", "400-not-found-code", "400-empty-code-bad-param", "400-numeric-code",
        "400-invalid-arg",
    ],
)
def test_failure_table_classifies_each_reply_once(status, body, expected):
    with pytest.raises(errors.B24Error) as caught:
        envelope.parse_reply(status, body, "crm.deal.list")
    assert type(caught.value) is expected
    assert caught.value.method == "crm.deal.list"


def test_operation_time_limit_carries_retry_time_from_reply():
    body = '{"error":"OPERATION_TIME_LIMIT","error_description":"blocked","time":{"operating_reset_at":1700000600}}'
    with pytest.raises(errors.OperationTimeLimit) as caught:
        envelope.parse_reply(429, body)
    assert caught.value.retry_at == 1700000600


def test_retriable_and_fatal_branches_do_not_overlap():
    for code, (status, cls) in errors.ERROR_TABLE.items():
        assert issubclass(cls, errors.B24Error), code
        assert not (issubclass(cls, errors.RetriableError) and issubclass(cls, errors.FatalError)), code
        assert 400 <= status < 600, code


def test_batch_command_error_names_the_command():
    inner = errors.classify(400, {"error": "", "error_description": "Not found"}, "crm.deal.get")
    err = errors.BatchCommandError("deal_7", inner)
    assert "deal_7" in str(err) and isinstance(err.error, errors.NotFound)
