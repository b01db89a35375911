"""The official Python SDK (``b24pysdk``), unchanged, against the emulator over real HTTPS on loopback.

The SDK takes a portal domain and builds ``https://DOMAIN/rest/USER/CODE/METHOD.json`` itself, as
for a cloud portal; it trusts the emulator's self-signed certificate through ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from b24pysdk import BitrixWebhook, Client
from b24pysdk.errors import BitrixRequestError

from connector.emulator.app import EmulatorApp
from connector.emulator.server import EmulatorServer
from connector.emulator.tls import self_signed, server_context
from tests.conftest import GENEROUS

CODE = "sdk-webhook-code"


@pytest.fixture
def https_emulator(portal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    server = EmulatorServer(EmulatorApp(portal, secret=CODE, **GENEROUS), tls=server_context(cert, key)).start()
    yield server
    server.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_sdk_adds_lists_and_gets_deals_and_users(https_emulator: EmulatorServer, host: str) -> None:
    assert https_emulator.url.startswith("https://")
    client = Client(BitrixWebhook(domain=f"{host}:{https_emulator.port}", webhook_token=f"1/{CODE}"))

    deal_id = client.crm.deal.add(fields={"TITLE": "Поставка оборудования", "OPPORTUNITY": 120000}).result
    assert https_emulator.portal.records["deal"][deal_id]["TITLE"] == "Поставка оборудования"

    listed = client.crm.deal.list(select=["ID", "TITLE", "OPPORTUNITY"]).result
    assert listed == [{"ID": str(deal_id), "TITLE": "Поставка оборудования", "OPPORTUNITY": "120000.00"}]

    deal = client.crm.deal.get(bitrix_id=deal_id).result
    assert deal["ID"] == str(deal_id) and deal["STAGE_ID"] == "NEW"

    users = client.user.get().result
    assert [user["ID"] for user in users] == ["1"] and users[0]["LAST_NAME"] == "Соколов"
    assert https_emulator.stats()["by_method"]["crm.deal.add"] == 1


def test_the_sdk_refuses_the_emulator_it_was_not_told_to_trust(https_emulator: EmulatorServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    client = Client(BitrixWebhook(domain=f"127.0.0.1:{https_emulator.port}", webhook_token=f"1/{CODE}"),
                    max_retries=1)
    with pytest.raises(BitrixRequestError) as caught:
        client.crm.deal.list().result
    assert isinstance(caught.value.__cause__, requests.exceptions.SSLError)
    assert https_emulator.portal.records["deal"] == {}
