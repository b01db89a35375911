"""user.get, user.current, profile and server.time of the emulated portal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connector.emulator.methods.users import new_user
from connector.emulator.registry import Call, dispatch, invoke


def test_default_admin_is_user_one(portal: Any) -> None:
    [admin] = invoke(portal, "user.get", {})
    assert admin["ID"] == "1" and admin["ACTIVE"] is True and admin["UF_DEPARTMENT"] == [1]
    assert admin["NAME"] and admin["LAST_NAME"] and admin["USER_TYPE"] == "employee"
    assert invoke(portal, "user.current", {})["ID"] == "1"
    profile = invoke(portal, "profile", {})
    assert (profile["ID"], profile["ADMIN"], profile["TIME_ZONE_OFFSET"]) == ("1", True, 3 * 3600)


def test_user_get_filters_sorts_and_pages(portal: Any) -> None:
    for i in range(60):
        new_user(portal, name=f"Иван{i:02d}" if i % 2 else f"Олег{i:02d}", last_name="Петров" if i < 10 else "Сидоров",
                 active=i != 5, department=2 if i % 3 == 0 else 1)
    page = dispatch(Call(portal, "user.get", {}))
    assert (len(page.result), page.total, page.next) == (50, 61, 50)
    second = dispatch(Call(portal, "user.get", {"start": 50}))
    assert [u["ID"] for u in second.result][0] == "51" and second.next is None
    assert [u["ID"] for u in invoke(portal, "user.get", {"ID": 3})] == ["3"]  # filter keys at the top level
    assert len(invoke(portal, "user.get", {"FILTER": {"LAST_NAME": "Петров"}})) == 10
    assert len(invoke(portal, "user.get", {"filter": {"NAME": "Иван%"}})) == 30  # % in a plain value is LIKE
    assert len(invoke(portal, "user.get", {"filter": {"!%LAST_NAME": "сидор"}})) == 11
    assert [u["ID"] for u in invoke(portal, "user.get", {"ACTIVE": False})] == ["7"]
    assert len(invoke(portal, "user.get", {"UF_DEPARTMENT": 2})) == 20
    assert [u["ID"] for u in invoke(portal, "user.get", {"sort": "ID", "order": "desc"})][:2] == ["61", "60"]
    assert invoke(portal, "user.get", {"SORT": "NAME", "ORDER": "ASC"})[0]["NAME"] == "Андрей"
    assert [u["ID"] for u in invoke(portal, "user.get", {"filter": {"NAME_SEARCH": "иван05"}})] == ["7"]
    counted_off = dispatch(Call(portal, "user.get", {"start": -1}))
    assert (counted_off.total, counted_off.next) == (0, None)


def test_server_time_is_iso_with_the_portal_offset(portal: Any) -> None:
    portal.clock = lambda: datetime.fromisoformat("2026-11-26T09:00:00+00:00").timestamp()
    assert invoke(portal, "server.time") == "2026-11-26T12:00:00+03:00"
