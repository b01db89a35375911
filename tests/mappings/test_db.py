"""mappings.db: where the mirror is, engines on both databases, masked passwords, bulk upserts, UTC and money types."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from mappings import db, tables
from mappings.config import DatabaseConfig

MSK = timezone(timedelta(hours=3))


@pytest.mark.parametrize(("flag", "env", "config", "expected", "source"), [
    ("sqlite:///flag.db", {"B24SYNC_DB": "sqlite:///env.db", "MY_DB": "sqlite:///cfg-env.db"},
     {"url_env": "MY_DB", "url": "sqlite:///cfg.db"}, "sqlite:///flag.db", "--db"),
    (None, {"B24SYNC_DB": "sqlite:///env.db", "MY_DB": "sqlite:///cfg-env.db"},
     {"url_env": "MY_DB", "url": "sqlite:///cfg.db"}, "sqlite:///env.db", "B24SYNC_DB"),
    (None, {"MY_DB": "sqlite:///cfg-env.db"}, {"url_env": "MY_DB", "url": "sqlite:///cfg.db"}, "sqlite:///cfg-env.db", "$MY_DB ([database] url_env)"),
    (None, {}, {"url_env": "MY_DB", "url": "sqlite:///cfg.db"}, "sqlite:///cfg.db", "[database] url"),
    (None, {}, None, "sqlite:///b24sync.sqlite3", "default"),
], ids=["flag", "env", "config-env", "config-url", "default"])
def test_where_the_mirror_is(flag: Any, env: dict[str, str], config: Any, expected: str, source: str) -> None:
    database = DatabaseConfig(url=SecretStr(config["url"]), url_env=config["url_env"]) if config else None
    target = db.resolve(flag, database, env)
    assert (target.url, target.source) == (expected, source)


def test_passwords_are_masked_everywhere() -> None:
    url = "postgresql+psycopg://mirror:s3cr3t-pw@127.0.0.1:1/b24"
    assert "s3cr3t-pw" not in db.mask_url(url) and "***" in db.mask_url(url)
    assert "s3cr3t-pw" not in db.mask_url("postgresql://mirror:s3cr3t-pw@[bad")
    target = db.Target(url, "portal_a")
    assert "s3cr3t-pw" not in repr(target) and "s3cr3t-pw" not in target.shown and "portal_a" in target.shown
    engine = db.open_engine(target)
    with pytest.raises(db.MirrorDatabaseError) as caught:
        db.check(engine)
    assert "s3cr3t-pw" not in str(caught.value) and "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "not a database URL"),
    ("mysql://u@h/db", "SQLite or PostgreSQL"),
    ("postgresql+nodriver://u@h/db", "Can't load plugin"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(db.MirrorDatabaseError, match=message):
        db.open_engine(url)


def test_schema_names_are_checked() -> None:
    with pytest.raises(db.MirrorDatabaseError):
        db.check_schema("Robert'); DROP")


def test_the_config_names_the_schema() -> None:
    from mappings.config import ConfigError
    from mappings.loader import parse_config
    from tests.jobs.provision.conftest import EXAMPLE

    base = EXAMPLE.read_text(encoding="utf-8").replace(
        'url = "sqlite:///b24sync.sqlite3"', 'url = "postgresql+psycopg://u@db.example/mirror"\nschema = "acme"')
    config = parse_config(base)
    target = db.resolve(None, config.database, environ={})
    assert target.schema == "acme" and target.source == "[database] url" and "(schema acme)" in target.shown
    assert db.resolve("postgresql+psycopg://u@other/x", config.database, environ={}).schema == "acme"
    with pytest.raises(ConfigError) as caught:
        parse_config(base.replace('schema = "acme"', 'schema = "Acme; DROP"'))
    assert "database.schema" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config(base.replace('schema = "acme"', 'shema = "acme"'))
    assert "schema" in str(caught.value) and "shema" in str(caught.value)


def test_sqlite_is_wal_with_a_busy_timeout_and_not_created_by_reading(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    engine = db.open_engine(f"sqlite:///{path}")
    db.check(engine)
    assert db.current(engine) is None and not db.exists(engine) and not path.exists()
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_MS
    with pytest.raises(db.MirrorDatabaseError, match="does not exist"):
        db.check(db.open_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"))


def test_one_schema_per_portal(mirror_backend: str, pg_session_url: Any, tmp_path: Path) -> None:
    """PostgreSQL keeps a portal's mirror in its own schema; SQLite (a file per mirror) refuses the setting."""
    if mirror_backend == "sqlite":
        with pytest.raises(db.MirrorDatabaseError, match="PostgreSQL"):
            db.open_engine(db.Target(f"sqlite:///{tmp_path / 'x.db'}", "portal_one"))
        return
    engine = db.open_engine(db.Target(pg_session_url, "portal_one"))
    try:
        db.upgrade(engine)
        assert db.current_schema(engine) == "portal_one"
        with engine.connect() as conn:
            assert "crm_deal" in sa.inspect(conn).get_table_names(schema="portal_one")
            assert "crm_deal" not in sa.inspect(conn).get_table_names(schema="public")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql('DROP SCHEMA IF EXISTS "portal_one" CASCADE')
        engine.dispose()


