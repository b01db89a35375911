"""Benchmark of the emulator: a 100,000-deal portal, and how fast it answers a 50-row page over HTTP.

Prints the emulator's wall time and modelled operating time per kind of page next to the real
portal's documented figures (2,387,743 leads: 0.097 s without a count, 49.9 s with one). Never asserts.
The seeded portal is kept in a state file (--cache-dir) and reused while the emulator code and
the day are the same, so repeated runs do not seed again.

    .venv/bin/python bench/bench_emulator.py [--deals 100000] [--repeat 15] [--cache-dir DIR | --no-cache]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.emulator import new_portal  # noqa: E402
from connector.emulator.app import EmulatorApp  # noqa: E402
from connector.emulator.seed import end_of_plan  # noqa: E402
from connector.emulator.server import EmulatorServer  # noqa: E402
from connector.emulator.state import Portal  # noqa: E402

CONNECTOR = Path(__file__).resolve().parents[1] / "connector"
SEED = 1

REAL = {  # bitrix24-rest.md section 4: crm.lead.list on a portal with 2,387,743 leads
    "keyset": 0.097,
    "count": 49.9,
}


def measure(session: requests.Session, url: str, method: str, params: dict[str, Any], repeat: int) -> dict[str, Any]:
    """Median wall time of ``repeat`` calls, with the row count and ``total`` of the last reply."""
    walls, body = [], {}
    for _ in range(repeat):
        started = time.perf_counter()
        reply = session.post(url + method, json=params, timeout=120)
        walls.append(time.perf_counter() - started)
        body = reply.json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body}")
    result = body["result"]
    rows = result["items"] if isinstance(result, dict) and "items" in result else result
    return {
        "wall": statistics.median(walls),
        "rows": len(rows),
        "total": body.get("total"),
    }


def code_version() -> str:
    """A digest of the code that builds a seeded portal: the emulator package and the envelope helpers."""
    digest = hashlib.sha256()
    for path in sorted((CONNECTOR / "emulator").rglob("*.py")) + [CONNECTOR / "envelope.py"]:
        digest.update(str(path.relative_to(CONNECTOR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def seeded_portal(deals: int, cache_dir: Path | None) -> tuple[Portal, str]:
    """The seeded portal: loaded from ``cache_dir`` when this code already seeded it today, else seeded and saved.

    The key is seed, size, day (the seeded year ends at the start of today) and ``code_version``;
    older files of the same seed and size are removed when a new one is written.
    """
    if cache_dir is None:
        return new_portal(seed=SEED, deals=deals), "seeded"
    day = end_of_plan(Portal()).date().isoformat()
    path = cache_dir / f"portal-s{SEED}-d{deals}-{day}-{code_version()}.state"
    if path.exists():
        return Portal.load(path), f"loaded from {path}"
    portal = new_portal(seed=SEED, deals=deals)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(f"portal-s{SEED}-d{deals}-*.state"):
        stale.unlink(missing_ok=True)
    portal.save(path)
    return portal, f"seeded, saved to {path}"


def main() -> int:
    """Build the portal, serve it, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "b24sync-bench",
                        help="where seeded portals are kept between runs")
    parser.add_argument("--no-cache", action="store_true", help="seed a fresh portal and keep no file")
    args = parser.parse_args()

    started = time.perf_counter()
    portal, how = seeded_portal(args.deals, None if args.no_cache else args.cache_dir)
    seeded = time.perf_counter() - started
    deals = len(portal.records["deal"])
    history = len(portal.history[2])
    print(f"seeded portal: {deals:,} deals, {len(portal.records['lead']):,} leads, {len(portal.records['contact']):,} contacts, "
          f"{history:,} deal stage-history rows in {seeded:.1f} s ({how})")

    ids = sorted(portal.records["deal"])
    middle = ids[len(ids) // 2]
    deep = (deals - 100) // 50 * 50
    select = ["ID", "TITLE", "STAGE_ID", "OPPORTUNITY", "DATE_MODIFY"]
    cases = [
        ("keyset page (start=-1, >ID, ORDER ID)", "crm.deal.list",
         {"order": {"ID": "ASC"}, "filter": {">ID": middle}, "select": select, "start": -1}, "keyset"),
        ("first page with count (start=0)", "crm.deal.list",
         {"order": {"ID": "ASC"}, "select": select, "start": 0}, "count"),
        (f"offset page with count (start={deep})", "crm.deal.list",
         {"order": {"ID": "ASC"}, "select": select, "start": deep}, "count"),
        ("filtered page with count (STAGE_ID=WON)", "crm.deal.list",
         {"filter": {"STAGE_ID": "WON"}, "select": select, "start": 0}, "count"),
        ("stage history keyset page (start=-1)", "crm.stagehistory.list",
         {"entityTypeId": 2, "order": {"ID": "ASC"}, "filter": {">ID": history // 2}, "start": -1}, "keyset"),
        ("stage history page with count", "crm.stagehistory.list",
         {"entityTypeId": 2, "order": {"ID": "ASC"}, "start": 0}, "count"),
    ]

    generous = {"rate": 1e9, "burst": 1e9, "operating_budget": 1e12}
    print(f"\n{'page of 50 rows':44} {'emulator wall':>14} {'modelled cost':>14} {'real portal':>12}  rows  total")
    for label, method, params, kind in cases:
        # a fresh app per case, so its stats hold only this case's modelled cost
        app = EmulatorApp(portal, secret="bench", **generous)
        with EmulatorServer(app).start() as server, requests.Session() as session:
            figures = measure(session, server.url, method, params, args.repeat)
            cost = app.stats()["operating_by_method"][method] / args.repeat
        total = "" if figures["total"] is None else f"{figures['total']:,}"
        print(f"{label:44} {figures['wall'] * 1000:11.1f} ms {cost * 1000:11.1f} ms {REAL[kind]:10.3f} s  "
              f"{figures['rows']:4}  {total}")

    print("\nreal portal: crm.lead.list on 2,387,743 leads, docs (settings/performance/huge-data.md);")
    print("modelled cost = time.operating charged per call (connector/emulator/costs.py, per-row prices 20x below")
    print("the documented ones); with --latency 1 the emulator also sleeps that long before replying.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
