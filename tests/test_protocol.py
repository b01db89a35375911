"""Tests of the shared protocol code: nested-parameter encoding, the reply envelope, error classification."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_repeated_appends_and_long_lists_parse_in_one_pass():
    """100,000 ``select[]=`` appends (the limit): a parser that looked for the next index among all keys would never end."""
    parsed = encoding.parse_pairs([("select[]", str(i)) for i in range(encoding.MAX_PAIRS)])
    assert parsed["select"][:3] == ["0", "1", "2"] and len(parsed["select"]) == encoding.MAX_PAIRS
    explicit = encoding.parse_pairs([("x[5]", "a"), ("x[]", "b"), ("x[2]", "c"), ("x[]", "d")])
    assert explicit == {"x": {"5": "a", "6": "b", "2": "c", "7": "d"}}  # appends go after the highest index, as in PHP


def test_a_key_with_thousands_of_brackets_is_refused_quickly():
    with pytest.raises(encoding.ParamError):
        encoding.parse_pairs([("a" + "[b]" * 100_000, "x")])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: encoding.parse_pairs([("a" + "[x]" * 64, "1")]), "parameter key nested deeper than 64 levels"),
        (lambda: encoding.parse_pairs([("a", "1")] * 3, max_pairs=2), "more than 2 parameters"),
        (lambda: encoding.decode_query("&".join(["a=1"] * 5), max_pairs=4), "more than 4 parameters"),
        (lambda: encoding.decode_query("a" + "[]" * 70 + "=1"), "parameter key nested deeper than 64 levels"),
        (lambda: encoding.flatten({"a": _nested(64)}), "parameters nested deeper than 64 levels"),
        (lambda: encoding.encode_query({"a": _nested(200)}), "parameters nested deeper than 64 levels"),
        (lambda: encoding.to_json_text({"a": float("nan")}), "parameters cannot be sent as JSON"),
        (lambda: encoding.to_json_text({"a": {1, 2}}), "cannot encode set as JSON"),
        (lambda: encoding.to_json_text(_circular()), "Circular reference"),
        (lambda: encoding.to_json_text(_nested(100_000)), "nested too deep to send"),
    ],
    ids=["deep-key", "too-many-pairs", "too-many-fields", "deep-appends", "deep-flatten", "deep-query",
         "nan", "set", "circular", "very-deep-json"],
)
def test_bad_parameters_are_a_param_error(call, message):
    with pytest.raises(encoding.ParamError) as caught:
        call()
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError keep working


def test_keys_at_the_depth_limit_still_parse():
    key = "a" + "[x]" * 63
    parsed = encoding.parse_pairs([(key, "1")])
    node = parsed["a"]
    for _ in range(62):
        node = node["x"]
    assert node == {"x": "1"}


def _nested(levels):
    value: object = "x"
    for _ in range(levels):
        value = {"k": value}
    return value


def _circular():
    data: dict = {}
    data["self"] = data
    return data


KEY_PARTS = st.sampled_from(["a", "b", "select", "", "0", "1", "2", "00", "²", "x]", "[", "]", ">ID", "%5B"])
KEYS = st.lists(KEY_PARTS, min_size=1, max_size=6).map(lambda parts: parts[0] + "".join(f"[{p}]" for p in parts[1:]))
RAW_KEYS = st.text(alphabet="ab0[]²%=&", max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(KEYS | RAW_KEYS, st.text(max_size=5)), max_size=12))
def test_random_pairs_parse_or_raise_a_param_error(pairs):
    try:
        parsed = encoding.parse_pairs(pairs)
    except encoding.ParamError:
        return
    assert isinstance(parsed, (dict, list))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_random_query_strings_decode_or_raise_a_param_error(query):
    try:
        encoding.decode_query(query)
    except encoding.ParamError:
        pass


PLAIN_KEYS = st.text(alphabet="abcdefghij_", min_size=1, max_size=5)
CLEAN = st.recursive(
    st.text(max_size=6),
    lambda children: st.lists(children, min_size=1, max_size=3) | st.dictionaries(PLAIN_KEYS, children, min_size=1, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(PLAIN_KEYS, CLEAN, max_size=4))
def test_encoding_round_trips_nested_text(params):
    assert encoding.decode_query(encoding.encode_query(params)) == params


ANY_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4) | st.decimals(allow_nan=False),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=3), ANY_DATA, max_size=4))
def test_random_data_encodes_or_raises_a_param_error(params):
    for encode in (encoding.encode_query, encoding.to_json_text):
        try:
            assert isinstance(encode(params), str)
        except encoding.ParamError:
            pass


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


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, "[1, 2, 3]", errors.BadReplyError),
        (200, '"just text"', errors.BadReplyError),
        (200, '{"result": NaN}', errors.BadReplyError),
        (200, '{"result": [Infinity]}', errors.BadReplyError),
        (200, '{"result": ' + "[" * 300 + "]" * 300 + "}", errors.BadReplyError),
        (200, '{"result": ' + "[" * 100_000 + "]" * 100_000 + "}", errors.BadReplyError),
        (200, b'{"result": "\xff\xfe"}', errors.BadReplyError),
        (200, '{"result": 1' + "0" * 5000 + "}", errors.BadReplyError),
        (500, '{"result": NaN}', errors.ServerError),
    ],
    ids=["list", "string", "nan", "infinity", "300-deep", "100000-deep", "not-utf8", "huge-integer", "500-nan"],
)
def test_json_that_no_portal_sends_is_not_a_bitrix24_reply(status, body, expected):
    with pytest.raises(errors.B24Error) as caught:
        envelope.parse_reply(status, body, "crm.deal.list")
    assert type(caught.value) is expected
    if expected is errors.BadReplyError:
        assert str(caught.value).startswith("not a Bitrix24 reply from crm.deal.list")


def test_a_real_depth_reply_still_parses():
    row = {"ID": "1", "PHONE": [{"ID": "7", "VALUE": "+7 900", "VALUE_TYPE": "WORK", "TYPE_ID": "PHONE"}], "UF_CRM_1": ["1", "2"]}
    body = {"result": {"result": {"p0": {"items": [{"fm": [row]}]}}, "result_error": [], "result_total": [], "result_next": [], "result_time": []}}
    reply = envelope.parse_reply(200, json.dumps(body), "batch")
    assert envelope.batch_parts(reply).results["p0"]["items"][0]["fm"][0] == row


def test_figures_out_of_range_are_ignored_not_trusted():
    reply = envelope.parse_reply(200, '{"result": [], "total": 1e999, "next": "x", "time": {"operating": 1e999, "operating_reset_at": -1e999}}')
    assert reply.total is None and reply.next is None and reply.operating == 0.0 and not reply.operating_reset_at


@settings(max_examples=500, deadline=None)
@given(st.integers(100, 599), st.binary(max_size=60) | st.text(max_size=60))
def test_random_bodies_parse_or_raise_our_errors(status, body):
    try:
        reply = envelope.parse_reply(status, body, "crm.deal.list")
    except errors.B24Error:
        return
    assert status < 400 and isinstance(reply, envelope.Reply)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["result", "result_error", "result_time", "error", "time", "total", "next", "c0", "0"]) | st.text(max_size=3), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.integers(100, 599), JSON_VALUES)
def test_random_json_envelopes_and_batch_parts_raise_only_our_errors(status, value):
    try:
        reply = envelope.parse_reply(status, json.dumps(value), "batch")
        parts = envelope.batch_parts(reply)
        for name in parts.errors:
            assert isinstance(parts.error_of(name, "crm.deal.get"), errors.B24Error)
            parts.reset_of(name)
        reply.mapping()
        reply.rows()
        reply.integer()
    except errors.B24Error:
        pass


# ---------------------------------------------------------------- the emulator still answers in the real shapes

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECRET = "shapes0webhook"


def kind(value: object) -> str:
    """The JSON type of a value (ints and floats are both numbers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def shape_differences(expected: object, actual: object, path: str = "$", extra: frozenset[str] = frozenset()) -> list[str]:
    """Where ``actual`` departs from the shape of ``expected``: types, key sets (keys in ``extra`` may be
    added), PHP's ``[]`` for an empty object, and element by element for as many elements as ``expected`` has."""
    if kind(expected) != kind(actual):
        return [f"{path}: {kind(expected)} expected, {kind(actual)} found"]
    found: list[str] = []
    if isinstance(expected, dict):
        assert isinstance(actual, dict)
        missing, added = set(expected) - set(actual), set(actual) - set(expected) - extra
        found += [f"{path}: no key {key!r}" for key in sorted(missing)] + [f"{path}: unexpected key {key!r}" for key in sorted(added)]
        for key in expected:
            if key in actual:
                found += shape_differences(expected[key], actual[key], f"{path}.{key}", extra)
    elif isinstance(expected, list):
        assert isinstance(actual, list)
        if not expected and actual:
            found.append(f"{path}: [] expected (PHP's empty object), {len(actual)} element(s) found")
        if expected and len(actual) < len(expected):
            found.append(f"{path}: at least {len(expected)} element(s) expected, {len(actual)} found")
        for index, (want, got) in enumerate(zip(expected, actual)):
            found += shape_differences(want, got, f"{path}[{index}]", extra)
    return found


def _app(clock: Any, **limits: Any) -> Any:
    from connector.emulator import new_portal
    from connector.emulator.app import EmulatorApp

    options = {"rate": 1e6, "burst": 1e6, "operating_budget": 1e9, **limits}
    return EmulatorApp(new_portal(), secret=SECRET, clock=clock, **options)


def _post(app: Any, method: str, params: dict[str, Any] | None = None, *, path: str | None = None) -> tuple[int, Any]:
    response = app.request("POST", path or f"/rest/1/{SECRET}/{method}", body=json.dumps(params or {}).encode(), content_type="application/json")
    return response.status, json.loads(response.body)


def _deals(app: Any, count: int = 2) -> None:
    for i in range(count):
        _post(app, "crm.deal.add", {"fields": {"TITLE": f"Сделка {i}", "OPPORTUNITY": 1000 + i, "CURRENCY_ID": "RUB"}})


def _batch(app: Any, cmd: dict[str, str]) -> tuple[int, Any]:
    return _post(app, "batch", {"halt": 0, "cmd": cmd})


def _recipe(name: str, app: Any, clock: Any) -> tuple[int, Any]:
    """Ask the emulator the question each fixture answers."""
    deal_select = ["ID", "TITLE", "CATEGORY_ID", "STAGE_ID", "CURRENCY_ID", "OPPORTUNITY", "CLOSED", "ASSIGNED_BY_ID", "DATE_CREATE"]
    if name == "crm.deal.list":
        _deals(app)
        return _post(app, "crm.deal.list", {"select": deal_select, "start": 0})
    if name == "crm.deal.list.page":
        _deals(app, 52)
        return _post(app, "crm.deal.list", {"select": ["ID", "TITLE"], "start": 0})
    if name == "crm.deal.list.keyset":
        _deals(app)
        return _post(app, "crm.deal.list", {"select": ["ID"], "order": {"ID": "ASC"}, "filter": {">ID": 0}, "start": -1})
    if name == "crm.item.list":
        _deals(app, 1)
        return _post(app, "crm.item.list", {"entityTypeId": 2, "select": ["id", "title", "categoryId", "stageId", "opportunity", "assignedById", "createdTime"]})
    if name == "crm.stagehistory.list":
        _deals(app, 1)
        return _post(app, "crm.stagehistory.list", {"entityTypeId": 2})
    if name == "crm.category.list":
        _post(app, "crm.category.add", {"entityTypeId": 2, "fields": {"name": "Сервис", "sort": 300}})
        return _post(app, "crm.category.list", {"entityTypeId": 2})
    if name == "crm.status.list":
        return _post(app, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE"}, "order": {"SORT": "ASC"}})
    if name == "crm.lead.list.multifields":
        phone = [{"VALUE": "+7 900 000-00-00", "VALUE_TYPE": "MOBILE"}]
        _post(app, "crm.lead.add", {"fields": {"TITLE": "Заявка", "NAME": "Ольга", "PHONE": phone, "EMAIL": [{"VALUE": "o@example.ru", "VALUE_TYPE": "WORK"}]}})
        return _post(app, "crm.lead.list", {"select": ["ID", "TITLE", "NAME", "PHONE", "EMAIL"]})
    if name == "crm.deal.add":
        return _post(app, "crm.deal.add", {"fields": {"TITLE": "Новая"}})
    if name == "crm.deal.update":
        _deals(app, 1)
        return _post(app, "crm.deal.update", {"id": 1, "fields": {"TITLE": "Другая"}})
    if name == "crm.item.delete":
        _deals(app, 1)
        return _post(app, "crm.item.delete", {"entityTypeId": 2, "id": 1})
    if name == "batch":
        _deals(app, 52)
        return _batch(app, {"deals": "crm.deal.list?select[]=ID&start=0", "first": "crm.deal.list?filter[ID]=1&select[]=TITLE&start=0"})
    if name == "batch.error":
        return _batch(app, {"known": "crm.category.get?entityTypeId=2&id=0", "missing": "crm.deal.get?id=999"})
    if name == "error.QUERY_LIMIT_EXCEEDED.503":
        _post(app, "profile")
        return _post(app, "profile")
    if name == "error.OPERATION_TIME_LIMIT.429":
        _post(app, "crm.deal.list")
        clock.advance(1)
        return _post(app, "crm.deal.list")
    if name == "error.not-found.400":
        return _post(app, "crm.deal.get", {"id": 999})
    if name == "error.NOT_FOUND.400":
        return _post(app, "crm.category.get", {"entityTypeId": 2, "id": 999})
    if name == "error.ERROR_METHOD_NOT_FOUND.404":
        return _post(app, "crm.no.such")
    if name == "error.NO_AUTH_FOUND.401":
        return _post(app, "profile", path="/rest/1/wrong0code/profile")
    if name in ("error.expired_token.401", "oauth.token"):
        tokens = app.add_oauth_client("local.shapes", "shapes-secret")
        app.expire_tokens()
        if name == "error.expired_token.401":
            return _post(app, "profile", {"auth": tokens["access_token"]}, path="/rest/profile")
        query = urlencode({"grant_type": "refresh_token", "client_id": "local.shapes", "client_secret": "shapes-secret", "refresh_token": tokens["refresh_token"]})
        response = app.request("GET", "/oauth/token/", query=query)
        return response.status, json.loads(response.body)
    raise AssertionError(f"no recipe for fixture {name}")


# fixture -> (limits of its emulator, keys the emulator may add)
SHAPE_CASES = {
    "error.QUERY_LIMIT_EXCEEDED.503": ({"rate": 1.0, "burst": 1.0}, frozenset()),
    # the real 429 body shows no time block; the emulator adds one (the client reads it when present)
    "error.OPERATION_TIME_LIMIT.429": ({"operating_budget": 0.001}, frozenset({"time"})),
}


def _fixture_names() -> list[str]:
    return sorted(path.name[: -len(".json")] for path in FIXTURES.glob("*.json"))


def test_there_are_fixtures_to_check():
    assert len(_fixture_names()) >= 20


@pytest.mark.parametrize("name", _fixture_names())
def test_the_emulator_answers_in_the_shape_of_each_fixture(name, clock):
    expected = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    limits, extra = SHAPE_CASES.get(name, ({}, frozenset()))
    status, actual = _recipe(name, _app(clock, **limits), clock)
    parts = name.split(".")
    expected_status = int(parts[-1]) if parts[-1].isdigit() else 200
    assert status == expected_status
    assert shape_differences(expected, actual, extra=extra) == []
    if name.startswith("error."):
        assert {"error", "error_description"} <= set(actual) and (actual["error"] == expected["error"])


def test_the_shape_check_sees_drift():
    real = {"result": {"result": {"a": [{"ID": "1"}]}, "result_error": [], "result_time": {"a": {"start": 1.5}}}}
    assert shape_differences(real, real) == []
    drifted = {"result": {"result": {"a": [{"ID": 1}]}, "result_error": {}, "result_time": {"a": {"start": 1.5, "x": 0}}}}
    assert shape_differences(real, drifted) == [
        "$.result.result.a[0].ID: string expected, number found",
        "$.result.result_error: list expected, object found",
        "$.result.result_time.a: unexpected key 'x'",
    ]
