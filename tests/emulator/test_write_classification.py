"""The emulator and ``connector.catalog.is_write`` agree, by behaviour, on which methods write.

One row per registered method (more for methods whose parameters decide): a fresh portal, a setup
that makes what the call needs, then the call through the app as an OAuth application. The portal's
state must change exactly when the catalog says the call writes, and ``writes_total`` must count it
(a batch counts its write commands, never itself). A registered method without a row fails the test.

One change is not a write by the catalog's definition: ``event.offline.get`` with ``clear=0`` only
reserves the records it returns under a process_id (a repeat reserves the next ones, nothing is
lost). Its row checks that the reservation is the only change and that it is not counted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from connector import catalog
from connector.emulator import new_portal, registry
from connector.emulator.app import EmulatorApp
from tests.conftest import GENEROUS

CLIENT = "local.classify.app"
IDENTITY = f"app:{CLIENT}"  # how the app names the OAuth caller; bindings belong to it
ENTITIES = ("lead", "deal", "contact", "company")

Setup = Callable[[EmulatorApp], dict[str, Any]]


def invoke(app: EmulatorApp, method: str, **params: Any) -> Any:
    """Prepare state in-process, as the OAuth app (no stats, no limits)."""
    return registry.invoke(app.portal, method, params, auth="oauth", app=IDENTITY)


def params(**fixed: Any) -> Setup:
    """A setup that prepares nothing."""
    return lambda app: fixed


def with_record(entity: str, **extra: Any) -> Setup:
    """A setup that adds one record and passes its id."""
    def setup(app: EmulatorApp) -> dict[str, Any]:
        return {"id": invoke(app, f"crm.{entity}.add", fields={"TITLE": "Запись"}), **extra}
    return setup


def with_item(**extra: Any) -> Setup:
    """A setup that adds a deal and addresses it through crm.item.*."""
    def setup(app: EmulatorApp) -> dict[str, Any]:
        return {"entityTypeId": catalog.DEAL, "id": invoke(app, "crm.deal.add", fields={"TITLE": "Сделка"}), **extra}
    return setup


def with_userfield(entity: str, **extra: Any) -> Setup:
    """A setup that adds a user field and passes its id."""
    def setup(app: EmulatorApp) -> dict[str, Any]:
        uf = invoke(app, f"crm.{entity}.userfield.add", fields={"FIELD_NAME": "BUDGET", "USER_TYPE_ID": "string"})
        return {"id": uf, **extra}
    return setup


def with_pipeline(**extra: Any) -> Setup:
    """A setup that adds an extra deal pipeline and passes its id."""
    def setup(app: EmulatorApp) -> dict[str, Any]:
        category = invoke(app, "crm.category.add", entityTypeId=catalog.DEAL, fields={"name": "Тендеры"})
        return {"id": category["category"]["id"], **extra}
    return setup


def status_id(app: EmulatorApp) -> int:
    """The numeric ID of a lead status that holds no leads."""
    return next(int(row["ID"]) for row in app.portal.statuses.values() if row["STATUS_ID"] == "IN_PROCESS")


def with_queue(reserve: bool, **extra: Any) -> Setup:
    """A setup with an offline binding and one queued change; ``reserve`` also takes it under a process_id."""
    def setup(app: EmulatorApp) -> dict[str, Any]:
        invoke(app, "event.bind", event="ONCRMDEALADD", event_type="offline")
        invoke(app, "crm.deal.add", fields={"TITLE": "В очередь"})
        if not reserve:
            return dict(extra)
        taken = invoke(app, "event.offline.get", clear=0)
        return {"process_id": taken["process_id"], **extra}
    return setup


def with_binding(**extra: Any) -> Setup:
    """A setup with one offline binding of this app."""
    def setup(app: EmulatorApp) -> dict[str, Any]:
        invoke(app, "event.bind", event="ONCRMDEALADD", event_type="offline")
        return dict(extra)
    return setup


ROWS: list[tuple[str, str, Setup]] = [
    ("batch", "batch-of-a-write", params(cmd={"a": "crm.deal.add?fields[TITLE]=x"})),
    ("batch", "batch-of-a-read", params(cmd={"a": "crm.deal.list?select[]=ID"})),
    ("crm.category.add", "", params(entityTypeId=catalog.DEAL, fields={"name": "Новая"})),
    ("crm.category.delete", "", with_pipeline(entityTypeId=catalog.DEAL)),
    ("crm.category.fields", "", params(entityTypeId=catalog.DEAL)),
    ("crm.category.get", "", params(entityTypeId=catalog.DEAL, id=0)),
    ("crm.category.list", "", params(entityTypeId=catalog.DEAL)),
    ("crm.category.update", "", params(entityTypeId=catalog.DEAL, id=0, fields={"name": "Продажи"})),
    ("crm.dealcategory.add", "", params(fields={"NAME": "Тендеры"})),
    ("crm.dealcategory.default.get", "", params()),
    ("crm.dealcategory.default.set", "", params(name="Продажи")),
    ("crm.dealcategory.delete", "", with_pipeline()),
    ("crm.dealcategory.fields", "", params()),
    ("crm.dealcategory.get", "", with_pipeline()),
    ("crm.dealcategory.list", "", with_pipeline()),
    ("crm.dealcategory.stage.list", "", with_pipeline()),
    ("crm.dealcategory.status", "", with_pipeline()),
    ("crm.dealcategory.update", "", with_pipeline(fields={"NAME": "Госзаказ"})),
    ("crm.item.add", "", params(entityTypeId=catalog.DEAL, fields={"title": "Сделка"})),
    ("crm.item.delete", "", with_item()),
    ("crm.item.fields", "", params(entityTypeId=catalog.DEAL)),
    ("crm.item.get", "", with_item()),
    ("crm.item.list", "", with_item()),
    ("crm.item.update", "", with_item(fields={"title": "Другая"})),
    ("crm.stagehistory.list", "", with_record("deal", entityTypeId=catalog.DEAL)),
    ("crm.status.add", "", params(fields={"ENTITY_ID": "SOURCE", "STATUS_ID": "FAIR", "NAME": "Ярмарка"})),
    ("crm.status.delete", "", lambda app: {"id": status_id(app)}),
    ("crm.status.entity.items", "", params(entityId=catalog.LEAD_STATUS)),
    ("crm.status.entity.types", "", params()),
    ("crm.status.fields", "", params()),
    ("crm.status.get", "", lambda app: {"id": status_id(app)}),
    ("crm.status.list", "", params()),
    ("crm.status.update", "", lambda app: {"id": status_id(app), "fields": {"NAME": "Звонок", "SORT": 20}}),
    ("event.bind", "", params(event="ONCRMDEALADD", event_type="offline")),
    ("event.get", "", with_binding()),
    ("event.offline.clear", "", with_queue(reserve=True)),
    ("event.offline.error", "", with_queue(reserve=True)),
    ("event.offline.get", "clear-1", with_queue(reserve=False)),
    ("event.offline.get", "clear-0", with_queue(reserve=False, clear=0)),
    ("event.offline.list", "", with_queue(reserve=False)),
    ("event.unbind", "", with_binding(event="ONCRMDEALADD", event_type="offline")),
    ("events", "", params()),
    ("profile", "", params()),
    ("server.time", "", params()),
    ("user.current", "", params()),
    ("user.get", "", params()),
]
for _entity in ENTITIES:
    ROWS += [
        (f"crm.{_entity}.add", "", params(fields={"TITLE": "Новая"})),
        (f"crm.{_entity}.delete", "", with_record(_entity)),
        (f"crm.{_entity}.fields", "", params()),
        (f"crm.{_entity}.get", "", with_record(_entity)),
        (f"crm.{_entity}.list", "", with_record(_entity)),
        (f"crm.{_entity}.update", "", with_record(_entity, fields={"COMMENTS": "изменено"})),
        (f"crm.{_entity}.userfield.add", "", params(fields={"FIELD_NAME": "BUDGET", "USER_TYPE_ID": "string"})),
        (f"crm.{_entity}.userfield.delete", "", with_userfield(_entity)),
        (f"crm.{_entity}.userfield.get", "", with_userfield(_entity)),
        (f"crm.{_entity}.userfield.list", "", with_userfield(_entity)),
        (f"crm.{_entity}.userfield.update", "", with_userfield(_entity, fields={"SORT": 300})),
    ]


def state(app: EmulatorApp) -> dict[str, Any]:
    """Everything the portal holds (its clock and lock aside), copied."""
    return copy.deepcopy({k: v for k, v in vars(app.portal).items() if k not in ("lock", "_clock", "tz")})


def unreserved(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The same state with every offline-queue reservation undone."""
    for row in snapshot["offline_events"].values():
        row["PROCESS_ID"] = None
    return snapshot


