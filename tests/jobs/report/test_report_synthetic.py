"""The SQL against a plain Python reading of the semantics, over generated mirrors of many random paths.

``jobs.report.synthetic`` writes realistic paths straight into the mirror's tables (forward, skips,
back, lost, won, reopened, moved to the other pipeline, a since-deleted stage, deleted cards); the
reference below walks each card's rows one by one, as the README states the rules.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from jobs import report
from jobs.report import synthetic as syn
from mappings import db

DEALS, LEADS = syn.example_funnels()
SALES = DEALS[0]
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def percentile(values: list[float], p: float) -> float | None:
    """PostgreSQL's percentile_cont."""
    if not values:
        return None
    ordered = sorted(values)
    h = (len(ordered) - 1) * p
    low = int(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (h - low)


def reference(cards: list[syn.Card], funnel: syn.Funnel, mode: str, *, start: datetime | None = None,
              end: datetime | None = None, active: bool = False) -> dict[str, Any]:
    """Counts, money, totals and stays of ``funnel`` over ``cards``, read straight from the rules."""
    index = {s: i for i, s in enumerate(funnel.process, start=1)} | {funnel.success: len(funnel.process) + 1}
    counts: dict[str, int] = defaultdict(int)
    money: dict[str, Decimal] = defaultdict(Decimal)
    stays: dict[str, list[float]] = defaultdict(list)
    totals = dict(cards=0, won=0, lost=0, open=0, moved_out=0)
    won_cycles: list[float] = []
    for card in cards:
        if card.deleted:
            continue
        rows = card.rows
        if active:
            rows = [r for r in rows if end is None or r[2] < end]
            touched = any(r[1] == funnel.category and (start is None or r[2] >= start) for r in rows)
            before = [r for r in rows if start is not None and r[2] < start]
            open_at_start = bool(before) and before[-1][1] == funnel.category and before[-1][0] not in (funnel.success, funnel.failure)
            if not rows or not any(r[1] == funnel.category for r in rows) or not (touched or open_at_start):
                continue
            category, current = rows[-1][1], rows[-1][0]
        else:
            if (start is not None and card.created < start) or (end is not None and card.created >= end):
                continue
            category, current = card.category, card.stage
        here = [r for r in rows if r[1] == funnel.category]
        if category != funnel.category and not here:
            continue
        moved = category != funnel.category
        position = here[-1][0] if moved else current
        reach = max([index.get(r[0], 0) for r in here] + [index.get(position, 0)])
        if mode == "conversion":
            members = funnel.process[:min(max(reach, 1), len(funnel.process))]
            members += [position] if position in (funnel.success, funnel.failure) else []
        elif mode == "classic":
            members = [position]
        else:
            members = sorted({r[0] for r in here} | {position})
        known = {*funnel.process, funnel.success, funnel.failure}
        members += sorted(({r[0] for r in here} | {position}) - known - set(members))  # removed stages: by entry
        for stage in members:
            counts[stage] += 1
            money[stage] += card.amount if card.currency == "RUB" else 0
        totals["cards"] += 1
        kind = "moved_out" if moved else "won" if position == funnel.success else "lost" if position == funnel.failure else "open"
        totals[kind] += 1
        for (stage, cat, at), (_, _, after) in zip(rows, rows[1:]):
            if cat == funnel.category:
                stays[stage].append((after - at).total_seconds())
        if kind == "won":
            won_at = max(r[2] for r in here if r[0] == funnel.success)
            won_cycles.append((won_at - card.created).total_seconds())
    return {"counts": counts, "money": money, "totals": totals, "stays": stays, "cycle": percentile(won_cycles, 0.5)}


def check(found: report.FunnelReport, expected: dict[str, Any]) -> None:
    f = found.total
    assert {k: v for k, v in f.counts().items() if v} == {k: v for k, v in expected["counts"].items() if v}
    assert {s.stage.id: s.amounts.get("RUB", Decimal(0)) for s in f.stages if s.count} == \
           {k: v for k, v in expected["money"].items() if expected["counts"][k]}
    assert (f.cards, f.won, f.lost, f.open, f.moved_out) == tuple(expected["totals"][k] for k in
                                                                 ("cards", "won", "lost", "open", "moved_out"))
    for s in f.stages:
        values = expected["stays"].get(s.stage.id, [])
        assert s.stays == len(values), s.stage.id
        assert s.median_seconds == pytest.approx(percentile(values, 0.5), abs=1e-3), s.stage.id
        assert s.p90_seconds == pytest.approx(percentile(values, 0.9), abs=1e-3), s.stage.id
    assert f.cycle_median_seconds == pytest.approx(expected["cycle"], abs=1e-3)


@pytest.fixture(params=[11, 12])
def synthetic(request: Any, mirror_engine: Any) -> tuple[Any, list[syn.Card], list[syn.Card]]:
    """A mirror of about 2,000 generated history rows (deals) and 150 leads; the generated cards."""
    deals = list(syn.deal_cards(request.param, 2000, DEALS))
    leads = list(syn.lead_cards(request.param, 150, LEADS))
    with db.begin_write(mirror_engine) as conn:
        syn.write_dictionaries(conn, DEALS, LEADS, address="https://synthetic.bitrix24.ru")
        syn.write_cards(conn, "deal", iter(deals), {f.category: f for f in DEALS})
        syn.write_cards(conn, "lead", iter(leads), {0: LEADS})
    return mirror_engine, deals, leads


@pytest.mark.parametrize("mode", ["conversion", "classic", "entered"])
def test_deal_funnel_matches_the_rules(synthetic: Any, mode: str) -> None:
    engine, deals, _ = synthetic
    check(report.funnel(engine, mode=mode, now=NOW), reference(deals, SALES, mode))
    repeat = report.funnel(engine, pipeline="repeat", mode=mode, now=NOW)
    check(repeat, reference(deals, DEALS[1], mode))


def test_periods_match_the_rules(synthetic: Any) -> None:
    engine, deals, _ = synthetic
    start = datetime(2025, 4, 1, tzinfo=timezone(timedelta(hours=3)))
    end = datetime(2025, 7, 1, tzinfo=timezone(timedelta(hours=3)))
    created = report.funnel(engine, date_from="2025-04-01", date_to="2025-06-30", now=NOW)
    check(created, reference(deals, SALES, "conversion", start=start, end=end))
    active = report.funnel(engine, period="active", date_from="2025-04-01", date_to="2025-06-30", now=NOW)
    check(active, reference(deals, SALES, "conversion", start=start, end=end, active=True))
    assert active.total.cards > created.total.cards  # cards created before April were still in the funnel


def test_lead_funnel_matches_the_rules(synthetic: Any) -> None:
    engine, _, leads = synthetic
    for mode in ("conversion", "entered"):
        check(report.funnel(engine, entity="lead", mode=mode, now=NOW), reference(leads, LEADS, mode))


def test_slices_add_up_to_the_total(synthetic: Any) -> None:
    engine, _, _ = synthetic
    for by in ("assigned", "source", "month"):
        r = report.funnel(engine, by=by, now=NOW)
        assert len(r.slices) > 1
        for stage in r.total.stages:
            assert sum(f.stage(stage.stage.id).count for f in r.slices) == stage.count, (by, stage.stage.id)
        assert sum(f.cards for f in r.slices) == r.total.cards


def test_the_generated_rows_carry_their_stays_as_the_sync_keeps_them(synthetic: Any) -> None:
    from mappings import tables
    from tests.jobs.sync.conftest import assert_stays

    engine, _, _ = synthetic
    assert_stays(engine, tables.crm_deal_stage_history)
    assert_stays(engine, tables.crm_lead_status_history)


def test_history_rows_whose_card_the_mirror_lacks_are_left_out(synthetic: Any) -> None:
    """Rows of cards with no card row (history the portal listed for cards the mirror never had) count
    nowhere, like deleted cards' rows: not in the cohort, not in the stays."""
    import dataclasses

    from mappings import tables

    engine, deals, _ = synthetic
    here = [c for c in deals if not c.deleted and any(r[1] == SALES.category for r in c.rows)]
    gone = {c.id for c in here[::7]}
    assert len(gone) > 5
    with db.begin_write(engine) as conn:
        conn.execute(sa.delete(tables.crm_deal).where(tables.crm_deal.c.id.in_(gone)))
    kept = [dataclasses.replace(c, deleted=c.deleted or c.id in gone) for c in deals]
    for mode in ("conversion", "entered"):
        check(report.funnel(engine, mode=mode, now=NOW), reference(kept, SALES, mode))


def test_sqlite_reads_cohort_and_stays_off_covering_indexes(tmp_path: Any) -> None:
    """SQLite: the one grouped pass touches no history row, only the index over the rows with ``visited``
    (revision 0004 gave it the stage, semantics and time the pass reads); the stays of a report by slice
    are read card by card along the (card, ID, ..., stay) index, not by looking every stay's card up.
    PostgreSQL's planner chooses by statistics, so the plans checked are SQLite's."""
    from dataclasses import replace

    from jobs.report import build
    from jobs.report.cohort import cohort_select
    from jobs.report.stays import stays

    engine = db.open_engine(f"sqlite:///{tmp_path / 'mirror.sqlite3'}")
    db.upgrade(engine)
    with db.begin_write(engine) as conn:
        syn.write_dictionaries(conn, DEALS, LEADS, address="https://synthetic.bitrix24.ru")
        syn.write_cards(conn, "deal", syn.deal_cards(3, 500, DEALS), {f.category: f for f in DEALS})
    with build.reading(engine) as conn:
        scope, _ = build._scope(conn, entity="deal", pipeline=None, mode="conversion", date_from=None, date_to=None,
                                period="created", by=None, assigned=None, source=None, include_deleted=False,
                                default_keys=())


        def plan(query: Any) -> str:
            compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
            return " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))

        cohort_plan = plan(cohort_select(scope))
        stays_plan = plan(sa.select(stays(replace(scope, by="assigned"), cohort_select(scope).subquery())))
    engine.dispose()
    assert "COVERING INDEX ix_crm_deal_stage_history_visited" in cohort_plan, cohort_plan
    assert stays_plan.startswith("SCAN crm_deal") and "COVERING INDEX ix_crm_deal_stage_history_cover" in stays_plan, stays_plan


def test_stays_leave_deleted_cards_out_on_postgresql_before_15_too(synthetic: Any, monkeypatch: Any) -> None:
    """PostgreSQL before 15 does not hash a constant ``<> ALL`` list: the left-out cards are excluded by
    a hashed subplan there, with the same figures (on SQLite the stays are ranked off the index either way)."""
    engine, deals, _ = synthetic
    monkeypatch.setattr(engine.dialect, "server_version_info", (14, 11))
    check(report.funnel(engine, now=NOW), reference(deals, SALES, "conversion"))
