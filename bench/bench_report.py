"""Funnel reports over large mirrors: one funnel, a ``--by assigned`` report and a drill-down, on SQLite and
PostgreSQL, at 100,000 and 1,000,000 stage-history rows, beside a naive baseline that reads every row.

    python bench/bench_report.py [--rows 100000,1000000] [--db sqlite,postgresql] [--pg-url URL] [--repeat 3]

The mirrors are generated straight into the tables (``jobs.report.synthetic``: realistic paths over the
example config's 9-stage funnel) once and cached: SQLite files under ``--cache``, PostgreSQL schemas
``b24sync_bench_*`` in the ``--pg-url`` database (default ``$B24SYNC_BENCH_PG_URL``, then
``$B24SYNC_TEST_PG_URL``). Every measurement runs in a fresh process, so its peak memory is its own.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from jobs.report import synthetic as syn  # noqa: E402
from mappings import db  # noqa: E402

VERSION = 5  # of the generated data (5: revision 0003, stays and paths on the rows): a new version regenerates the cache
SEED = 2026
CASES = ("funnel", "by assigned", "drill-down", "naive baseline")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "b24sync-bench"


# ---------------------------------------------------------------- the cached mirrors


def _progress(total: int, label: str) -> Any:
    """A rich bar on a terminal, plain log lines otherwise; call with the rows just written."""
    if sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(label, total=total)

        def step(rows: int) -> None:
            bar.advance(task, rows)
            if bar.tasks[0].completed >= total:
                bar.stop()

        return step
    done = [0, time.monotonic()]

    def line(rows: int) -> None:
        done[0] += rows
        if time.monotonic() - done[1] > 5 or done[0] >= total:
            print(f"  {label}: {done[0]:,} of {total:,} history rows", file=sys.stderr, flush=True)
            done[1] = time.monotonic()

    return line


def _history_rows(engine: Any) -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM crm_deal_stage_history")).scalar() or 0)
    except sa.exc.SQLAlchemyError:
        return -1


def _generate(engine: Any, rows: int, label: str) -> None:
    deals, leads = syn.example_funnels()
    db.upgrade(engine)
    started = time.monotonic()
    with db.begin_write(engine) as conn:
        syn.write_dictionaries(conn, deals, leads, address="https://bench.bitrix24.ru")
        syn.write_cards(conn, "deal", syn.deal_cards(SEED, rows, deals), {f.category: f for f in deals},
                        progress=_progress(rows, label))
        syn.write_cards(conn, "lead", syn.lead_cards(SEED, rows // 20, leads), {0: leads})
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")  # what autovacuum does to a settled mirror
    print(f"  {label}: generated in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def sqlite_mirror(cache: Path, rows: int) -> str:
    """The URL of a cached SQLite mirror with ``rows`` history rows (generated when missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"report-{rows}-s{SEED}-v{VERSION}.sqlite3"
    url = f"sqlite:///{path}"
    if path.exists() and _history_rows(engine := db.open_engine(url)) == rows:
        db.upgrade(engine)  # a mirror cached by an older b24sync, upgraded as `b24sync db upgrade` would
        engine.dispose()
        return url
    for stale in cache.glob(f"{path.name}*"):
        stale.unlink()
    partial = cache / f"{path.name}.partial"
    engine = db.open_engine(f"sqlite:///{partial}")
    _generate(engine, rows, f"sqlite {rows:,}")
    engine.dispose()
    for suffix in ("-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    partial.rename(path)
    return url


def postgresql_mirror(base: str, rows: int) -> str:
    """The URL of a cached PostgreSQL mirror (a schema in ``base``) with ``rows`` history rows."""
    schema = f"b24sync_bench_r{rows}_s{SEED}_v{VERSION}"
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    engine = db.open_engine(url)
    if _history_rows(engine) == rows:
        db.upgrade(engine)
        return url
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    _generate(engine, rows, f"postgresql {rows:,}")
    engine.dispose()
    return url


# ---------------------------------------------------------------- one measurement (a child process)


def naive_funnel(engine: Any) -> dict[str, int]:
    """What one writes by hand: every history row into Python, then the conversion counts per stage."""
    deals, _ = syn.example_funnels()
    order = {s: i for i, s in enumerate(deals[0].process, start=1)} | {deals[0].success: len(deals[0].process) + 1}
    reach: dict[int, int] = defaultdict(int)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT deal_id, stage_id, category_id, date_create FROM crm_deal_stage_history "
                                    "ORDER BY deal_id, id")).all()
    for deal_id, stage, category, _ in rows:
        if category == 0:
            reach[deal_id] = max(reach[deal_id], order.get(stage, 0))
    return {s: sum(1 for r in reach.values() if max(r, 1) >= i) for s, i in order.items()}


