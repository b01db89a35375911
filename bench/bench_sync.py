"""Benchmark: b24sync's initial load, incremental run and reconcile against the bare export and a hand-written baseline.

Prints figures, never asserts. Every phase gets a fresh emulator subprocess started from the same
seeded state file (bench_list_all.py's cache), served on one fixed port (the mirror knows its
portal by address), with the latency model on and the default limits (burst 50, 2 req/s, 480 s
operating budget); every measured job runs in a fresh worker process so peak memory is its own.
Run: ``python bench/bench_sync.py --deals 10000`` (default 100,000).

Phases: (a) the bare export of every stream the sync reads, side by side, nothing written;
(b) b24sync's initial load into SQLite and into PostgreSQL; (c) what a user would write by hand:
fast_bitrix24 ``get_all`` per entity, then SQLAlchemy inserts (id + raw JSON) into the same
databases; then an incremental run after 1 % of the deals changed stage, and a reconcile.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_list_all import Emulator, seeded_state  # noqa: E402 (same seeding, cache and emulator subprocess)

PG_ENV = "B24SYNC_TEST_PG_URL"
SELECT_EXTRA = ("PHONE", "EMAIL", "WEB", "IM")


# ---------------------------------------------------------------- what each worker process does


def _status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _client(url: str) -> Any:
    from connector.auth import WebhookAuth
    from connector.client import Bitrix24Client
    from connector.ratelimit import RequestPacer
    from connector.transport import HttpTransport

    return Bitrix24Client(HttpTransport(), WebhookAuth(url), bucket=RequestPacer())


def work_export(url: str) -> dict[str, Any]:
    """(a) Every stream the sync reads, exported side by side with list_all; rows counted, nothing kept."""
    from mappings import entities as ent

    client = _client(url)
    counts: dict[str, int] = {}

    def export(stream: Any) -> None:
        """Export one stream and count its rows."""
        if stream.kind == ent.HISTORY:
            rows = client.list_all(stream.list_method, entity_type_id=stream.entity_type_id)
        elif stream.kind == ent.ENTITY:
            rows = client.list_all(stream.list_method, select=list(stream.select))
        elif stream.name == "user":
            rows = client.list_all("user.get")
        else:
            reply = client.result(stream.list_method, dict(stream.params))
            rows = reply.get("categories", reply) if isinstance(reply, dict) else reply
        counts[stream.name] = sum(1 for _ in rows)

    threads = [threading.Thread(target=export, args=(s,)) for s in ent.STREAMS.values() if s.kind != ent.DICTIONARY]
    for stream in ent.STREAMS.values():
        if stream.kind == ent.DICTIONARY:
            export(stream)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"rows": sum(counts.values()), "requests": int(client.counters["requests"])}


def work_sync(url: str, db_url: str, reconcile: bool) -> dict[str, Any]:
    """(b) One b24sync run (the initial load, an incremental run, or a reconcile)."""
    from jobs.sync import run_sync
    from mappings import db

    engine = db.open_engine(db_url)
    result = run_sync(_client(url), engine, reconcile=reconcile)
    engine.dispose()
    if not result.ok:
        raise RuntimeError(result.error)
    return {"rows": sum(r.fetched for r in result.entities.values()), "requests": result.requests,
            "written": result.written, "deal_updated": result.entities["deal"].updated}


def work_baseline(url: str, db_url: str) -> dict[str, Any]:
    """(c) By hand: fast_bitrix24 get_all per entity, then SQLAlchemy inserts of id + raw JSON into the same database."""
    import warnings

    import sqlalchemy as sa
    from fast_bitrix24 import Bitrix

    from mappings import entities as ent

    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    metadata = sa.MetaData()
    tables = {name: sa.Table(f"handmade_{name}", metadata, sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("raw", sa.JSON))
              for name in ent.STREAMS if not name.endswith("_userfield")}
    metadata.create_all(engine)
    bitrix = Bitrix(url, verbose=False)
    rows_total = 0
    for name, stream in ent.STREAMS.items():
        if name.endswith("_userfield"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if stream.kind == ent.HISTORY:
                rows = bitrix.get_all(stream.list_method, params={"entityTypeId": stream.entity_type_id})
            elif stream.kind == ent.ENTITY:
                rows = bitrix.get_all(stream.list_method, params={"select": list(stream.select)})
            elif name == "deal_category":
                rows = bitrix.get_all(stream.list_method, params=dict(stream.params))
            else:
                rows = bitrix.get_all(stream.list_method)
        if isinstance(rows, dict):
            rows = rows.get("items") or rows.get("categories") or list(rows.values())
        id_field = stream.id_field
        with engine.begin() as conn:
            conn.execute(tables[name].insert(), [{"id": int(r[id_field]), "raw": r} for r in rows])
        rows_total += len(rows)
        print(json.dumps({"stream": name, "rows": len(rows)}), flush=True)
        del rows
    engine.dispose()
    return {"rows": rows_total, "requests": -1}


def worker(args: argparse.Namespace) -> None:
    """Run one job in this fresh process and print its figures as JSON."""
    import fast_bitrix24  # noqa: F401 - imported before the baseline of memory for every kind of job
    import sqlalchemy  # noqa: F401

    import jobs.sync  # noqa: F401

    before = _status_kb("VmRSS")
    started = time.perf_counter()
    if args.worker == "export":
        report = work_export(args.url)
    elif args.worker == "sync":
        report = work_sync(args.url, args.db, args.reconcile)
    else:
        report = work_baseline(args.url, args.db)
    report.update(wall=time.perf_counter() - started, peak_mb=max(0, _status_kb("VmHWM") - before) / 1024)
    print(json.dumps(report), flush=True)


# ---------------------------------------------------------------- phases


@dataclass
class Figures:
    """What one phase measured."""

    name: str
    rows: int = 0
    requests: int = 0
    rejected: int = 0
    wall: float = 0.0
    peak_mb: float = 0.0
    note: str = ""
    unfinished: bool = False  # the baseline stopped (time limit) or failed before the end

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.rows / self.wall if self.wall > 0 else 0.0


class Bench:
    """The seeded state, the fixed port, the work folder and the databases of one benchmark run."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-sync-"))
        self.state = seeded_state(args.deals, args.cache, self.workdir)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.pg_base = os.environ.get(PG_ENV)
        self.pg_db: str | None = None

    def emulator(self, name: str, *, fresh: bool = True) -> Emulator:
        """An emulator on a copy of the seeded state (or, not ``fresh``, on the portal the last phase left), on the bench's port."""
        copy = self.workdir / "portal.state"
        if fresh or not copy.exists():
            copy.write_bytes(self.state.read_bytes())
        return Emulator(copy, latency=self.args.latency, workdir=self.workdir, extra=["--port", str(self.port)])

    def database(self, kind: str, name: str) -> str:
        """A fresh mirror URL: a SQLite file, or a schema in a database made for this run."""
        if kind == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.sqlite3')}"
        import sqlalchemy as sa

        assert self.pg_base
        admin = sa.create_engine(self.pg_base.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
        if self.pg_db is None:
            self.pg_db = f"b24sync_bench_{os.getpid()}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{self.pg_db}"')
        admin.dispose()
        url = sa.engine.make_url(self.pg_base).set(database=self.pg_db)
        schema = name.replace("-", "_")
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        engine.dispose()
        return f"{url.render_as_string(hide_password=False)}?options=-csearch_path%3D{schema}"

    def drop(self) -> None:
        """Remove the PostgreSQL database of this run."""
        if self.pg_db and self.pg_base:
            import sqlalchemy as sa

            admin = sa.create_engine(self.pg_base.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)')
            admin.dispose()

    def phase(self, name: str, kind: str, *, db: str | None = None, reconcile: bool = False, fresh: bool = True,
              before: Callable[[Emulator], str] | None = None, limit: float | None = None) -> Figures:
        """One measured job on an emulator: ``before`` may change the portal first (its note is kept)."""
        emulator = self.emulator(name, fresh=fresh)
        note = ""
        try:
            if before is not None:
                note = before(emulator)
            emulator.reset_stats()
            args = [sys.executable, __file__, "--worker", kind, "--url", emulator.url]
            if db:
                args += ["--db", db]
            if reconcile:
                args.append("--reconcile")
            figures = Figures(name, note=note)
            started = time.perf_counter()
            try:
                done = subprocess.run(args, capture_output=True, text=True, timeout=limit, env={**os.environ, "PYTHONPATH": str(ROOT)})
            except subprocess.TimeoutExpired as exc:
                out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
                return self._unfinished(figures, emulator, out, float(limit or 0), f"stopped after {limit:.0f} s")
            if done.returncode != 0 and kind == "baseline":  # the hand-written way may not get through at all
                reason = next((line for line in reversed(done.stderr.splitlines()) if "Error" in line), "it failed")
                return self._unfinished(figures, emulator, done.stdout, time.perf_counter() - started, f"failed ({reason.strip()[:90]})")
            stats = emulator.stats()
        finally:
            emulator.stop()
        if done.returncode != 0:
            raise RuntimeError(f"{name}: the worker failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        figures.rows = report["rows"]
        figures.requests = stats["requests_total"]
        figures.rejected = stats["rejected_503"] + stats["rejected_429"]
        figures.wall = report["wall"]
        figures.peak_mb = report["peak_mb"]
        if "deal_updated" in report and before is not None:
            figures.note = f"{note}; {report['deal_updated']} deal(s) updated in the mirror, {report['written']} row(s) written"
        return figures


    @staticmethod
    def _unfinished(figures: Figures, emulator: Emulator, out: str, wall: float, what: str) -> Figures:
        """Figures of a baseline that did not finish: the streams it completed, and why it ended."""
        streams = [json.loads(line) for line in out.splitlines() if line.startswith('{"stream"')]
        stats = emulator.stats()
        figures.rows, figures.requests = sum(s["rows"] for s in streams), stats["requests_total"]
        figures.rejected, figures.wall = stats["rejected_503"] + stats["rejected_429"], wall
        figures.unfinished = True
        figures.note = (f"{what} after {wall:.0f} s with {len(streams)} of 10 stream(s) done "
                        f"({', '.join(s['stream'] for s in streams) or 'none'}); offset pages pay per skipped row")
        return figures


def change_one_percent(emulator: Emulator) -> str:
    """Move 1 % of the deals to another stage of their pipeline (the changes' own requests are not counted)."""
    from connector.auth import WebhookAuth
    from connector.client import Bitrix24Client
    from connector.ratelimit import RequestPacer
    from connector.transport import HttpTransport

    client = Bitrix24Client(HttpTransport(), WebhookAuth(emulator.url), bucket=RequestPacer())
    rng = random.Random(7)
    categories = {int(r["ID"]): int(r["CATEGORY_ID"] or 0) for r in client.list_all("crm.deal.list", select=["ID", "CATEGORY_ID"])}
    chosen = rng.sample(sorted(categories), max(1, len(categories) // 100))
    stages: dict[int, list[str]] = {}
    for category in client.result("crm.category.list", {"entityTypeId": 2})["categories"]:
        entity = "DEAL_STAGE" if category["id"] == 0 else f"DEAL_STAGE_{category['id']}"
        stages[int(category["id"])] = [s["STATUS_ID"] for s in client.result("crm.status.list", {"filter": {"ENTITY_ID": entity}})
                                       if s.get("SEMANTICS") in (None, "")]
    calls = []
    for deal in chosen:
        category = categories.get(deal, 0)
        calls.append(("crm.deal.update", {"id": deal, "fields": {"TITLE": f"changed {rng.random():.6f}",
                                                                 "STAGE_ID": rng.choice(stages.get(category) or stages[0])}}))
    client.batch(calls, collect=True)
    client.close()
    time.sleep(1.1)  # the changes are older than the run's start (the second the portal prints)
    return f"{len(chosen)} deal(s) changed and moved stage before the run"


def print_table(rows: list[Figures]) -> None:
    """The figures, one line per phase."""
    head = f"{'phase':<40}{'rows':>10}{'rows/s':>9}{'HTTP req':>10}{'503/429':>9}{'wall s':>9}{'peak MB':>9}"
    print(head)
    print("-" * len(head))
    for f in rows:
        print(f"{f.name:<40}{f.rows:>10}{f.rate:>9.0f}{f.requests:>10}{f.rejected:>9}{f.wall:>9.1f}{f.peak_mb:>9.1f}")
        if f.note:
            print(f"{'':<40}{f.note}")


def main() -> None:
    """Parse options, run every phase, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=100_000, help="size of the seeded portal (emulator --seed)")
    parser.add_argument("--latency", type=float, default=1.0, help="emulator latency scale (1 = the cost model's delays)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "b24sync-bench", help="where seeded states are kept")
    parser.add_argument("--baseline-limit", type=float, default=1200.0, help="seconds the hand-written baseline may run per database")
    parser.add_argument("--skip-baseline", action="store_true", help="measure b24sync and the bare export only")
    parser.add_argument("--worker", choices=["export", "sync", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--reconcile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    bench = Bench(args)
    kinds = ["sqlite"] + (["postgresql"] if bench.pg_base else [])
    print(f"emulator: a fresh `b24sync emulator serve` per phase from {bench.state.name} on port {bench.port}; limits burst 50, "
          f"2 req/s, 480 s operating budget; latency x{args.latency}. Each job runs in a fresh process (peak memory = growth "
          f"of its RSS high-water mark). Databases: {', '.join(kinds)}" + ("" if bench.pg_base else f" (set {PG_ENV} for PostgreSQL)"),
          flush=True)
    results: list[Figures] = []

    def measure(*a: Any, **k: Any) -> Figures:
        """Run one phase, keep its figures, say it is done."""
        figures = bench.phase(*a, **k)
        results.append(figures)
        print(f"  measured: {figures.name} ({figures.wall:.1f} s)", flush=True)
        return figures

    try:
        bare = measure("bare export (list_all, nothing written)", "export")
        loads = {}
        for kind in kinds:
            loads[kind] = measure(f"b24sync initial load -> {kind}", "sync", db=bench.database(kind, f"mirror-{kind}"))
        baselines = {}
        if not args.skip_baseline:
            for kind in kinds:
                baselines[kind] = measure(f"fast_bitrix24 + SQLAlchemy -> {kind}", "baseline",
                                          db=bench.database(kind, f"handmade-{kind}"), limit=args.baseline_limit)
        sqlite_mirror = bench.database("sqlite", "mirror-sqlite")
        measure("b24sync incremental, 1% deals changed", "sync", db=sqlite_mirror, before=change_one_percent, fresh=False)
        measure("b24sync reconcile (IDs, history re-read)", "sync", db=sqlite_mirror, reconcile=True, fresh=False)
    finally:
        bench.drop()
    print()
    print_table(results)
    print()
    for kind, load in loads.items():
        line = f"{kind}: initial load {load.wall / bare.wall:.2f}x the bare export's wall time"
        if kind in baselines:
            base = baselines[kind]
            faster = base.wall / load.wall
            if base.unfinished:
                line += f"; the hand-written baseline did not finish ({base.rows} of {load.rows} rows in {base.wall:.0f} s)"
            else:
                line += f"; {faster:.1f}x faster than the hand-written baseline"
            line += f"; peak memory {load.peak_mb:.0f} MB vs {base.peak_mb:.0f} MB" if base.peak_mb else ""
        print(line)


if __name__ == "__main__":
    main()
