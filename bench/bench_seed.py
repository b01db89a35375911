"""Benchmark of the seed generator: how long ``new_portal(seed=N)`` takes and how much memory it needs.

Every record and stage move goes through the portal's own methods (``registry.invoke``), so this is
also the cost of ~10 in-process CRM writes per deal. Prints figures, never asserts.

    .venv/bin/python bench/bench_seed.py [--deals 20000] [--seed 1] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.emulator import new_portal  # noqa: E402


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    """Seed one portal and print time, writes per second and memory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (exact heap peak, but seeding runs ~5x slower)")
    args = parser.parse_args()

    new_portal()  # imports and the default dictionaries, outside the measurement
    rss_before = peak_rss_mb()
    if args.tracemalloc:
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    portal = new_portal(seed=args.seed, deals=args.deals)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    traced = tracemalloc.get_traced_memory() if args.tracemalloc else None
    tracemalloc.stop()

    records = {entity: len(rows) for entity, rows in portal.records.items()}
    moves = sum(1 for rows in portal.history.values() for row in rows if row["TYPE_ID"] != 1)
    writes = sum(records.values()) + moves  # creations plus stage moves, each one method call
    print(f"seeded portal (seed {args.seed}): {records['deal']:,} deals, {records['lead']:,} leads, "
          f"{records['contact']:,} contacts, {records['company']:,} companies, "
          f"{sum(len(rows) for rows in portal.history.values()):,} stage history rows")
    print(f"time:   {wall:8.1f} s wall, {cpu:.1f} s CPU; {writes:,} CRM writes, "
          f"{wall / max(writes, 1) * 1e6:.0f} us per write")
    print(f"memory: {peak_rss_mb():8.0f} MB peak RSS of the process ({rss_before:.0f} MB before seeding)")
    if traced is not None:
        current, peak = traced
        print(f"        {peak / 1e6:8.0f} MB Python heap peak while seeding, {current / 1e6:.0f} MB still allocated after it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
