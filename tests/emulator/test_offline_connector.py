"""``auth_connector`` on modifying calls: an app's own writes stay out of its offline queue.

Docs (events/offline-events.md, "How to avoid cycles"): a binding made with ``auth_connector`` gets
its own queue, and a modifying call made with the same key is not queued there; other queues
(another key, no key) still get the change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from connector.emulator import pipelines
from tests.conftest import WEBHOOK_CODE

KEY = "mirror"
OTHER = "warehouse"
HOOK = f"/rest/1/{WEBHOOK_CODE}"


@pytest.fixture
def app(make_emulator: Any) -> Any:
    return make_emulator(http=False, oauth=True)


def at(app: Any, text: str) -> None:
    """Freeze the portal clock at an ISO moment."""
    moment = datetime.fromisoformat(text).timestamp()
    app.portal.clock = lambda: moment


def rest(app: Any, method: str, **params: Any) -> Any:
    """Call a method as the OAuth app and return ``result``."""
    reply = app.request("POST", f"/rest/{method}", body=json.dumps({**params, "auth": app.oauth["access_token"]}),
                        content_type="application/json")
    assert reply.status == 200, reply.json()
    return reply.json()["result"]


def hook(app: Any, method: str, **params: Any) -> Any:
    """Call a method through the incoming webhook and return ``result``."""
    reply = app.request("POST", f"{HOOK}/{method}", body=json.dumps(params), content_type="application/json")
    assert reply.status == 200, reply.json()
    return reply.json()["result"]


def bind_all(app: Any, event: str) -> None:
    """Offline bindings of one event: with our key, with another app channel's key, and with none."""
    for connector in (KEY, OTHER, None):
        extra = {} if connector is None else {"auth_connector": connector}
        assert rest(app, "event.bind", event=event, event_type="offline", **extra) is True


def queue(app: Any, connector: str = "") -> list[tuple[str, Any]]:
    """(EVENT_NAME, object ID) of one queue, read without changing it."""
    extra = {"auth_connector": connector} if connector else {}
    rows = rest(app, "event.offline.list", **extra)
    return [(row["EVENT_NAME"], row["EVENT_DATA"]["FIELDS"]["ID"]) for row in rows]


def new_deal(app: Any) -> int:
    return rest(app, "crm.deal.add", fields={"TITLE": "Поставка"})


# each row: event, and a write taking (app, extra params) -> id of the object the event is about
WRITES: list[tuple[str, str, Callable[[Any, dict[str, Any]], int]]] = [
    ("deal-add", "ONCRMDEALADD",
     lambda app, extra: rest(app, "crm.deal.add", fields={"TITLE": "Новая"}, **extra)),
    ("deal-update", "ONCRMDEALUPDATE",
     lambda app, extra: _then(new_deal(app), lambda i: rest(app, "crm.deal.update", id=i, fields={"TITLE": "x"}, **extra))),
    ("deal-delete", "ONCRMDEALDELETE",
     lambda app, extra: _then(new_deal(app), lambda i: rest(app, "crm.deal.delete", id=i, **extra))),
    ("item-move", "ONCRMDEALMOVETOCATEGORY",
     lambda app, extra: _then(new_deal(app), lambda i: rest(
         app, "crm.item.update", entityTypeId=2, id=i,
         fields={"categoryId": pipelines.new_category(app.portal, "Тендеры", 200)["id"]}, **extra))),
    ("item-add-company", "ONCRMCOMPANYADD",
     lambda app, extra: rest(app, "crm.item.add", entityTypeId=4, fields={"title": "Фирма"}, **extra)["item"]["id"]),
    ("lead-update", "ONCRMLEADUPDATE",
     lambda app, extra: _then(rest(app, "crm.lead.add", fields={}), lambda i: rest(
         app, "crm.lead.update", id=i, fields={"STATUS_ID": "IN_PROCESS"}, **extra))),
    ("contact-item-delete", "ONCRMCONTACTDELETE",
     lambda app, extra: _then(rest(app, "crm.contact.add", fields={"NAME": "Я"}), lambda i: rest(
         app, "crm.item.delete", entityTypeId=3, id=i, **extra))),
    ("userfield-add", "ONCRMDEALUSERFIELDADD",
     lambda app, extra: rest(app, "crm.deal.userfield.add", fields={"FIELD_NAME": "BUDGET", "USER_TYPE_ID": "double"},
                             **extra)),
]


