"""What provisioning reads from a portal is checked for Bitrix24's shapes: a proxy or a wrong URL that
answers other JSON ends plan and apply in "not a Bitrix24 reply from METHOD", never a KeyError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import B24Error
from jobs import provision as pv
from mappings.loader import parse_config
from tests.jobs.provision.conftest import STAGES

CONFIG = parse_config('[[pipelines]]\nkey = "main"\nname = "Общая"\ndefault = true\nsort = 0\n' + STAGES)
CATEGORIES = {"categories": [{"id": 0, "name": "Общая", "sort": 0}]}
ROWS = [{"ID": "1", "ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "NEW", "NAME": "Новая", "SORT": "10", "SYSTEM": "Y"}]


def portal(categories: Any = CATEGORIES, rows: Any = ROWS) -> Any:
    """A handler answering crm.category.list with ``categories`` and every crm.status.list in a batch with ``rows``."""

    def handler(request: Any) -> Any:
        if request.method == "crm.category.list":
            return {"result": categories}
        if request.method == "batch":
            names = list(request.params["cmd"])
            return {"result": {"result": {n: rows for n in names}, "result_error": [], "result_total": {},
                               "result_next": {}, "result_time": {}}}
        return {"result": []}

    return handler


BAD = [
    ("categories-null", {"categories": None}, ROWS, "not a Bitrix24 reply from crm.category.list: no list of categories"),
    ("categories-a-list", [], ROWS, "not a Bitrix24 reply from crm.category.list: no list of categories"),
    ("category-without-id", {"categories": [{"name": "x"}]}, ROWS, "crm.category.list: a category without an id"),
    ("category-id-not-a-number", {"categories": [{"id": "zero"}]}, ROWS, "a category without an id"),
    ("category-sort-a-list", {"categories": [{"id": 0, "name": "x", "sort": [1]}]}, ROWS, "category 0 has a bad name, sort or origin"),
    ("category-without-name", {"categories": [{"id": 0, "sort": 0}]}, ROWS, "category 0 has a bad name, sort or origin"),
    ("rows-a-string", CATEGORIES, "rows", "not a Bitrix24 reply from crm.status.list (STATUS): not a list of dictionary rows"),
    ("row-without-status-id", CATEGORIES, [{"ID": "1", "ENTITY_ID": "STATUS"}], "crm.status.list (STATUS): not a list"),
    ("row-a-number", CATEGORIES, [5], "crm.status.list (STATUS): not a list"),
    ("row-colour-a-list", CATEGORIES, [{**ROWS[0], "COLOR": [1]}], "crm.status.list (STATUS): not a list of dictionary rows"),
]


@pytest.mark.parametrize(("categories", "rows", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_reply_of_another_shape_is_named(mock_client: Any, categories: Any, rows: Any, expected: str) -> None:
    client = mock_client(portal(categories, rows))
    with pytest.raises(pv.UnexpectedReply, match=expected.replace("(", r"\(").replace(")", r"\)")):
        pv.plan(CONFIG, client)
    with pytest.raises(pv.ApplyFailed) as caught:  # apply reads first: nothing was written
        pv.apply(client, pv.Plan(fingerprint="sha256:" + "0" * 64))
    assert caught.value.problems[-1] == "Nothing was changed on the portal."
    assert not [r for r in client.transport.requests if r.method.endswith((".add", ".update", ".delete"))]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["0", "10", "NEW", "STATUS", "DEAL_STAGE", "Y"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "name", "sort", "categories", "ID", "ENTITY_ID", "STATUS_ID", "NAME", "SORT", "SEMANTICS", "SYSTEM"]),
        inner, max_size=6),
    max_leaves=20,
)


# nearly right: the keys Bitrix24 sends, each with a plausible or an odd value
ODD = st.none() | st.integers(-3, 30) | st.sampled_from(["", "10", "S", "F", "Y", "#FFF", "x"]) | st.lists(st.integers(), max_size=2)
ALMOST_ROWS = st.lists(st.fixed_dictionaries(
    {"ID": st.sampled_from(["1", "2", 3]) | JSON, "ENTITY_ID": st.sampled_from(["STATUS", "DEAL_STAGE"]),
     "STATUS_ID": st.sampled_from(["NEW", "WON", "LOSE"]) | JSON},
    optional={k: ODD for k in ("NAME", "SORT", "SEMANTICS", "COLOR", "SYSTEM")}), max_size=4)
ALMOST_CATEGORIES = st.fixed_dictionaries({"categories": st.lists(st.fixed_dictionaries(
    {"id": st.sampled_from([0, "0", 1]) | JSON}, optional={k: ODD for k in ("name", "sort", "originId", "originatorId")}), max_size=3)})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.tuples(JSON, st.just(ROWS)), st.tuples(st.just(CATEGORIES), JSON),
                 st.tuples(ALMOST_CATEGORIES, st.just(ROWS)), st.tuples(st.just(CATEGORIES), ALMOST_ROWS)))
def test_random_replies_end_in_a_plan_or_one_of_our_errors(mock_client: Any, replies: tuple[Any, Any]) -> None:
    client = mock_client(portal(*replies))
    try:
        pv.plan(CONFIG, client)
        pv.export(client)
    except (pv.ProvisionError, B24Error):
        pass
