"""A third-party Bitrix24 client, fast_bitrix24, unchanged against the emulator over real HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fast_bitrix24 import Bitrix

SEED = 24
DEALS = 3000  # more than one batch of 50 pages, so get_all needs several HTTP requests


@pytest.fixture
def client_loop() -> Any:
    """fast_bitrix24's sync wrapper runs its coroutines on the thread's event loop: give it a fresh one."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def seeded(make_emulator: Any) -> Any:
    """A seeded portal behind the real default limits (burst 50, 2 requests a second)."""
    return make_emulator(seed=SEED, deals=DEALS, rate=2, burst=50, operating_budget=480)


def test_get_all_returns_every_deal_exactly_once(seeded: Any, client_loop: Any) -> None:
    deals = Bitrix(seeded.url, verbose=False).get_all("crm.deal.list", {"select": ["ID", "TITLE", "STAGE_ID"]})
    ids = [deal["ID"] for deal in deals]
    assert len(ids) == len(set(ids))
    assert set(ids) == {str(key) for key in seeded.portal.records["deal"]}
    assert all(isinstance(deal["ID"], str) and deal["STAGE_ID"] for deal in deals)
    stats = seeded.stats()
    assert stats["rejected_503"] == 0
    assert stats["by_method"]["batch"] >= 2  # pages beyond the first come through batch
    assert stats["by_method"]["crm.deal.list"] >= len(ids) // 50


def test_get_all_with_filter(seeded: Any, client_loop: Any) -> None:
    won = Bitrix(seeded.url, verbose=False).get_all("crm.deal.list", {"filter": {"STAGE_ID": "WON"}, "select": ["ID"]})
    expected = {str(k) for k, deal in seeded.portal.records["deal"].items() if deal["STAGE_ID"] == "WON"}
    assert expected and {d["ID"] for d in won} == expected


def test_call_batch_and_get_by_id(seeded: Any, client_loop: Any) -> None:
    b = Bitrix(seeded.url, verbose=False)
    some = sorted(seeded.portal.records["deal"])[:3]
    result = b.call_batch({
        "halt": 0,
        "cmd": {
            "first": f"crm.deal.get?id={some[0]}",
            "page": "crm.deal.list?select[]=ID&start=-1&order[ID]=ASC",
            "next": "crm.deal.list?select[]=ID&start=-1&order[ID]=ASC&filter[>ID]=$result[page][49][ID]",
        },
    })
    assert result["first"]["ID"] == str(some[0])
    assert [d["ID"] for d in result["page"]] == [str(i) for i in sorted(seeded.portal.records["deal"])[:50]]
    assert int(result["next"][0]["ID"]) > int(result["page"][-1]["ID"])

    by_id = b.get_by_ID("crm.deal.get", some)
    assert sorted(int(k) for k in by_id) == some
    assert all(by_id[k]["ID"] == str(k) for k in by_id)


def test_call_writes_a_list_of_items(make_emulator: Any, client_loop: Any) -> None:
    emulator = make_emulator()
    b = Bitrix(emulator.url, verbose=False)
    ids = b.call("crm.deal.add", [{"fields": {"TITLE": f"Сделка {i}"}} for i in range(3)])
    assert len(ids) == 3
    titles = {emulator.portal.records["deal"][int(i)]["TITLE"] for i in ids}
    assert titles == {"Сделка 0", "Сделка 1", "Сделка 2"}
    assert emulator.stats()["writes_total"] == 3


def test_get_all_survives_injected_faults(make_emulator: Any, client_loop: Any) -> None:
    emulator = make_emulator(seed=SEED, deals=DEALS)
    emulator.app.faults.push("5xx", None, "html", "cut", "5xx", "reset")
    deals = Bitrix(emulator.url, verbose=False).get_all("crm.deal.list", {"select": ["ID"]})
    ids = [deal["ID"] for deal in deals]
    assert len(ids) == len(set(ids)) == len(emulator.portal.records["deal"])
    assert emulator.stats()["faults"] == {"5xx": 2, "html": 1, "cut": 1, "reset": 1}
