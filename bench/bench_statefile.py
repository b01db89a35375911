"""The emulator's state file: loading the JSON-lines format beside a pickle of the same portal.

    python bench/bench_statefile.py [--deals 100000] [--repeat 3]

The portal is the seeded one bench_list_all.py caches (seeded here when missing). It is written once
as a state file and once with ``pickle`` (what ``--state`` used to be, and what a crafted file could
run code through); each load runs in a fresh process, so its time and peak memory are its own.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(kind: str, path: str) -> None:
    """Load ``path`` once and print seconds, peak MB and the number of records as JSON."""
    from connector.emulator import statefile

    began = time.perf_counter()
    if kind == "pickle":
        with open(path, "rb") as fh:
            state = pickle.load(fh)  # noqa: S301 (our own file: the baseline being measured)
    else:
        state = statefile.read(path)
    seconds = time.perf_counter() - began
    records = sum(len(r) for r in state["records"].values())
    print(json.dumps({"seconds": seconds, "peak_mb": _peak_mb(), "records": records}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000, help="size of the seeded portal")
    parser.add_argument("--repeat", type=int, default=3, help="loads of each kind (best time printed)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "b24sync-bench")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from bench_list_all import seeded_state
    from connector.emulator import statefile

    work = Path(tempfile.mkdtemp(prefix="b24sync-statefile-"))
    source = seeded_state(args.deals, args.cache, work)
    state = statefile.read(source)
    jsonl, pickled = work / "portal.state", work / "portal.pickle"
    began = time.perf_counter()
    statefile.write(jsonl, state)
    wrote_jsonl = time.perf_counter() - began
    began = time.perf_counter()
    with pickled.open("wb") as fh:
        pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
    wrote_pickle = time.perf_counter() - began
    records = sum(len(r) for r in state["records"].values())
    history = sum(len(r) for r in state["history"].values())
    del state
    print(f"portal: {args.deals:,} deals seeded, {records:,} records, {history:,} history rows; best of {args.repeat} loads, "
          "each in a fresh process\n")
    print(f"{'format':<28}{'file MB':>9}{'write s':>9}{'load s':>9}{'peak MB':>9}")
    print("-" * 64)
    best = {}
    for name, path, wrote in (("JSON lines (--state)", jsonl, wrote_jsonl), ("pickle (the old format)", pickled, wrote_pickle)):
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--child", "pickle" if path == pickled else "jsonl", str(path)],
                                 capture_output=True, text=True, check=True, cwd=ROOT)
            runs.append(json.loads(out.stdout))
        fastest = min(runs, key=lambda r: r["seconds"])
        best[name] = fastest["seconds"]
        print(f"{name:<28}{path.stat().st_size / 1e6:>9.1f}{wrote:>9.2f}{fastest['seconds']:>9.2f}{fastest['peak_mb']:>9.1f}")
    first, second = best.values()
    print(f"\nJSON lines load in x{first / second:.2f} the pickle's time; nothing in them can run code")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
