"""`b24sync provision plan|apply|export` through click's runner and, for the prompt, a real terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

from jobs import provision as pv
from mappings.loader import parse_config
from tests.jobs.provision.conftest import EXAMPLE, writes
from tests.jobs.provision.conftest import cli as run


def test_plan_apply_plan_with_detailed_exit_codes(emulator: Any) -> None:
    planned = run("plan", "--config", str(EXAMPLE), "--detailed-exitcode", url=emulator.url)
    assert planned.exit_code == 2, planned.output
    assert "Plan: 15 to create, 7 to update, 0 to reorder, 7 to delete." in planned.output
    assert run("plan", "--config", str(EXAMPLE), url=emulator.url).exit_code == 0  # without the flag: 0

    applied = run("apply", "--config", str(EXAMPLE), "--yes", "--allow-delete", url=emulator.url)
    assert applied.exit_code == 0, applied.output
    assert f"Apply complete: {writes(emulator)} write call(s)." in applied.output
    assert "[1] update pipeline sales" in applied.output  # progress, one line per step

    again = run("plan", "--config", str(EXAMPLE), "--detailed-exitcode", url=emulator.url)
    assert again.exit_code == 0 and "No changes" in again.output
    before = writes(emulator)
    assert run("apply", "--config", str(EXAMPLE), url=emulator.url).exit_code == 0  # nothing to ask about
    assert writes(emulator) == before


def test_apply_refuses_without_a_terminal_or_without_allow_delete(emulator: Any) -> None:
    result = run("apply", "--config", str(EXAMPLE), "--allow-delete", url=emulator.url)
    assert result.exit_code == 1
    assert "not asking for confirmation without a terminal; nothing was changed. Pass --yes to apply." in result.output
    result = run("apply", "--config", str(EXAMPLE), "--yes", url=emulator.url)
    assert result.exit_code == 1
    assert "the plan deletes 7 object(s); nothing was changed. Re-run with --allow-delete" in result.output
    assert writes(emulator) == 0


def test_bad_config_prints_every_problem_and_calls_nothing(emulator: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8")
        .replace('color = "#FFA900"', 'color = "orange"')
        .replace('semantics = "failure"\ncolor = "#FF5752"\n\n# Stages', 'semantics = "lost"\ncolor = "#FF5752"\n\n# Stages')
        .replace("[database]", "[databse]"),
        encoding="utf-8",
    )
    for command in ("plan", "apply"):
        result = run(command, "--config", str(bad), url=emulator.url)
        assert result.exit_code == 1
        lines = result.output.splitlines()
        assert lines[0] == f"error: {bad} has 4 problem(s):"
        assert lines[1].startswith(f"  {bad}:25: databse: unknown setting 'databse' (did you mean 'database'?)")
        assert lines[2].startswith(f"  {bad}:101: pipelines[0].stages[4].color: 'orange' is not a colour")
        assert lines[3].startswith(f"  {bad}:127: pipelines[0].stages[9].semantics: unknown semantics 'lost'")
        assert lines[4].startswith(f"  {bad}:160: pipelines[1].stages[3].color: 'orange' is not a colour")
    assert emulator.stats()["requests_total"] == 0


def test_json_plan_saved_plan_and_stale_plan(emulator: Any, tmp_path: Path, client_for: Any) -> None:
    saved = tmp_path / "plan.json"
    result = run("plan", "--config", str(EXAMPLE), "--format", "json", "--out", str(saved), url=emulator.url)
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data == json.loads(saved.read_text(encoding="utf-8"))
    assert data["summary"] == {"create": 15, "update": 7, "reorder": 0, "move_records": 0, "delete": 7}
    creates = [c["key"] for c in data["changes"] if c["action"] == "create"]
    assert creates[:2] == ["QUALIFICATION", "repeat"]

    client = client_for(emulator)
    row = emulator.portal.statuses[min(emulator.portal.statuses)]
    client.result("crm.status.update", {"id": row["ID"], "fields": {"NAME": "Изменено", "SORT": row["SORT"]}})
    stale = run("apply", "--plan", str(saved), "--yes", "--allow-delete", url=emulator.url)
    assert stale.exit_code == 1 and "the portal changed since this plan was made; run plan again" in stale.output
    assert writes(emulator) == 1  # only the change made above

    run("plan", "--config", str(EXAMPLE), "--out", str(saved), url=emulator.url)
    fresh = run("apply", "--plan", str(saved), "--yes", "--allow-delete", url=emulator.url)
    assert fresh.exit_code == 0, fresh.output
    assert not pv.plan(parse_config(EXAMPLE.read_text(encoding="utf-8")), client).has_changes

    saved.write_text("{}", encoding="utf-8")
    broken = run("apply", "--plan", str(saved), "--yes", url=emulator.url)
    assert broken.exit_code == 1 and "not a b24sync plan file" in broken.output


def test_export_writes_a_file_that_plans_as_no_changes(emulator: Any, tmp_path: Path) -> None:
    out = tmp_path / "exported.toml"
    result = run("export", "--out", str(out), url=emulator.url)
    assert result.exit_code == 0 and result.output == ""
    stdout = run("export", url=emulator.url).output
    assert stdout == out.read_text(encoding="utf-8")
    assert run("plan", "--config", str(out), "--detailed-exitcode", url=emulator.url).exit_code == 0


def test_plan_refuses_errors_with_exit_1(emulator: Any, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8").replace('key = "LOSE"\nname = "Сделка проиграна"', 'key = "LOST"\nname = "Сделка проиграна"').replace('APOLOGY = "LOSE"', 'APOLOGY = "LOST"', 1), encoding="utf-8")
    result = run("plan", "--config", str(config), "--detailed-exitcode", url=emulator.url)
    assert result.exit_code == 1
    assert "error: pipeline 'sales': stage 'LOSE' ('Сделка провалена') is a system stage" in result.output


def test_missing_portal_is_a_clear_error(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("B24SYNC_WEBHOOK", raising=False)
    config = tmp_path / "c.toml"
    config.write_text('[portal]\nwebhook_env = "NOT_SET_ANYWHERE"\n', encoding="utf-8")
    result = run("plan", "--config", str(config))
    assert result.exit_code == 1 and "environment variable NOT_SET_ANYWHERE is not set" in result.output


def apply_on_a_terminal(url: str, answer: str, cwd: Path) -> tuple[int, str]:
    """Run `provision apply` with its stdin on a pseudo-terminal and type ``answer``."""
    master, slave = pty.openpty()
    env = {**os.environ, "B24SYNC_WEBHOOK": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "provision", "apply", "--config", str(EXAMPLE), "--allow-delete"],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, env=env,
    )
    os.close(slave)
    os.write(master, answer.encode() + b"\n")
    output, _ = proc.communicate(timeout=60)
    os.close(master)
    return proc.returncode, output.decode("utf-8")


def test_apply_asks_on_a_terminal(emulator: Any, tmp_path: Path) -> None:
    code, output = apply_on_a_terminal(emulator.url, "n", tmp_path)
    assert code == 1 and "Apply these changes to the portal? [y/N]" in output and "cancelled" in output
    assert writes(emulator) == 0
    code, output = apply_on_a_terminal(emulator.url, "y", tmp_path)
    assert code == 0 and "Apply complete" in output, output
    assert writes(emulator) > 0


def test_json_format_reports_config_errors_as_json(emulator: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[portal]\nrate = 1.5\nrate = 2\n\n[[pipelines]]\nkey = "x"\nname = "X"\nstages = []\n', encoding="utf-8")
    result = run("plan", "--config", str(bad), "--format", "json", url=emulator.url)
    assert result.exit_code == 1
    data = json.loads(result.stdout)  # stdout is one JSON document, nothing else
    assert [(e["line"], e["location"]) for e in data["errors"]] == [(3, "portal.rate")]
    assert data["errors"][0]["text"] == f"{bad}:3: portal.rate: set twice (TOML syntax error: Cannot overwrite a value)"
    bad.write_text('[[pipelines]]\nkey = "x"\nname = "X"\nstages = []\n', encoding="utf-8")
    data = json.loads(run("plan", "--config", str(bad), "--format", "json", url=emulator.url).stdout)
    assert [e["location"] for e in data["errors"]] == ["pipelines", "pipelines[0].stages"]
    assert emulator.stats()["requests_total"] == 0


def test_a_config_that_manages_nothing_is_warned_about(emulator: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("[database]\n", encoding="utf-8")
    result = run("plan", "--config", str(empty), "--format", "json", url=emulator.url)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["changes"] == []
    assert "warning: " in result.stderr and "nothing is managed" in result.stderr
