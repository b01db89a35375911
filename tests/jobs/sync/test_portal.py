"""The mirror knows its portal: address with port, never the webhook code; another portal is refused with no write."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from jobs.sync import OtherPortal
from jobs.sync.portal import identity_of, normalize
from mappings import tables
from tests.jobs.sync.conftest import client_of, snapshot, sync


@pytest.mark.parametrize(("url", "address"), [
    ("https://Example.bitrix24.ru/rest/1/code/", "https://example.bitrix24.ru:443"),
    ("https://example.bitrix24.ru:8443/rest/1/code/", "https://example.bitrix24.ru:8443"),
    ("http://127.0.0.1/rest/", "http://127.0.0.1:80"),
    ("https://[::1]:9000/rest/", "https://[::1]:9000"),
])
def test_addresses(url: str, address: str) -> None:
    assert normalize(url) == address


def test_a_mirror_of_portal_a_refuses_portal_b(make_emulator: Any, mirror_engine: Any) -> None:
    portal_a = make_emulator(seed=3, deals=40)
    portal_b = make_emulator(seed=4, deals=40)
    assert sync(portal_a, mirror_engine).ok
    with mirror_engine.connect() as conn:
        row = conn.execute(sa.select(tables.b24sync_portal)).mappings().one()
    assert row["address"] == normalize(portal_a.url) and "test-webhook-code" not in str(dict(row))
    before = snapshot(mirror_engine)
    with mirror_engine.connect() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(tables.b24sync_run)).scalar()
    with pytest.raises(OtherPortal) as caught:
        sync(portal_b, mirror_engine)
    message = str(caught.value)
    assert normalize(portal_a.url) in message and normalize(portal_b.url) in message and "nothing was written" in message
    assert "test-webhook-code" not in message
    assert snapshot(mirror_engine) == before
    with mirror_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.b24sync_run)).scalar() == runs


def test_oauth_clients_are_known_by_their_endpoint(make_emulator: Any) -> None:
    server = make_emulator(oauth=True)
    identity = identity_of(client_of(server, oauth=True))
    assert identity.address == normalize(server.oauth_url)
