"""``b24sync report funnel`` and ``report cards`` on the scenario's mirror: outputs, files, the mirror named
as for ``sync``, and one ``error:`` line with exit 1 (or 2 for a bad command line) for anything unknown.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobs.cli import main
from mappings import db
from tests.jobs.report.scenario import Scenario

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: Any, tmp_path: Path) -> None:
    """No mirror or config from the developer's shell or working directory."""
    for name in ("B24SYNC_DB", "B24SYNC_CONFIG", "B24SYNC_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def url_of(scenario: Scenario) -> str:
    return db.target_of(scenario.engine).url


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_funnel_table(scenario: Scenario) -> None:
    result = run("report", "funnel", "--db", url_of(scenario))
    assert result.exit_code == 0, result.output
    assert "Deal funnel: Общая" in result.stdout
    assert 'Weakest stage: PREPAYMENT_INVOICE "Счёт на предоплату" -> EXECUTING' in result.stdout


def test_funnel_json_by_source_from_the_environment(scenario: Scenario) -> None:
    result = run("report", "funnel", "--by", "source", "--format", "json", env={"B24SYNC_DB": url_of(scenario)})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stages"][0]["count"] == 9 and [s["slice"]["key"] for s in data["slices"]] == ["CALL", "WEB", None]


@pytest.mark.parametrize("fmt", ["html", "csv", "json", "table"])
def test_funnel_to_a_file(scenario: Scenario, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"funnel.{fmt}"
    result = run("report", "funnel", "--db", url_of(scenario), "--mode", "entered", "--format", fmt, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"wrote {out}" in result.stderr
    text = out.read_text(encoding="utf-8")
    if fmt == "html":
        assert text.startswith("<!doctype html>") and 'class="cards" data-stage="NEW"' in text and "Сделка D1" in text
    elif fmt == "csv":
        assert next(csv.DictReader(io.StringIO(text)))["count"] == "8"
    elif fmt == "json":
        assert json.loads(text)["mode"] == "entered"
    else:
        assert "mode entered" in text and "\x1b[" not in text  # plain text in a file


def test_cards(scenario: Scenario) -> None:
    result = run("report", "cards", "--db", url_of(scenario), "--stage", "PREPAYMENT_INVOICE", "--format", "json",
                 "--limit", "2")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["total"], len(data["cards"]), data["cards"][0]["title"]) == (6, 2, "Сделка D9")
    table = run("report", "cards", "--db", url_of(scenario), "--stage", "LOSE", "--assigned", "Мария Кузнецова")
    assert table.exit_code == 0 and "Сделка D2" in table.stdout and "1 card(s)" in table.stdout
    leads = run("report", "cards", "--db", url_of(scenario), "--entity", "lead", "--stage", "JUNK", "--format", "csv")
    assert leads.exit_code == 0 and leads.stdout.count("/crm/lead/details/") == 2


def test_pipeline_by_the_configs_key(scenario: Scenario) -> None:
    """The example config's default pipeline has the key "sales"; the portal stores no key on pipeline 0."""
    result = run("report", "funnel", "--db", url_of(scenario), "--config", str(EXAMPLE), "--pipeline", "sales",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pipeline"]["id"] == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["funnel", "--pipeline", "repeat"], 1, "error: no pipeline 'repeat' in the mirror; pipelines: 0 \"Общая\""),
        (["cards", "--stage", "WIN"], 1, "error: no stage 'WIN' in this funnel; stages: NEW (Новая)"),
        (["funnel", "--assigned", "99"], 1, "error: no manager '99' in the mirror; users: 1 Андрей Соколов"),
        (["funnel", "--by", "weekday"], 2, "Invalid value for '--by'"),
        (["cards"], 2, "Missing option '--stage'"),
        (["funnel", "--from", "soon"], 1, "error: --from 'soon' is not a date"),
    ],
    ids=["pipeline", "stage", "manager", "by", "no-stage", "date"],
)
def test_errors(scenario: Scenario, args: list[str], code: int, message: str) -> None:
    result = run("report", *args, "--db", url_of(scenario))
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1  # one line


def test_errors_as_json(scenario: Scenario) -> None:
    result = run("report", "funnel", "--db", url_of(scenario), "--format", "json", "--source", "FAX")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"][0]["message"].startswith("no source 'FAX' in the mirror; sources: CALL")


def test_no_mirror(tmp_path: Path) -> None:
    missing = tmp_path / "never-synced.sqlite3"
    result = run("report", "funnel", "--db", f"sqlite:///{missing}")
    assert result.exit_code == 1
    assert result.stderr == f"error: no mirror in sqlite:///{missing}: run `b24sync sync` first\n"
    assert not missing.exists()  # looking did not create it
    default = run("report", "funnel")  # nothing named: the default sqlite:///b24sync.sqlite3 of the working directory
    assert default.exit_code == 1 and "no mirror in sqlite:///b24sync.sqlite3" in default.stderr


def test_empty_mirror(mirror_engine: Any) -> None:
    """Tables at the newest revision, nothing synced yet: one line, exit 1, for deals and for leads."""
    for entity, what in (("deal", "deal pipelines"), ("lead", "lead statuses")):
        result = run("report", "funnel", "--entity", entity, "--db", db.target_of(mirror_engine).url)
        assert result.exit_code == 1
        assert result.stderr == f"error: the mirror holds no {what}: run `b24sync sync` first\n"


def test_a_mirror_not_upgraded_is_refused(make_mirror: Any) -> None:
    from jobs.report import funnel
    from jobs.report.scope import ReportError

    _, engine = make_mirror(upgraded=False)
    db.upgrade(engine, "0002")
    with pytest.raises(ReportError, match="run `b24sync db upgrade`"):
        funnel(engine)
