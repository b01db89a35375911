"""``b24sync status``: per entity the last run, rows, lag and last error, the next runs; exit 0 healthy, 1 otherwise."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from click.testing import CliRunner

from connector.emulator.registry import ApiError
from jobs.cli import main
from jobs.status import read_status
from mappings import db
from mappings.tables import b24sync_run
from tests.jobs.sync.conftest import rows, sync, wrap_method  # noqa: F401 - wrap_method is a fixture


def status(*args: str) -> Any:
    """``b24sync status ARGS`` in this process (no B24SYNC_* from the environment)."""
    return CliRunner().invoke(main, ["status", *args], catch_exceptions=False,
                              env={"B24SYNC_DB": "", "B24SYNC_CONFIG": "", "B24SYNC_WEBHOOK": ""})


def test_a_healthy_mirror_exits_0_with_every_entity_and_the_next_runs(make_emulator: Any, make_mirror: Any, tmp_path: Any) -> None:
    app = make_emulator(seed=5, deals=60, http=False)
    url, engine = make_mirror()
    assert sync(app, engine).ok
    config = tmp_path / "b24sync.toml"
    config.write_text(f'[database]\nurl = {json.dumps(url)}\n\n[schedule]\nsync_every_minutes = 5\nreconcile_cron = "0 3 * * *"\n'
                      'reports_dir = "reports"\n', encoding="utf-8")
    result = status("--config", str(config))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"mirror   {db.mask_url(url)}" and lines[-1] == "healthy"
    deal = next(line for line in lines if line.startswith("deal "))
    assert " ok " in deal and f" {len(app.portal.records['deal'])} " in deal
    assert any(line.startswith("sync ") and "(every 5 min)" in line for line in lines)
    assert any(line.startswith("reconcile ") and "(cron 0 3 * * *)" in line and "UTC" in line for line in lines)
    assert any(line.startswith("report ") and "(after every sync)" in line for line in lines)
    if "@" in url:  # PostgreSQL: the password never shows
        password = url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert f":{password}@" not in result.output and ":***@" in result.output

    data = json.loads(status("--db", url, "--format", "json", "--max-lag", "3600").output)
    assert data["healthy"] is True and data["problems"] == [] and data["mirror"] == db.mask_url(url)
    by_name = {e["entity"]: e for e in data["entities"]}
    assert by_name["deal"]["rows"] == len(app.portal.records["deal"])
    assert by_name["deal"]["last_run"]["status"] == "ok" and 0 <= by_name["deal"]["lag_seconds"] < 3600
    assert by_name["deal"]["cursor"] is not None and by_name["deal_stage_history"]["cursor"] is None
    assert data["portal"]["timezone"] == "+03:00" and data["lease"] is None


def test_a_failed_last_run_exits_1_and_says_why(make_emulator: Any, make_mirror: Any, wrap_method: Any) -> None:
    app = make_emulator(seed=5, deals=60, http=False)
    url, engine = make_mirror()
    assert sync(app, engine).ok

    broken = [True]

    def refused(call: Any, handler: Any) -> Any:
        if broken[0]:
            raise ApiError("", "Access denied.", 403)
        return handler(call)

    wrap_method("crm.deal.list", refused)
    assert sync(app, engine).status == "failed"
    result = status("--db", url)
    assert result.exit_code == 1
    assert "deal: the last sync failed:" in result.output and "Access denied" in result.output
    deal = next(line for line in result.output.splitlines() if line.startswith("deal "))
    assert " failed " in deal
    # the next good run makes it healthy again, and the last error stays on show
    broken[0] = False
    assert sync(app, engine).ok
    again = status("--db", url)
    assert again.exit_code == 0, again.output
    assert "(last error " in next(line for line in again.output.splitlines() if line.startswith("deal "))


def test_a_lag_over_the_threshold_exits_1(make_emulator: Any, make_mirror: Any) -> None:
    app = make_emulator(seed=5, deals=60, http=False)
    url, engine = make_mirror()
    assert sync(app, engine).ok
    started = max(r["started_at"] for r in rows(engine, b24sync_run))
    later = started + timedelta(hours=2)
    behind = read_status(engine, max_lag=3600, now=later)
    assert not behind.healthy
    assert behind.problems == [f"lag over --max-lag 3600 s: {', '.join(f'{e.entity} 2.0 h' for e in behind.entities)}"]
    assert read_status(engine, max_lag=3 * 3600, now=later).healthy
    assert status("--db", url, "--max-lag", "86400").exit_code == 0


def test_a_mirror_never_synced_exits_1(tmp_path: Any) -> None:
    result = status("--db", f"sqlite:///{tmp_path}/nothing.sqlite3")
    assert result.exit_code == 1
    assert "never synced" in result.output
    assert not (tmp_path / "nothing.sqlite3").exists()
    unreachable = status("--db", "postgresql+psycopg://someone:s3cret-pass@127.0.0.1:1/none")
    assert unreachable.exit_code == 1 and "s3cret-pass" not in unreachable.output and "cannot use the mirror" in unreachable.output


def test_the_lag_counts_from_the_run_that_opened_the_window_the_last_success_closed(make_mirror: Any, monkeypatch: Any) -> None:
    import jobs.status as status_module

    _, engine = make_mirror()
    t0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    log = [("ok", 0), ("failed", 10), ("interrupted", 20), ("ok", 30)]  # the window opened at +10 was closed at +30
    with engine.begin() as conn:
        for number, (outcome, minutes) in enumerate(log):
            moment = t0 + timedelta(minutes=minutes)
            conn.execute(b24sync_run.insert().values(run_id=f"r{number}", job="sync", entity="deal", started_at=moment,
                                                     finished_at=moment + timedelta(minutes=1), status=outcome))
    now = t0 + timedelta(minutes=40)
    for recent in (500, 2):  # the rows read cover the chain, or the database is asked
        monkeypatch.setattr(status_module, "RECENT", recent)
        [deal] = read_status(engine, now=now).entities
        assert deal.complete_at == t0 + timedelta(minutes=10) and deal.lag == 30 * 60
        assert deal.last["status"] == "ok"
    assert deal.last_error is None  # looked for among the rows read only
    monkeypatch.setattr(status_module, "RECENT", 500)
    assert read_status(engine, now=now).entities[0].last_error == {"at": t0 + timedelta(minutes=11), "message": None}
