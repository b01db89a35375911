"""The worker's ``[schedule]``: new keys validated like the rest of the file, old keys unchanged, triggers and next runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from click.testing import CliRunner

from jobs.cli import main
from jobs.worker.schedule import AFTER_SYNC, RECONCILE, REPORT, SYNC, timetables
from mappings.config import ScheduleConfig
from mappings.loader import parse_config
from tests.mappings import test_config as config_tests

MSK = timezone(timedelta(hours=3))

BAD = [
    ("bad-sync-cron", '[schedule]\nsync_cron = "*/5 * * *"\n',
     "bad.toml:2: schedule.sync_cron: '*/5 * * *' is not a 5-field crontab line (Wrong number of fields"),
    ("bad-reconcile-cron", '[schedule]\nsync_every_seconds = 5\nreconcile_cron = "0 25 * * *"\n',
     "bad.toml:3: schedule.reconcile_cron: '0 25 * * *' is not a 5-field crontab line"),
    ("bad-report-cron", '[schedule]\nreports_dir = "r"\nreport_cron = "monday at 8"\n',
     "bad.toml:3: schedule.report_cron: 'monday at 8' is not a 5-field crontab line"),
    ("seconds-too-small", '[schedule]\nsync_every_seconds = 0\n',
     "bad.toml:2: schedule.sync_every_seconds: Input should be greater than or equal to 1"),
    ("two-timetables", '[portal]\nrate = 2\n\n[schedule]\nsync_every_minutes = 5\nsync_every_seconds = 10\n',
     "bad.toml:4: schedule: set one of sync_every_minutes, sync_every_seconds, sync_cron, not sync_every_minutes and sync_every_seconds"),
    ("interval-and-cron", '[schedule]\nsync_every_seconds = 10\nsync_cron = "* * * * *"\n',
     "bad.toml:1: schedule: set one of sync_every_minutes, sync_every_seconds, sync_cron, not sync_every_seconds and sync_cron"),
    ("empty-reports-dir", '[schedule]\nreports_dir = ""\n', "bad.toml:2: schedule.reports_dir: String should have at least 1 character"),
    ("typo", '[schedule]\nsync_every_second = 10\n',
     "bad.toml:2: schedule.sync_every_second: unknown setting 'sync_every_second' (did you mean 'sync_every_seconds'?)"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BAD], ids=[i for i, _, _ in BAD])
def test_a_bad_schedule_names_the_key_and_line(text: str, expected: str) -> None:
    config_tests.test_bad_config_is_reported_with_its_location(text, expected)  # one problem, located, as for every key


def test_the_existing_keys_keep_their_meaning() -> None:
    config = parse_config('[schedule]\nsync_every_minutes = 20\nreport_cron = "0 8 * * MON"\n')
    tables = timetables(config.schedule)
    assert set(tables) == {SYNC}  # report_cron alone writes nothing: reports need reports_dir
    assert tables[SYNC].every == timedelta(minutes=20) and tables[SYNC].describe() == "every 20 min"
    default = timetables(ScheduleConfig())
    assert default[SYNC].every == timedelta(minutes=15)


def test_every_key_becomes_a_trigger() -> None:
    schedule = parse_config('[schedule]\nsync_every_seconds = 5\nreconcile_cron = "0 3 * * *"\nreports_dir = "r"\n'
                            'report_cron = "30 8 * * MON"\n').schedule
    tables = timetables(schedule)
    assert set(tables) == {SYNC, RECONCILE, REPORT}
    sync = tables[SYNC].trigger(MSK)
    assert isinstance(sync, IntervalTrigger) and sync.interval == timedelta(seconds=5)
    nightly = tables[RECONCILE].trigger(MSK)
    assert isinstance(nightly, CronTrigger)
    # cron lines are read in the portal's time: 03:00 at +03:00 is midnight UTC
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert tables[RECONCILE].next_run(MSK, now) == datetime(2026, 12, 2, 0, 0, tzinfo=timezone.utc)
    assert tables[REPORT].next_run(MSK, now) == datetime(2026, 12, 7, 5, 30, tzinfo=timezone.utc)  # Monday 08:30 MSK
    # an interval counts from the last run's start; a worker that never ran syncs as soon as it starts
    assert tables[SYNC].next_run(MSK, now, now - timedelta(seconds=2)) == now + timedelta(seconds=3)
    assert tables[SYNC].next_run(MSK, now, None) == now


def test_reports_follow_every_sync_without_a_cron_and_sync_may_run_on_a_cron() -> None:
    tables = timetables(parse_config('[schedule]\nsync_cron = "*/10 8-20 * * *"\nreports_dir = "out"\n').schedule)
    assert tables[SYNC].cron == "*/10 8-20 * * *" and tables[SYNC].describe() == "cron */10 8-20 * * *"
    assert tables[REPORT].after_sync and tables[REPORT].trigger(timezone.utc) is None
    assert tables[REPORT].describe() == AFTER_SYNC


def test_the_worker_refuses_a_bad_config_before_it_starts(tmp_path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[portal]\nwebhook_env = "NO_SUCH_VARIABLE_HERE"\n', encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text('[portal]\nrate = 2\n\n[schedule]\nreconcile_cron = "0 3 * *"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["worker", "--config", str(bad), "--config", str(good), "--once"],
                                catch_exceptions=False, env={"B24SYNC_WEBHOOK": ""})
    assert result.exit_code == 1
    assert f"{bad}:5: schedule.reconcile_cron: '0 3 * *' is not a 5-field crontab line" in result.output
    assert "NO_SUCH_VARIABLE_HERE is not set" in result.output  # every file's problems at once
    assert "started" not in result.output


def test_two_configs_on_one_mirror_are_refused(tmp_path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text(
            f'[portal]\nwebhook_file = "{name}.url"\n\n[database]\nurl = "sqlite:///{tmp_path}/same.sqlite3"\n', encoding="utf-8")
        (tmp_path / f"{name}.url").write_text(f"http://127.0.0.1:9/rest/1/{name}code/\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["worker", "--config-dir", str(tmp_path), "--once"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "use the same mirror" in result.output and "same.sqlite3" in result.output
    assert not (tmp_path / "same.sqlite3").exists()
