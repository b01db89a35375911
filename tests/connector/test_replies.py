"""Replies that are not Bitrix24: every client operation fails with "not a Bitrix24 reply from METHOD".

A proxy or a wrong URL answering JSON of another shape, ``NaN``, nesting hundreds deep, a batch
without its parts, rows without IDs, a page that never advances: a table of them per operation, and
a Hypothesis property that random replies never raise anything but the project's own errors.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import errors
from connector.client import RetryPolicy
from connector.encoding import ParamError
from connector.envelope import Reply, as_rows

RETRY = RetryPolicy(attempts=3, max_elapsed=60.0, base=0.01, cap=0.02)


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _page(rows):
    """A batch reply in which every command answered ``rows``."""

    def handler(request):
        if request.method != "batch":
            return {"result": rows}
        return {"result": {"result": {name: rows for name in request.params["cmd"]}, "result_error": [], "result_total": [], "result_next": [], "result_time": []}}

    return handler


def _always(body, status=200):
    return lambda request: (status, body)


ROWS_50 = [{"ID": str(i)} for i in range(1, 51)]

# (id, operation, handler, expected message part); every row must end in BadReplyError
TABLE = [
    ("call-json-list", "call", _always("[1, 2]"), "not the JSON envelope"),
    ("call-json-string", "call", _always('"hello"'), "not the JSON envelope"),
    ("call-nan", "call", _always('{"result": NaN}'), "not the JSON envelope"),
    ("call-infinity", "call", _always('{"result": [1, -Infinity]}'), "not the JSON envelope"),
    ("call-deep", "call", _always('{"result": ' + _deep(300) + "}"), "not the JSON envelope"),
    ("call-very-deep", "call", _always('{"result": ' + _deep(100_000) + "}"), "not the JSON envelope"),
    ("call-no-result", "call", _always('{"total": 5, "next": 50}'), "not the JSON envelope"),
    ("call-html", "call", _always("<html><body>proxy</body></html>"), "not the JSON envelope"),
    ("batch-null", "batch", _always('{"result": null}'), "a batch reply without its result parts"),
    ("batch-list", "batch", _always('{"result": [1, 2, 3]}'), "a batch reply without its result parts"),
    ("batch-parts-wrong", "batch", _always('{"result": {"result": "x", "result_error": []}}'), "batch part result is a string"),
    ("list-null", "list_all", _page(None), "result is null, not a list of records"),
    ("list-object", "list_all", _page({"a": 1}), "holds a number where a record belongs"),
    ("list-string", "list_all", _page("rows"), "result is a string"),
    ("list-no-id", "list_all", _page([{"TITLE": "x"}]), "a row has no integer ID"),
    ("list-bad-id", "list_all", _page([{"ID": "seven"}]), "a row has no integer ID"),
    ("list-id-object", "list_all", _page([{"ID": {"x": 1}}]), "a row has no integer ID"),
    ("list-same-page-again", "list_all", _page(ROWS_50), "does not advance"),
    ("list-batch-null", "list_all", _always('{"result": null}'), "a batch reply without its result parts"),
    ("list-batch-empty-parts", "list_all", _always('{"result": {"result": [], "result_error": []}}'), "does not advance"),
    ("items-null", "items", _page(None), "result is null, not an object"),
    ("items-list", "items", _page([{"id": 1}]), "result is a list, not an object"),
    ("items-rows-object", "items", _page({"items": 5}), "result[items] is a number"),
    ("count-no-total", "count", _always('{"result": []}'), "a counted page without total"),
    ("count-bad-total", "count", _always('{"result": [], "total": "many"}'), "a counted page without total"),
    ("categories-null", "categories", _always('{"result": null}'), "result is null, not an object"),
    ("categories-list", "categories", _always('{"result": {"categories": {"a": [1]}}}'), "holds a list where a record belongs"),
    ("categories-next-stuck", "categories", _always('{"result": {"categories": [{"id": 0}]}, "next": 0, "total": 9}'), "next 0 does not move past start 0"),
    ("categories-next-past-total", "categories", _always('{"result": {"categories": [{"id": 0}]}, "next": 50, "total": 3}'), "next 50 is past total 3"),
    ("categories-empty-next", "categories", _always('{"result": {"categories": []}, "next": 50, "total": 900}'), "an empty page promises a next one"),
    ("stages-number", "stages", _always('{"result": 17}'), "result is a number, not a list of records"),
]


def run(client, operation):
    """Run one client operation to its end."""
    if operation == "call":
        return client.call("crm.deal.get", {"id": 1})
    if operation == "batch":
        return client.batch([("crm.deal.get", {"id": 1}), ("crm.deal.get", {"id": 2})])
    if operation == "list_all":
        return list(client.list_all("crm.deal.list", select=["ID"]))
    if operation == "items":
        return list(client.items(2))
    if operation == "count":
        return client.count("crm.deal.list", {"STAGE_ID": "WON"})
    if operation == "categories":
        return client.categories(2)
    if operation == "stages":
        return client.stages(0)
    raise AssertionError(operation)


@pytest.mark.parametrize(("operation", "handler", "expected"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_a_reply_that_is_not_bitrix24_fails_after_its_retries(mock_client, operation, handler, expected):
    client = mock_client(handler, retry=RETRY)
    with pytest.raises(errors.BadReplyError) as info:
        run(client, operation)
    message = str(info.value)
    assert message.startswith("not a Bitrix24 reply from ") and expected in message
    assert info.value.method in message
    assert len(client.transport.requests) >= RETRY.attempts  # retried first: a read may pass next time
    assert len(client.transport.requests) <= 2 * RETRY.attempts  # and then given up, never an endless loop


def test_a_write_with_a_reply_of_another_shape_is_not_repeated(mock_client):
    client = mock_client(_always('{"result": ' + _deep(300) + "}"), retry=RETRY)
    with pytest.raises(errors.BadReplyError, match="not a Bitrix24 reply from crm.deal.add"):
        client.call("crm.deal.add", {"fields": {"TITLE": "x"}})
    assert len(client.transport.requests) == 1  # the deal may exist now: never blindly repeated


def test_a_reply_that_comes_right_after_bad_ones_is_taken(mock_client):
    answers = iter(['{"result": null}', '{"result": {"result": "?"}}'])

    def handler(request):
        text = next(answers, None)
        return (200, text) if text else _page([{"ID": "3"}, {"ID": "9"}])(request)

    client = mock_client(handler, retry=RETRY)
    assert [row["ID"] for row in client.list_all("crm.deal.list")] == ["3", "9"]


# ---------------------------------------------------------------- the accessors callers use


@pytest.mark.parametrize(
    ("result", "call", "expected"),
    [
        ({"category": {"id": 3}}, lambda r: r.mapping("category"), {"id": 3}),
        ([], lambda r: r.mapping(), {}),
        ({"categories": [{"id": 0}]}, lambda r: r.rows("categories"), [{"id": 0}]),
        ({"0": {"ID": "1"}, "2": {"ID": "3"}}, lambda r: r.rows(), [{"ID": "1"}, {"ID": "3"}]),
        ("17", lambda r: r.integer(), 17),
        (17, lambda r: r.integer(), 17),
    ],
    ids=["nested-object", "php-empty-object", "rows-under-key", "php-list-with-holes", "integer-text", "integer"],
)
def test_reply_accessors_read_the_expected_shapes(result, call, expected):
    assert call(Reply(result, method="crm.x.y")) == expected


@pytest.mark.parametrize(
    ("result", "call", "expected"),
    [
        (None, lambda r: r.mapping(), "result is null, not an object"),
        ([1], lambda r: r.mapping(), "result is a list, not an object"),
        ({"category": None}, lambda r: r.mapping("category"), "result[category] is null, not an object"),
        ({"categories": "x"}, lambda r: r.rows("categories"), "result[categories] is a string, not a list of records"),
        ([1, 2], lambda r: r.rows(), "result holds a number where a record belongs"),
        (True, lambda r: r.integer(), "result is a boolean, not an integer"),
        ("x1", lambda r: r.integer(), "result is not an integer"),
        ([], lambda r: r.counted_total(), "a counted page without total"),
    ],
    ids=["null", "list", "nested-null", "rows-text", "rows-numbers", "integer-bool", "integer-text", "no-total"],
)
def test_reply_accessors_refuse_other_shapes(result, call, expected):
    with pytest.raises(errors.BadReplyError) as info:
        call(Reply(result, method="crm.category.get"))
    assert str(info.value) == f"not a Bitrix24 reply from crm.category.get: {expected} (HTTP 200)"


def test_rows_of_a_batch_command_name_its_method():
    with pytest.raises(errors.BadReplyError, match="from crm.deal.list: result is null"):
        as_rows(None, "crm.deal.list")


# ---------------------------------------------------------------- random replies

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["0", "1", "50", "ID", "id", "$result"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["result", "result_error", "result_total", "result_next", "result_time", "items",
                                       "categories", "ID", "id", "total", "next", "time", "error", "error_description",
                                       "top", "p0", "p1", "c0", "c1", "operating", "operating_reset_at", "0", "1"]) | st.text(max_size=4),
                      children, max_size=5),
    max_leaves=25,
)
BODIES = JSON.map(lambda value: json.dumps(value)) | st.text(max_size=40) | st.sampled_from(["NaN", '{"result": NaN}', _deep(400)])
OPERATIONS = st.sampled_from(["call", "batch", "list_all", "items", "count", "categories", "stages"])
OURS = (errors.B24Error, ParamError)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operation=OPERATIONS, bodies=st.lists(st.tuples(st.sampled_from([200, 200, 200, 400, 401, 429, 500, 503]), BODIES), min_size=1, max_size=4))
def test_random_replies_raise_only_our_errors(mock_client, operation, bodies):
    """Whatever comes back, in whatever order (the last one repeats), the operation ends in a result or our own error."""
    replies = list(bodies)

    def handler(request):
        return replies.pop(0) if len(replies) > 1 else replies[0]

    client = mock_client(handler, retry=RETRY)
    try:
        run(client, operation)
    except OURS:
        pass
    assert len(client.transport.requests) <= 40  # bounded: no reply makes an operation loop


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(result=JSON)
def test_random_page_results_inside_a_real_batch_envelope_raise_only_our_errors(mock_client, result):
    client = mock_client(_page(result), retry=RETRY)
    try:
        list(client.list_all("crm.deal.list"))
        list(client.items(2))
    except OURS:
        pass
    assert len(client.transport.requests) <= 40