def run_case(url: str, case: str) -> Any:
    """One report of the benchmark."""
    from jobs import report

    engine = db.open_engine(url)
    try:
        if case == "funnel":
            return report.funnel(engine).total.cards
        if case == "by assigned":
            return len(report.funnel(engine, by="assigned").slices)
        if case == "drill-down":
            return report.cards(engine, stage="PROPOSAL", limit=100).total
        return naive_funnel(engine)["NEW"]
    finally:
        engine.dispose()


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (the peak since this process image started: unlike ``ru_maxrss``
    it does not carry the parent's peak across fork and exec) from /proc/self/status, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(url: str, case: str, repeat: int) -> dict[str, Any]:
    """Time ``case`` ``repeat`` times (the first run separately), then once more under tracemalloc."""
    from jobs import report  # noqa: F401 - imported before the idle RSS is taken

    idle = _status_mb("VmRSS")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run_case(url, case)
        times.append(time.perf_counter() - started)
    peak = _status_mb("VmHWM")
    tracemalloc.start()
    run_case(url, case)
    heap = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"first": times[0], "best": min(times), "peak": peak, "idle": idle, "heap": heap, "result": result}


# ---------------------------------------------------------------- the table


def measure(url: str, case: str, repeat: int) -> dict[str, Any]:
    """Run one case in a fresh interpreter and read its figures."""
    out = subprocess.run([sys.executable, __file__, "--child", url, case, str(repeat)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Generate (or reuse) the mirrors, then measure every case on each and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="100000,1000000", help="history rows per mirror, comma-separated")
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql (comma-separated)")
    parser.add_argument("--pg-url", default=os.environ.get("B24SYNC_BENCH_PG_URL") or os.environ.get("B24SYNC_TEST_PG_URL"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the SQLite mirrors are kept")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (best and first are shown)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, case, repeat = args.child
        print(json.dumps(child(url, case, int(repeat))))
        return
    sizes = [int(r) for r in args.rows.split(",")]
    kinds = [k.strip() for k in args.db.split(",")]
    if any(k.startswith("postgresql") for k in kinds) and not args.pg_url:
        print("postgresql left out: give --pg-url (or set B24SYNC_BENCH_PG_URL / B24SYNC_TEST_PG_URL)", file=sys.stderr)
        kinds = [k for k in kinds if not k.startswith("postgresql")]
    results: dict[tuple[str, int, str], dict[str, Any]] = {}
    print(f"{'database':<17}{'history rows':>13}{'deals':>9}  {'report':<15}{'best s':>8}{'first s':>9}"
          f"{'peak RSS MB':>13}{'over idle':>10}{'py heap MB':>11}")
    for kind in kinds:
        for rows in sizes:
            url = sqlite_mirror(args.cache, rows) if kind == "sqlite" else postgresql_mirror(args.pg_url, rows)
            engine = db.open_engine(url)
            with engine.connect() as conn:
                deals = int(conn.execute(sa.text("SELECT count(*) FROM crm_deal")).scalar() or 0)
            engine.dispose()
            for case in CASES:
                r = results[(kind, rows, case)] = measure(url, case, args.repeat)
                print(f"{kind:<17}{rows:>13,}{deals:>9,}  {case:<15}{r['best']:>8.3f}{r['first']:>9.3f}"
                      f"{r['peak']:>13.1f}{r['peak'] - r['idle']:>10.1f}{r['heap']:>11.1f}", flush=True)
    if len(sizes) > 1:
        low, high = min(sizes), max(sizes)
        print(f"\ngrowth from {low:,} to {high:,} history rows (x{high / low:g}):")
        for kind in kinds:
            for case in CASES:
                if (kind, low, case) not in results:
                    continue
                a, b = results[(kind, low, case)], results[(kind, high, case)]
                print(f"  {kind:<17}{case:<15} time x{b['best'] / a['best']:.1f}   memory over idle "
                      f"{a['peak'] - a['idle']:.1f} -> {b['peak'] - b['idle']:.1f} MB   py heap {a['heap']:.1f} -> {b['heap']:.1f} MB")


if __name__ == "__main__":
    main()
