"""Saved plans (``plan --out`` / ``apply --plan``) at their hostile edge: anything that is not a plan this
b24sync wrote is refused with a message that says what is wrong, and random input never raises anything
but ``PlanFileError``."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from connector.emulator import new_portal
from jobs import provision as pv
from mappings.loader import load_config
from tests.jobs.provision.conftest import EXAMPLE
from tests.jobs.provision.test_plan import snapshot_of

PLAN = pv.diff(load_config(EXAMPLE), snapshot_of(new_portal()))
DATA = json.loads(PLAN.to_json())


def changed(path: str, value: Any) -> str:
    """The example plan's JSON with the value at ``path`` (``changes.0.after.sort``) replaced (DELETE removes it)."""
    data = copy.deepcopy(DATA)
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value == "DELETE":
        del node[key]
    else:
        node[key] = value
    return json.dumps(data)


def index_of(action: str, kind: str) -> int:
    return next(i for i, c in enumerate(DATA["changes"]) if (c["action"], c["kind"]) == (action, kind))


CREATE_STAGE, DELETE_STAGE, UPDATE_PIPELINE = index_of("create", "stage"), index_of("delete", "lead_status"), index_of("update", "pipeline")

BAD_PLANS = [
    ("not-json", "Plan: 15 to create", "not a plan file: not JSON"),
    ("json-nested-deep", "[" * 100_000 + "]" * 100_000, "not a plan file: JSON nested too deeply"),
    ("a-list", "[]", "not a b24sync plan file"),
    ("another-format", json.dumps({"format": "terraform"}), "not a b24sync plan file"),
    ("old-version", changed("version", 2), "plan file version 2 was made by an older b24sync (this one reads version 3); run plan again"),
    ("newer-version", changed("version", 9), "plan file version 9 is not supported (expected 3)"),
    ("version-as-text", changed("version", "3"), "plan file version '3' is not supported"),
    ("no-fingerprint", changed("fingerprint", "DELETE"), "the plan file has no fingerprint of the portal state it was made from"),
    ("empty-fingerprint", changed("fingerprint", ""), "has no fingerprint"),
    ("fingerprint-not-a-hash", changed("fingerprint", "sha256:xyz"), "has no fingerprint"),
    ("changes-not-a-list", changed("changes", {"0": {}}), "plan file: changes must be a list of changes"),
    ("errors-not-text", changed("errors", [1]), "plan file: errors must be a list of messages"),
    ("counts-not-a-list", changed("counts", "none"), "plan file: counts must be a list of record counts"),
    ("count-missing-records", changed("counts.0.records", "DELETE"), "plan file has malformed record counts"),
    ("count-negative", changed("counts.0.records", -1), "plan file: counts[0]: records must be a count"),
    ("count-other-method", changed("counts.0.method", "crm.deal.delete"), "counts[0]: method must be one of crm.lead.list, crm.deal.list"),
    ("count-nested-filter", changed("counts.0.filter", {"STATUS_ID": {"a": 1}}), "counts[0]: filter must be one field and its value"),
    ("change-not-an-object", changed("changes.0", "create"), "plan file: changes[0]: not a change"),
    ("unknown-action", changed("changes.0.action", "destroy"), "plan file has an unknown change 'destroy'/'lead_status'"),
    ("unknown-kind", changed("changes.0.kind", "contact"), "plan file has an unknown change 'update'/'contact'"),
    ("stage-key-without-pipeline", changed(f"changes.{CREATE_STAGE}.key", "NEEDS"),
     f"changes[{CREATE_STAGE}]: key must name the pipeline, stage (pipeline/STAGE) or lead status"),
    ("create-without-name", changed(f"changes.{CREATE_STAGE}.after.name", "DELETE"), f"changes[{CREATE_STAGE}]: after.name must be text"),
    ("sort-as-text", changed(f"changes.{CREATE_STAGE}.after.sort", "20"), f"changes[{CREATE_STAGE}]: after.sort must be a sort value"),
    ("unknown-semantics", changed(f"changes.{CREATE_STAGE}.after.semantics", "won"),
     f"changes[{CREATE_STAGE}]: after.semantics must be one of process, success, failure"),
    ("bad-colour", changed(f"changes.{CREATE_STAGE}.after.color", "orange"), f"changes[{CREATE_STAGE}]: after.color must be a colour"),
    ("delete-without-id", changed(f"changes.{DELETE_STAGE}.before.id", None), f"changes[{DELETE_STAGE}]: before.id must be an id"),
    ("update-without-id", changed(f"changes.{UPDATE_PIPELINE}.after.id", True), f"changes[{UPDATE_PIPELINE}]: after.id must be a pipeline id"),
    ("flag-not-boolean", changed("changes.0.stock", "yes"), "changes[0]: reason must be text, stock and unfinished true or false"),
    ("before-a-list", changed("changes.0.before", []), "changes[0]: before and after must be objects or null"),
    ("a-change-twice", json.dumps({**DATA, "changes": DATA["changes"] + DATA["changes"][:1]}), "plan file: a change appears twice"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_PLANS], ids=[c[0] for c in BAD_PLANS])