def test_upsert_inserts_updates_and_keeps(mirror_engine: Any) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=MSK)
    rows = [{"id": i, "title": f"d{i}", "opportunity": Decimal("0.10") * i, "date_modify": now, "raw": {"ID": str(i)}, "synced_at": now}
            for i in range(1, 1201)]
    with db.begin_write(mirror_engine) as conn:
        db.upsert(conn, tables.crm_deal, rows)
        db.upsert(conn, tables.crm_deal, [{**rows[0], "title": "changed"}])
        db.upsert(conn, tables.crm_deal, [{**rows[1], "title": "kept"}], update=[])
    with mirror_engine.connect() as conn:
        got = {r["id"]: r for r in conn.execute(sa.select(tables.crm_deal)).mappings()}
    assert len(got) == 1200 and got[1]["title"] == "changed" and got[2]["title"] == "d2"
    assert got[1200]["opportunity"] == Decimal("120.00") and got[3]["date_modify"] == now
    assert got[3]["date_modify"].tzinfo == timezone.utc


def test_utc_datetimes_refuse_naive_values(mirror_engine: Any) -> None:
    with pytest.raises((ValueError, sa.exc.StatementError), match="aware"):
        with db.begin_write(mirror_engine) as conn:
            db.upsert(conn, tables.b24sync_lease, [{"name": "x", "owner": "o", "acquired_at": datetime(2026, 1, 1), "expires_at": datetime(2026, 1, 1)}])


def test_insert_new_copies_and_never_duplicates_a_row_that_exists(mirror_engine: Any) -> None:
    now = datetime.now(timezone.utc)
    h = tables.crm_deal_stage_history

    def row(i: int, stage: str) -> dict[str, Any]:
        return {"id": i, "type_id": 2, "deal_id": i, "date_create": now, "category_id": 0, "stage_semantic_id": "P",
                "stage_id": stage, "raw": {"ID": str(i), "NAME": "Сделка \\ \t ✓"}, "first_seen_at": now, "deleted_at": None}

    with db.begin_write(mirror_engine) as conn:
        db.insert_new(conn, h, [row(1, "NEW"), row(2, "NEW")])
    with db.begin_write(mirror_engine) as conn:  # row 2 exists: the copy falls back, the transaction goes on
        db.insert_new(conn, h, [row(2, "WON"), row(3, "NEW")])
        db.insert_new(conn, h, [row(4, "NEW")])
    with mirror_engine.connect() as conn:
        got = [(r.id, r.stage_id, r.raw["NAME"], r.date_create) for r in conn.execute(sa.select(h).order_by(h.c.id))]
    assert got == [(1, "NEW", "Сделка \\ \t ✓", now), (2, "WON", "Сделка \\ \t ✓", now),
                   (3, "NEW", "Сделка \\ \t ✓", now), (4, "NEW", "Сделка \\ \t ✓", now)]


def test_money_is_exact_on_both_databases(mirror_engine: Any) -> None:
    amounts = [Decimal("0.01"), Decimal("19999.99"), Decimal("1234567890123.45"), Decimal("-0.10")]
    now = datetime.now(timezone.utc)
    with db.begin_write(mirror_engine) as conn:
        db.upsert(conn, tables.crm_deal, [{"id": i, "opportunity": a, "raw": {}, "synced_at": now} for i, a in enumerate(amounts, 1)])
    with mirror_engine.connect() as conn:
        got = [r[0] for r in conn.execute(sa.select(tables.crm_deal.c.opportunity).order_by(tables.crm_deal.c.id))]
    assert got == amounts
