"""Helpers of the mirror tests: clients for an emulator, a sync call, and the check that a mirror equals its portal.

- ``client_of(target)``: a Bitrix24Client for an ``EmulatorServer`` (HTTP) or an ``EmulatorApp`` (in-process).
- ``sync(target, engine, **kw)``: ``run_sync`` with a fresh client; returns the ``SyncResult``.
- ``assert_mirror(engine, app)``: every table equals what the portal lists, field for field (see ``MirrorCheck``).
- ``requests_of(server)``: HTTP requests the emulator has served (its ``/_emulator/stats``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.request import urlopen

import pytest
import sqlalchemy as sa

from connector.auth import OAuthAuth, Tokens, WebhookAuth
from connector.client import Bitrix24Client, RetryPolicy
from connector.emulator.app import EmulatorApp
from connector.ratelimit import RequestPacer
from connector.transport import HttpTransport, WsgiTransport
from jobs.sync import run_sync
from mappings import entities as ent, tables
from tests.conftest import FakeClock

WEBHOOK_CODE = "test-webhook-code"
UTC = timezone.utc
FAST_RETRY = RetryPolicy(attempts=8, max_elapsed=60.0, base=0.01, cap=0.2)


def client_of(target: Any, *, retry: RetryPolicy = FAST_RETRY, oauth: bool = False, bucket: Any = None) -> Bitrix24Client:
    """A client for an emulator served over HTTP (``EmulatorServer``) or in-process (``EmulatorApp``).

    Its own pacing is generous (the test emulators are) unless ``bucket`` says otherwise.
    """
    bucket = bucket if bucket is not None else RequestPacer(burst=1e9, rate=1e9)
    if isinstance(target, EmulatorApp):
        auth: Any = WebhookAuth(f"http://portal.test:80/rest/1/{WEBHOOK_CODE}/")
        if oauth:
            tokens = target.oauth
            auth = OAuthAuth(tokens["client_id"], tokens["client_secret"],
                             Tokens.from_reply({**tokens, "client_endpoint": "http://portal.test:80/rest/"}))
        return Bitrix24Client(WsgiTransport(target), auth, retry=retry, bucket=bucket)
    if oauth:
        tokens = target.oauth
        auth = OAuthAuth(tokens["client_id"], tokens["client_secret"], Tokens.from_reply(tokens))
        return Bitrix24Client(HttpTransport(), auth, retry=retry, bucket=bucket)
    return Bitrix24Client(HttpTransport(), WebhookAuth(target.url), retry=retry, bucket=bucket)


def sync(target: Any, engine: Any, **options: Any) -> Any:
    """One ``run_sync`` with a fresh client for ``target``."""
    oauth = options.pop("oauth", False)
    client = client_of(target, oauth=oauth)
    try:
        return run_sync(client, engine, **options)
    finally:
        client.close()


def requests_of(server: Any) -> int:
    """HTTP requests to ``/rest/`` an emulator server has answered."""
    with urlopen(f"{server.base_url}/_emulator/stats", timeout=10) as reply:  # noqa: S310 - loopback
        return int(json.loads(reply.read())["requests_total"])


def rows(engine: Any, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
    """Every row of a table (in primary-key order) as dicts."""
    with engine.connect() as conn:
        query = sa.select(table).where(*where).order_by(*table.primary_key.columns)
        return [dict(r) for r in conn.execute(query).mappings()]


def count(engine: Any, table: sa.Table | str, *where: Any) -> int:
    """Rows in a table."""
    if isinstance(table, str):
        table = sa.table(table)
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar() or 0)


def uf_rows(engine: Any, entity: str) -> dict[int, dict[str, Any]]:
    """The ``crm_<entity>_uf`` rows by record ID, with whatever user-field columns the table has now."""
    stream = ent.STREAMS[entity]
    with engine.connect() as conn:
        table = sa.Table(stream.uf_table, sa.MetaData(), autoload_with=conn)
        return {r[stream.uf_key]: dict(r) for r in conn.execute(sa.select(table)).mappings()}


def snapshot(engine: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of every mirror table (to compare before and after a run)."""
    with engine.connect() as conn:
        out = {}
        for name in sa.inspect(conn).get_table_names():
            if name in ("alembic_version", "b24sync_lease", "b24sync_run", "b24sync_portal"):  # bookkeeping of runs
                continue
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            out[name] = sorted((json.dumps(dict(r), default=str, sort_keys=True) for r in conn.execute(sa.select(table)).mappings()))
        return out