def test_a_bad_saved_plan_is_refused_saying_why(text: str, expected: str) -> None:
    with pytest.raises(pv.PlanFileError) as caught:
        pv.Plan.from_json(text)
    assert expected in str(caught.value), str(caught.value)
    assert caught.value.exit_code == 1


def test_the_example_plan_round_trips_with_its_flags() -> None:
    again = pv.Plan.from_json(PLAN.to_json())
    assert again == PLAN
    assert {type(c.action) for c in again.changes} == {pv.Action} and {type(c.kind) for c in again.changes} == {pv.Kind}
    assert set(DATA["changes"][0]) == {"action", "kind", "key", "before", "after", "reason", "stock", "unfinished"}


def test_read_plan_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(b"\xef\xbb\xbf" + PLAN.to_json().encode("utf-8"))  # a BOM is not JSON
    with pytest.raises(pv.PlanFileError, match=f"^{path}: not a plan file: not JSON"):
        pv.read_plan(path)
    path.write_bytes(b"\xff" * 10)
    with pytest.raises(pv.PlanFileError, match=f"^{path}: not UTF-8 text"):
        pv.read_plan(path)
    path.write_text(PLAN.to_json(), encoding="utf-8")
    assert pv.read_plan(path) == PLAN


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats() | st.text(max_size=12) | st.sampled_from(
        ["create", "update", "reorder", "move_records", "delete", "noop", "pipeline", "stage", "lead_status",
         "sales/NEW", "b24sync-plan", DATA["fingerprint"], "crm.deal.list", "#39A8EF", "process", "success"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["action", "kind", "key", "before", "after", "reason", "stock", "unfinished", "name", "sort",
                         "id", "records", "stage", "semantics", "color", "filter", "method"]) | st.text(max_size=6),
        inner, max_size=6),
    max_leaves=25,
)
PATHS = [
    f"{part}" for part in ("version", "fingerprint", "errors", "counts", "changes")
] + [f"changes.{i}.{field}" for i in range(len(DATA["changes"])) for field in ("action", "kind", "key", "before", "after", "stock")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")),
    JSON.map(json.dumps),
    st.fixed_dictionaries({"format": st.just("b24sync-plan"), "version": st.just(3), "fingerprint": st.just(DATA["fingerprint"])},
                          optional={"changes": st.lists(JSON, max_size=3), "counts": st.lists(JSON, max_size=3), "errors": JSON}).map(json.dumps),
    st.tuples(st.sampled_from(PATHS), JSON).map(lambda pv_: changed(*pv_)),
))
def test_random_plan_files_are_plans_or_a_plan_file_error(text: str) -> None:
    """Whatever the file holds: a Plan that renders, or PlanFileError; nothing else escapes."""
    try:
        plan = pv.Plan.from_json(text)
    except pv.PlanFileError:
        return
    pv.render_plan(plan, Console(file=io.StringIO(), width=120))
    plan.summary()
    plan.deletions()
