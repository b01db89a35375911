"""``b24sync sync`` and ``b24sync db``: output, exit codes, and one clear line with no write for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from jobs.cli import main
from jobs.lease import Lease
from jobs.sync.run import LEASE
from mappings import db, tables


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: Any, tmp_path: Path) -> None:
    """No webhook, database or config from the developer's shell or working directory."""
    for name in ("B24SYNC_WEBHOOK", "B24SYNC_CONFIG", "B24SYNC_TIMEOUT", "B24SYNC_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_sync_prints_json_per_entity(make_emulator: Any, mirror_url: str) -> None:
    server = make_emulator(seed=2, deals=60)
    done = run("sync", "--webhook", server.url, "--db", mirror_url, "--format", "json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["status"] == "ok" and data["requests"] >= 1
    deal = data["entities"]["deal"]
    assert deal["fetched"] == deal["inserted"] == len(server.portal.records["deal"])
    assert set(deal) >= {"fetched", "inserted", "updated", "deleted", "requests", "seconds"}
    again = run("sync", "--webhook", server.url, "--db", mirror_url, "--entity", "deal,lead", "--format", "json")
    assert json.loads(again.stdout)["requests"] == 1 and set(json.loads(again.stdout)["entities"]) == {
        "deal", "lead", "deal_userfield", "lead_userfield"}


def test_sync_text_output_and_the_database_from_the_environment(make_emulator: Any, mirror_url: str) -> None:
    server = make_emulator(seed=2, deals=30)
    done = run("sync", "--webhook", server.url, "--reconcile", env={"B24SYNC_DB": mirror_url})
    assert done.exit_code == 0, done.output
    assert "deal" in done.stdout and "ok:" in done.stdout
    assert "test-webhook-code" not in done.output


@pytest.mark.parametrize(("args", "message", "code"), [
    (["--entity", "deals"], "unknown entity 'deals'", 1),
    (["--db", "notaurl"], "not a database URL", 1),
    (["--db", "postgresql+psycopg://mirror:pw-canary@127.0.0.1:1/x"], "cannot use the mirror database", 1),
    (["--db", "sqlite:////no/such/folder/m.db"], "does not exist", 1),
    (["--webhook", "http://example/rest/"], "not usable", 1),
], ids=["entity", "url", "unreachable", "folder", "webhook"])
def test_bad_input_is_one_line_and_no_write(make_emulator: Any, tmp_path: Path, args: list[str], message: str, code: int) -> None:
    server = make_emulator()
    mirror = tmp_path / "untouched.sqlite3"
    full = ["sync", "--webhook", server.url, "--db", f"sqlite:///{mirror}"] + args
    done = run(*full)
    assert done.exit_code == code, done.output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert "pw-canary" not in done.output
    assert not mirror.exists()
    assert server.stats()["requests_total"] == 0  # nothing was asked of the portal either


def test_a_portal_that_refuses_the_webhook_writes_nothing(make_emulator: Any, tmp_path: Path) -> None:
    server = make_emulator()
    mirror = tmp_path / "m.sqlite3"
    wrong = server.url.replace("test-webhook-code", "wrong-code")
    done = run("sync", "--webhook", wrong, "--db", f"sqlite:///{mirror}")
    assert done.exit_code == 1
    assert "refused the credentials" in done.stderr and "nothing was written" in done.stderr and "wrong-code" not in done.stderr
    assert not mirror.exists()


def test_another_sync_running_is_one_clear_line(make_emulator: Any, mirror_engine: Any) -> None:
    server = make_emulator()
    url = mirror_engine.url.render_as_string(hide_password=False)
    with Lease(mirror_engine, LEASE, owner="the nightly run"):
        done = run("sync", "--webhook", server.url, "--db", url)
    assert done.exit_code == 1 and "another sync is running on this mirror: the nightly run" in done.stderr


def test_db_upgrade_and_current(mirror_url: str) -> None:
    done = run("db", "current", "--db", mirror_url, "--format", "json")
    assert done.exit_code == 0 and json.loads(done.stdout)["revision"] is None
    done = run("db", "upgrade", "--db", mirror_url)
    assert done.exit_code == 0 and f"upgraded from revision (empty) to {db.head()}" in done.stdout
    done = run("db", "upgrade", "--db", mirror_url)
    assert "already at revision" in done.stdout
    done = run("db", "current", "--db", mirror_url)
    assert done.exit_code == 0 and f"revision {db.head()} (the newest)" in done.stdout


def test_sync_upgrades_a_mirror_that_is_behind(make_emulator: Any, make_mirror: Any) -> None:
    url, engine = make_mirror(upgraded=False)
    db.upgrade(engine, db.revisions()[0])
    server = make_emulator(seed=2, deals=20)
    done = run("sync", "--webhook", server.url, "--db", url)
    assert done.exit_code == 0, done.output
    assert db.is_current(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.crm_deal)).scalar() == len(server.portal.records["deal"])


def test_the_config_names_the_database(make_emulator: Any, mirror_url: str, tmp_path: Path) -> None:
    server = make_emulator(seed=2, deals=10)
    config = tmp_path / "b24sync.toml"
    config.write_text('[database]\nurl_env = "MY_MIRROR"\n', encoding="utf-8")
    done = run("sync", "--webhook", server.url, "--config", str(config), "--format", "json", env={"MY_MIRROR": mirror_url})
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["mirror"] == db.mask_url(mirror_url)


def test_progress_on_a_terminal_and_in_plain_lines(make_emulator: Any, mirror_engine: Any) -> None:
    import io

    from rich.console import Console

    from jobs.sync.progress import LogProgress, RichProgress
    from tests.jobs.sync.conftest import sync

    app = make_emulator(seed=2, deals=80, http=False)
    screen = io.StringIO()
    with RichProgress(Console(file=screen, force_terminal=True, width=100)) as bars:
        assert sync(app, mirror_engine, progress=bars).ok
    assert "deals (ok)" in screen.getvalue() and "deal stage history (ok)" in screen.getvalue()
    lines: list[str] = []
    app.portal.records["deal"][min(app.portal.records["deal"])]["TITLE"] = "changed"
    assert sync(app, mirror_engine, full=True, progress=LogProgress(write=lines.append, every=0)).ok
    assert any("deal: ok, " in line and "fetched" in line for line in lines)
