"""Schema changes are Alembic revisions: an old mirror upgrades with its data intact, and head equals tables.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mappings import db, tables

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)


def test_upgrade_from_the_first_revision_keeps_the_data(make_mirror: Any) -> None:
    _, engine = make_mirror(upgraded=False)
    first = db.revisions()[0]
    assert db.upgrade(engine, first) == (None, first)
    with engine.begin() as conn:  # written with plain SQL: what revision 0001 had, nothing from later code
        conn.execute(sa.text("INSERT INTO crm_deal (id, title, opportunity, stage_id, category_id, date_modify, raw, synced_at) "
                             "VALUES (7, 'Ёлка', 19999.99, 'NEW', 0, :t, :raw, :t)"), {"t": NOW.replace(tzinfo=None) if engine.dialect.name == "sqlite" else NOW, "raw": '{"ID": "7"}'})
        conn.execute(sa.text("INSERT INTO crm_status (id, entity_id, status_id, name, semantics, category_id, raw, synced_at) "
                             "VALUES (1, 'DEAL_STAGE', 'NEW', 'Новая', 'P', 0, '{}', :t)"), {"t": NOW.replace(tzinfo=None) if engine.dialect.name == "sqlite" else NOW})
        conn.execute(sa.text("INSERT INTO crm_deal_category (id, name, raw, synced_at) VALUES (0, 'Общая', '{}', :t)"),
                     {"t": NOW.replace(tzinfo=None) if engine.dialect.name == "sqlite" else NOW})
    before, after = db.upgrade(engine)
    assert (before, after) == (first, db.head()) and db.is_current(engine)
    with engine.connect() as conn:
        deal = conn.execute(sa.select(tables.crm_deal)).mappings().one()
        stage = conn.execute(sa.select(tables.crm_stages)).mappings().one()
    assert (deal["id"], deal["title"], str(deal["opportunity"]), deal["date_modify"], deal["raw"]) == (7, "Ёлка", "19999.99", NOW, {"ID": "7"})
    assert (stage["status_id"], stage["name"], stage["category_name"], stage["entity_type_id"]) == ("NEW", "Новая", "Общая", 2)
    assert db.upgrade(engine) == (db.head(), db.head())  # a second upgrade is a no-op


def test_head_schema_is_what_tables_py_declares(mirror_engine: Any) -> None:
    with mirror_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, tables.metadata) == []


def test_downgrade_and_upgrade_again(mirror_engine: Any) -> None:
    from alembic import command

    with db.begin_write(mirror_engine) as conn:
        command.downgrade(db._alembic_config(conn), "base")
    assert db.current(mirror_engine) is None
    with mirror_engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["alembic_version"]
    db.upgrade(mirror_engine)
    assert db.is_current(mirror_engine)


def test_a_mirror_from_a_newer_b24sync_is_refused(mirror_engine: Any) -> None:
    with mirror_engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(db.MirrorDatabaseError, match="9999"):
        db.upgrade(mirror_engine)


def test_an_install_ships_the_migrations(tmp_path: Path) -> None:
    """What setuptools puts into a wheel or a plain install (``build_py`` of the packages) carries every revision."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (source / name).write_bytes((ROOT / name).read_bytes())
    for package in ("connector", "mappings", "jobs"):
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                target = source / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    out = tmp_path / "lib"
    built = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib", str(out)],
                           cwd=source, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    shipped = sorted(p.name for p in (ROOT / "mappings" / "migrations" / "versions").glob("*.py"))
    installed = sorted(p.name for p in (out / "mappings" / "migrations" / "versions").glob("*.py"))
    assert installed == shipped and len(shipped) >= 3  # two revisions at least, and the package marker
    assert (out / "mappings" / "migrations" / "env.py").is_file()
    check = subprocess.run([sys.executable, "-c", "from mappings import db; print(db.revisions())"], cwd=tmp_path,
                           env={"PYTHONPATH": str(out), "PATH": ""}, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "0002" in check.stdout, check.stderr


def test_upgrade_to_0003_fills_the_stays_and_gives_moments_one_format(make_mirror: Any) -> None:
    _, engine = make_mirror(upgraded=False)
    db.upgrade(engine, "0002")
    moments = ["2026-03-01 09:30:00", "2026-03-01 10:30:00", "2026-03-01 10:45:30"]
    with engine.begin() as conn:  # as the bulk writer of revision 0002 left them: whole seconds without fractions
        for row_id, (deal, moment) in enumerate(zip((5, 6, 5), moments), start=1):
            value = moment if engine.dialect.name == "sqlite" else datetime.fromisoformat(moment + "+00:00")
            conn.execute(sa.text("INSERT INTO crm_deal_stage_history (id, deal_id, date_create, category_id, stage_id, raw, "
                                 "first_seen_at) VALUES (:id, :deal, :t, 0, 'NEW', '{}', :t)"),
                         {"id": row_id, "deal": deal, "t": value})
    db.upgrade(engine)
    table = tables.crm_deal_stage_history
    with engine.connect() as conn:
        stays = [tuple(r) for r in conn.execute(sa.select(table.c.id, table.c.stay_seconds, table.c.visited).order_by(table.c.id))]
        assert stays == [(1, 4530.0, None), (2, None, ",NEW,"), (3, None, ",NEW,")]
        if engine.dialect.name == "sqlite":
            stored = [r[0] for r in conn.exec_driver_sql("SELECT date_create FROM crm_deal_stage_history ORDER BY id")]
            assert stored == [m + ".000000" for m in moments]


def test_both_writers_store_one_time_format(mirror_engine: Any) -> None:
    table = tables.crm_deal_stage_history
    row = {"id": 1, "type_id": 1, "deal_id": 5, "date_create": NOW, "category_id": 0, "stage_semantic_id": "P",
           "stage_id": "NEW", "raw": {}, "first_seen_at": NOW, "deleted_at": None}
    with db.begin_write(mirror_engine) as conn:
        db.upsert(conn, table, [row])  # the sync's bulk writer
        conn.execute(table.insert(), [{**row, "id": 2}])  # a statement SQLAlchemy executes
    with mirror_engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("SELECT CAST(date_create AS TEXT) FROM crm_deal_stage_history ORDER BY id")]
    assert stored[0] == stored[1]