def test_every_registered_method_has_a_row() -> None:
    registry.load_methods()
    assert sorted(set(registry.METHODS)) == sorted({method for method, _, _ in ROWS})


@pytest.mark.parametrize("method, setup", [(m, s) for m, _, s in ROWS], ids=[f"{m}[{v}]" if v else m for m, v, _ in ROWS])
def test_a_call_changes_the_portal_exactly_when_the_catalog_says_it_writes(method: str, setup: Setup) -> None:
    app = EmulatorApp(new_portal(), secret="classify", **GENEROUS)
    token = app.add_oauth_client(CLIENT, "secret")["access_token"]
    call_params = setup(app)
    before = state(app)
    reply = app.request("POST", f"/rest/{method}", body=json.dumps({**call_params, "auth": token}),
                        content_type="application/json")
    assert reply.status == 200, reply.json()
    body = reply.json()
    if method == "batch":
        assert body["result"]["result_error"] == [], body
    writes = catalog.is_write(method, call_params)
    after = state(app)
    if method == "event.offline.get" and not writes:  # clear=0: a reservation, not a write
        assert after != before and unreserved(after) == before
    else:
        assert (after != before) == writes, f"{method} {'did not change' if writes else 'changed'} the portal"
    assert app.stats()["writes_total"] == (1 if writes else 0)
    assert registry.lookup(method).writes == catalog.is_write(method)  # the registry asks the catalog too