def listed(app: EmulatorApp, method: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every row a list method returns now (read in-process, so the check costs no HTTP request)."""
    client = client_of(app)
    if method == "crm.stagehistory.list":
        return list(client.list_all(method, entity_type_id=(params or {}).get("entityTypeId")))
    return list(client.list_all(method, select=(params or {}).get("select")))


def clocked_app(make_emulator: Any, tz: str = "+03:00", **options: Any) -> tuple[EmulatorApp, FakeClock]:
    """An in-process emulator on a fresh portal whose clock (records and reply time blocks) the test sets."""
    from connector.emulator import new_portal

    portal = new_portal(tz, **options)
    clock = FakeClock()
    portal.clock = clock
    return make_emulator(portal, http=False, clock=clock), clock


def _moment(text: Any) -> datetime | None:
    if text in (None, ""):
        return None
    return datetime.fromisoformat(str(text)).astimezone(UTC)


def _same_value(got: Any, value: Any) -> bool:
    """A typed user-field column against the portal's text, compared by the column's type."""
    if isinstance(got, bool):
        return got is (str(value) in ("1", "Y"))
    if isinstance(got, int):
        return got == int(value)
    if isinstance(got, datetime):
        return (got if got.tzinfo else got.replace(tzinfo=UTC)) == _moment(value)  # reflected: SQLite keeps naive UTC
    if hasattr(got, "isoformat"):
        return got.isoformat() == str(value)[:10]
    return str(got) == str(value)


class MirrorCheck:
    """Compares a mirror with the portal behind an emulator app, table by table, field for field."""

    def __init__(self, engine: Any, app: EmulatorApp):
        self.engine = engine
        # its own app on the same portal: no faults, no latency, no limits, whatever the tested app has
        self.app = EmulatorApp(app.portal, secret=WEBHOOK_CODE, rate=1e9, burst=1e9, operating_budget=1e12)
        self.portal = app.portal

    def records(self, entity: str) -> None:
        """``crm_<entity>``: every listed record present, equal raw and typed columns, vanished ones marked."""
        stream = ent.STREAMS[entity]
        table = tables.ENTITY_TABLES[entity]
        select = list(stream.select) + [r["FIELD_NAME"] for r in self.uf_definitions(entity) if r.get("MULTIPLE") == "Y"]
        portal_rows = {int(r["ID"]): r for r in listed(self.app, stream.list_method, {"select": select})}
        mirror = {r["id"]: r for r in rows(self.engine, table)}
        missing = sorted(set(portal_rows) - set(mirror))
        assert not missing, f"{entity}: {len(missing)} record(s) missing from the mirror, e.g. {missing[:5]}"
        for key, record in portal_rows.items():
            row = mirror[key]
            assert row["deleted_at"] is None, f"{entity} {key} is on the portal but marked deleted"
            assert row["raw"] == record, f"{entity} {key}: raw differs"
            self._typed(entity, row, record)
        vanished = [k for k, r in mirror.items() if k not in portal_rows and r["deleted_at"] is None]
        assert not vanished, f"{entity}: {len(vanished)} record(s) deleted on the portal but not marked, e.g. {vanished[:5]}"
        if stream.multi_fields:
            self._multifields(stream, portal_rows)
        self._userfields(entity, portal_rows)

    def _typed(self, entity: str, row: dict[str, Any], record: dict[str, Any]) -> None:
        """Key columns checked against values parsed here independently of mappings.fields."""
        assert row["id"] == int(record["ID"])
        assert row["date_modify"] == _moment(record["DATE_MODIFY"])
        assert row["date_create"] == _moment(record["DATE_CREATE"])
        assert row["assigned_by_id"] == (int(record["ASSIGNED_BY_ID"]) if record.get("ASSIGNED_BY_ID") else None)
        if entity == "deal":
            assert row["title"] == record["TITLE"]
            assert row["stage_id"] == record["STAGE_ID"]
            assert row["category_id"] == int(record["CATEGORY_ID"])
            assert row["stage_semantic_id"] == record["STAGE_SEMANTIC_ID"]
            assert row["opportunity"] == Decimal(record["OPPORTUNITY"])
            assert row["closed"] is (record["CLOSED"] == "Y")
            local = datetime.fromisoformat(record["CLOSEDATE"]) if record.get("CLOSEDATE") else None
            assert row["closedate"] == (local.date() if local else None)
        if entity == "lead":
            assert row["status_id"] == record["STATUS_ID"]
            assert row["opportunity"] == Decimal(record["OPPORTUNITY"])

    def _multifields(self, stream: ent.Stream, portal_rows: dict[int, dict[str, Any]]) -> None:
        table = tables.crm_multifield
        have = {(r["owner_id"], r["item_id"]): r for r in rows(self.engine, table, table.c.entity_type_id == stream.entity_type_id)}
        want = {}
        for key, record in portal_rows.items():
            for type_id in stream.multi_fields:
                for item in record.get(type_id) or ():
                    want[(key, int(item["ID"]))] = (item["TYPE_ID"], item["VALUE_TYPE"], item["VALUE"])
        live = {k: (r["type_id"], r["value_type"], r["value"]) for k, r in have.items() if k[0] in portal_rows}
        assert live == want, f"{stream.name}: multi-fields differ"

    def _userfields(self, entity: str, portal_rows: dict[int, dict[str, Any]]) -> None:
        stored = uf_rows(self.engine, entity)
        assert set(portal_rows) <= set(stored), f"{entity}: records without a user-field row"
        for key, record in portal_rows.items():
            for name, value in record.items():
                if not name.startswith("UF_"):
                    continue
                column = name.lower()
                got = stored[key].get(column)
                if isinstance(value, list):
                    assert got == value, f"{entity} {key} {name}: {got!r} != {value!r}"
                elif value in (None, ""):
                    assert got in (None, ""), f"{entity} {key} {name}: {got!r} != {value!r}"
                else:
                    assert _same_value(got, value), f"{entity} {key} {name}: {got!r} != {value!r}"

    def uf_definitions(self, entity: str) -> list[dict[str, Any]]:
        """The portal's user-field definitions of an entity."""
        return client_of(self.app).result(f"crm.{entity}.userfield.list", {})

    def history(self, name: str, ever_seen: set[int] | None = None) -> None:
        """History rows listed now are present and equal; rows ever seen are still there; none is duplicated."""
        stream = ent.STREAMS[name]
        table = tables.HISTORY_TABLES[name]
        portal_rows = {int(r["ID"]): r for r in listed(self.app, stream.list_method, {"entityTypeId": stream.entity_type_id})}
        mirror = {r["id"]: r for r in rows(self.engine, table)}
        missing = sorted(set(portal_rows) - set(mirror))
        assert not missing, f"{name}: {len(missing)} history row(s) missing, e.g. {missing[:5]}"
        for key, item in portal_rows.items():
            assert mirror[key]["raw"] == item, f"{name} {key}: raw differs"
            assert mirror[key]["date_create"] == _moment(item["CREATED_TIME"])
        lost = sorted((ever_seen or set()) - set(mirror))
        assert not lost, f"{name}: {len(lost)} history row(s) once listed are gone from the mirror, e.g. {lost[:5]}"
        assert_stays(self.engine, table)

    def dictionaries(self) -> None:
        """Statuses, pipelines, users and user-field definitions equal the portal's (vanished ones marked)."""
        client = client_of(self.app)
        statuses = {int(r["ID"]): r for r in client.result("crm.status.list", {})}
        mirror = {r["id"]: r for r in rows(self.engine, tables.crm_status)}
        assert {k for k, r in mirror.items() if r["deleted_at"] is None} == set(statuses)
        assert all(mirror[k]["raw"] == r for k, r in statuses.items())
        categories = {int(r["id"]): r for r in client.result("crm.category.list", {"entityTypeId": 2})["categories"]}
        mirror = {r["id"]: r for r in rows(self.engine, tables.crm_deal_category)}
        assert {k for k, r in mirror.items() if r["deleted_at"] is None} == set(categories)
        users = {int(r["ID"]): r for r in client.list_all("user.get")}
        mirror = {r["id"]: r for r in rows(self.engine, tables.users)}
        assert {k for k, r in mirror.items() if r["deleted_at"] is None} == set(users)
        assert all(mirror[k]["raw"] == r for k, r in users.items())
        for entity in ent.ENTITIES:
            names = {r["FIELD_NAME"] for r in self.uf_definitions(entity)}
            table = tables.crm_userfield
            stored = rows(self.engine, table, table.c.entity_id == f"CRM_{entity.upper()}")
            assert {r["field_name"] for r in stored if r["deleted_at"] is None} == names

    def unique_keys(self) -> None:
        """No duplicate keys anywhere (the primary keys say so; checked by counting as well)."""
        with self.engine.connect() as conn:
            for table in tables.metadata.sorted_tables:
                keys = [c for c in table.primary_key.columns]
                total = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                distinct = conn.execute(sa.select(sa.func.count()).select_from(sa.select(*keys).distinct().subquery())).scalar()
                assert total == distinct, f"{table.name}: duplicate keys"

    def everything(self, ever_seen: dict[str, set[int]] | None = None) -> None:
        """Every check above."""
        self.dictionaries()
        for entity in ent.ENTITIES:
            self.records(entity)
        for name in ent.HISTORIES:
            self.history(name, (ever_seen or {}).get(name))
        self.unique_keys()


def assert_stays(engine: Any, table: sa.Table) -> None:
    """Every history row's ``stay_seconds`` is the time to its card's next row by ID (None on the last), and
    the card's last row in each pipeline carries the stages of its rows there (``visited``), the others none."""
    owner = "deal_id" if "deal_id" in table.c else "lead_id"
    stage = "stage_id" if "stage_id" in table.c else "status_id"
    by_card: dict[Any, list[dict[str, Any]]] = {}
    for row in sorted(rows(engine, table), key=lambda r: r["id"]):
        by_card.setdefault(row[owner], []).append(row)
    for card, path in by_card.items():
        expected = [(b["date_create"] - a["date_create"]).total_seconds() for a, b in zip(path, path[1:])] + [None]
        assert [r["stay_seconds"] for r in path] == expected, f"{table.name}, card {card}: stays differ"
        pipelines = {r.get("category_id") for r in path}
        for pipeline in pipelines:
            here = [r for r in path if r.get("category_id") == pipeline]
            visited = [set(filter(None, r["visited"].split(","))) if r["visited"] is not None else None for r in here]
            assert visited == [None] * (len(here) - 1) + [{r[stage] for r in here if r[stage]}], \
                f"{table.name}, card {card}, pipeline {pipeline}: visited differs"


def assert_mirror(engine: Any, app: EmulatorApp, ever_seen: dict[str, set[int]] | None = None) -> None:
    """The mirror behind ``engine`` equals the portal behind ``app`` in every table."""
    MirrorCheck(engine, app).everything(ever_seen)


@pytest.fixture
def wrap_method(monkeypatch: Any) -> Any:
    """``wrap_method(name, wrapper)``: the emulator calls ``wrapper(call, original_handler)`` for ``name`` in this test."""
    import dataclasses

    from connector.emulator import registry

    def wrap(name: str, wrapper: Any) -> None:
        """Put ``wrapper`` in front of the method's handler for this test."""
        spec = registry.lookup(name)
        assert spec is not None, name
        original = spec.handler
        monkeypatch.setitem(registry.METHODS, name.lower(), dataclasses.replace(spec, handler=lambda call: wrapper(call, original)))

    return wrap


@pytest.fixture
def app(make_emulator: Any) -> EmulatorApp:
    """An in-process emulator on a fresh portal (generous limits)."""
    return make_emulator(http=False)