def _then(object_id: int, write: Callable[[int], Any]) -> int:
    """Run a write on an object made before the bindings; return the object's id."""
    write(object_id)
    return object_id


@pytest.mark.parametrize("event, write", [(e, w) for _, e, w in WRITES], ids=[name for name, _, _ in WRITES])
def test_write_with_the_key_is_not_queued_for_that_key(app: Any, event: str, write: Any) -> None:
    bind_all(app, event)
    object_id = write(app, {"auth_connector": KEY})
    assert queue(app, KEY) == []
    assert queue(app, OTHER) == [(event, object_id)]
    assert queue(app) == [(event, object_id)]


@pytest.mark.parametrize("event, write", [(e, w) for _, e, w in WRITES], ids=[name for name, _, _ in WRITES])
def test_write_without_the_key_is_queued_everywhere(app: Any, event: str, write: Any) -> None:
    bind_all(app, event)
    object_id = write(app, {})
    for connector in (KEY, OTHER, ""):
        assert queue(app, connector) == [(event, object_id)]


def test_own_write_leaves_a_pending_record_of_the_object_alone(app: Any) -> None:
    bind_all(app, "ONCRMDEALUPDATE")
    deal = new_deal(app)
    at(app, "2026-03-02T10:00:00+03:00")
    rest(app, "crm.deal.update", id=deal, fields={"TITLE": "менеджер"})  # someone else's change
    pending = rest(app, "event.offline.list", auth_connector=KEY)
    at(app, "2026-03-02T11:00:00+03:00")
    rest(app, "crm.deal.update", id=deal, fields={"TITLE": "синхронизация"}, auth_connector=KEY)
    assert rest(app, "event.offline.list", auth_connector=KEY) == pending  # not replaced, not removed
    other = rest(app, "event.offline.list", auth_connector=OTHER)
    assert [row["TIMESTAMP_X"] for row in other] == ["2026-03-02T11:00:00+03:00"]  # latest change wins there


def test_key_travels_through_webhook_form_and_batch(app: Any) -> None:
    bind_all(app, "ONCRMDEALUPDATE")
    first, second = new_deal(app), new_deal(app)
    form = f"id={first}&fields[TITLE]=a&auth_connector={KEY}"
    reply = app.request("POST", f"{HOOK}/crm.deal.update", body=form, content_type="application/x-www-form-urlencoded")
    assert reply.json()["result"] is True
    result = hook(app, "batch", cmd={"b": f"crm.deal.update?id={second}&fields[TITLE]=b&auth_connector={KEY}"})
    assert result["result"] == {"b": True}
    assert queue(app, KEY) == []
    assert sorted(queue(app, OTHER)) == [("ONCRMDEALUPDATE", first), ("ONCRMDEALUPDATE", second)]


def test_empty_key_is_no_key(app: Any) -> None:
    bind_all(app, "ONCRMDEALUPDATE")
    deal = new_deal(app)
    rest(app, "crm.deal.update", id=deal, fields={"TITLE": "x"}, auth_connector="")
    assert queue(app) == queue(app, KEY) == queue(app, OTHER) == [("ONCRMDEALUPDATE", deal)]


@pytest.mark.parametrize("event, write", [(e, w) for _, e, w in WRITES], ids=[name for name, _, _ in WRITES])
def test_queued_record_names_the_user_who_made_the_change(app: Any, event: str, write: Any) -> None:
    bind_all(app, event)
    app.portal.oauth["access"][app.oauth["access_token"]]["user_id"] = 7  # the app now acts for user 7
    write(app, {})
    rows = rest(app, "event.offline.list")
    assert [row["EVENT_ADDITIONAL"] for row in rows] == [{"user_id": "7"}]


def test_webhook_write_is_recorded_as_made_by_the_webhook_user(app: Any) -> None:
    bind_all(app, "ONCRMDEALADD")
    app.add_webhook("hook-of-user-5", 5)
    reply = app.request("POST", "/rest/5/hook-of-user-5/crm.deal.add", body=json.dumps({"fields": {"TITLE": "x"}}),
                        content_type="application/json")
    assert reply.status == 200
    assert [row["EVENT_ADDITIONAL"]["user_id"] for row in rest(app, "event.offline.list")] == ["5"]
