"""Benchmark: b24sync's list_all against fast_bitrix24's get_all on a seeded emulator with its latency model.

Prints figures, never asserts. Every phase gets a fresh emulator subprocess started from the same
seeded state file, with the real default limits (burst 50, 2 req/s, 480 s operating budget), so no
exporter inherits the other's bucket or budget, and runs its export in a fresh worker process so
that peak memory is measured cleanly. Run: ``python bench/bench_list_all.py --deals 10000``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector.auth import WebhookAuth  # noqa: E402
from connector.client import Bitrix24Client  # noqa: E402
from connector.ratelimit import RequestPacer  # noqa: E402
from connector.transport import HttpTransport  # noqa: E402

SECRET = "bench-webhook-code"


# ---------------------------------------------------------------- the emulator subprocess


class Emulator:
    """``b24sync emulator serve`` in a subprocess, started from a copy of a seeded state file."""

    def __init__(self, state: Path, *, latency: float, workdir: Path, seed: int | None = None, extra: list[str] | None = None):
        args = [sys.executable, "-m", "jobs.cli", "emulator", "serve", "--secret", SECRET, "--state", str(state), "--latency", str(latency)]
        if seed is not None:
            args += ["--seed", str(seed)]
        self.log = open(workdir / "emulator.log", "ab")  # noqa: SIM115 (closed in stop)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(args + (extra or []), stdout=subprocess.PIPE, stderr=self.log, cwd=workdir, env=env)
        line = self.proc.stdout.readline().decode().strip() if self.proc.stdout else ""
        if not line.startswith("webhook: "):
            self.stop()
            raise RuntimeError(f"emulator did not start (see {workdir / 'emulator.log'})")
        self.url = line.split(" ", 1)[1]
        self.base = self.url.split("/rest/")[0]

    def stats(self) -> dict[str, Any]:
        """``GET /_emulator/stats``."""
        with urlopen(f"{self.base}/_emulator/stats", timeout=30) as reply:  # noqa: S310 (loopback)
            return json.loads(reply.read())

    def reset_stats(self) -> None:
        """``POST /_emulator/reset-stats``."""
        urlopen(Request(f"{self.base}/_emulator/reset-stats", data=b"", method="POST"), timeout=30).read()  # noqa: S310

    def stop(self) -> None:
        """SIGTERM and wait (the emulator saves its state file on exit)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def seeded_state(deals: int, cache: Path, workdir: Path) -> Path:
    """A state file of a portal seeded with about ``deals`` deals (built once, then cached)."""
    path = cache / f"portal-{deals}.state"
    if path.exists() and not _loads(path, workdir):
        print(f"the cached {path.name} was written by another emulator version: seeding again", flush=True)
        path.unlink()
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        print(f"seeding a portal of about {deals} deals (cached in {path}) ...", flush=True)
        building = cache / f"portal-{deals}.building"
        building.unlink(missing_ok=True)
        Emulator(building, latency=0, workdir=workdir, seed=deals).stop()
        building.rename(path)
        print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def _loads(path: Path, workdir: Path) -> bool:
    """True when today's emulator starts from (a copy of) the state file at ``path``."""
    probe = workdir / "probe.state"
    shutil.copyfile(path, probe)
    try:
        Emulator(probe, latency=0, workdir=workdir).stop()
    except RuntimeError:
        return False
    finally:
        probe.unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------- exporters


def ours(url: str, bucket: RequestPacer, flt: dict[str, Any] | None = None) -> Callable[[Callable[[int], None]], int]:
    """b24sync: list_all streams rows; nothing is kept but what ``seen`` records."""

    def run(seen: Callable[[int], None]) -> int:
        client = Bitrix24Client(HttpTransport(), WebhookAuth(url), bucket=bucket)
        for row in client.list_all("crm.deal.list", filter=flt):
            seen(int(row["ID"]))
        client.close()
        return int(client.counters["requests"])

    return run


def fast_bitrix24(url: str) -> Callable[[Callable[[int], None]], int]:
    """fast_bitrix24: get_all returns every row in one list."""

    def run(seen: Callable[[int], None]) -> int:
        import warnings

        from fast_bitrix24 import Bitrix

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = Bitrix(url, verbose=False).get_all("crm.deal.list")
        for row in rows:
            seen(int(row["ID"]))
        return -1

    return run


# ---------------------------------------------------------------- churn


@dataclass
class Churn:
    """Changes 1% of the deals during an export: half updated, a quarter deleted, a quarter as many added."""

    url: str
    ids: list[int]
    duration: float
    bucket: RequestPacer
    seed: int = 7
    steps: int = 20
    deleted: set[int] = field(default_factory=set)
    added: set[int] = field(default_factory=set)
    updated: int = 0
    requests: int = 0
    rejected: int = 0
    error: BaseException | None = None

    def start(self) -> threading.Thread:
        """Run in a background thread."""
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            rng = random.Random(self.seed)
            touched = rng.sample(self.ids, max(4, len(self.ids) // 100))
            half, quarter = len(touched) // 2, len(touched) // 4
            work: list[tuple[str, dict[str, Any]]] = [
                ("crm.deal.update", {"id": i, "fields": {"TITLE": f"изменена {rng.random():.6f}", "OPPORTUNITY": rng.randint(1, 10**6)}})
                for i in touched[:half]
            ]
            work += [("crm.deal.delete", {"id": i}) for i in touched[half : half + quarter]]
            work += [("crm.deal.add", {"fields": {"TITLE": "новая во время выгрузки"}}) for _ in range(quarter)]
            rng.shuffle(work)
            client = Bitrix24Client(HttpTransport(), WebhookAuth(self.url), bucket=self.bucket)
            per_step = -(-len(work) // self.steps)
            pause = self.duration / self.steps
            for start in range(0, len(work), per_step):
                if start:
                    time.sleep(pause)
                chunk = work[start : start + per_step]
                results = client.batch(chunk, collect=True)
                for (method, params), result in zip(chunk, results):
                    if isinstance(result, Exception):
                        continue
                    if method == "crm.deal.delete":
                        self.deleted.add(int(params["id"]))
                    elif method == "crm.deal.add":
                        self.added.add(int(result))
                    else:
                        self.updated += 1
            self.requests = int(client.counters["requests"])
            self.rejected = int(client.counters["503"])
            client.close()
        except BaseException as exc:  # noqa: BLE001 (printed by the caller)
            self.error = exc


# ---------------------------------------------------------------- one phase


@dataclass
class Figures:
    """What one phase measured."""

    name: str
    rows: int = 0
    requests: int = 0
    rejected_503: int = 0
    rejected_429: int = 0
    operating: float = 0.0
    wall: float = 0.0
    peak_mb: float = 0.0
    duplicated: int | None = None
    missed: int | None = None
    note: str = ""


def _status_kb(name: str) -> int:
    """A ``/proc/self/status`` figure in kB (VmRSS: now, VmHWM: the high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def worker(args: argparse.Namespace) -> None:
    """One export in this (fresh) process: wall time, peak RSS growth, and the count of each ID seen."""
    bucket = RequestPacer()  # our client and our churn writer share the portal's bucket, as on one IP
    baseline = sorted(int(i) for i in Path(args.baseline).read_text().split()) if args.baseline else None
    counts = bytearray(4 * (max(baseline) if baseline else args.size) + 1024)

    def seen(deal_id: int) -> None:
        nonlocal counts
        if deal_id >= len(counts):
            counts += bytearray(deal_id * 2 - len(counts) + 1)
        counts[deal_id] = min(255, counts[deal_id] + 1)

    flt = {"<=ID": args.le} if args.le else None
    exporter = ours(args.url, bucket, flt) if args.worker == "ours" else fast_bitrix24(args.url)
    churn = Churn(args.url, baseline, args.churn_for, bucket) if args.churn_for is not None and baseline else None
    import fast_bitrix24 as _warm  # noqa: F401 (imports happen before the baseline, for both exporters)

    rss_before = _status_kb("VmRSS")
    thread = churn.start() if churn else None
    started = time.perf_counter()
    exporter(seen)
    wall = time.perf_counter() - started
    peak_kb = _status_kb("VmHWM") - rss_before
    if thread is not None:
        thread.join()
    Path(args.out).write_bytes(bytes(counts))
    report = {"wall": wall, "peak_mb": max(0, peak_kb) / 1024}
    if churn is not None:
        report.update(
            deleted=sorted(churn.deleted), added=len(churn.added), updated=churn.updated,
            churn_requests=churn.requests, churn_503=churn.rejected, churn_error=repr(churn.error) if churn.error else None,
        )
    print(json.dumps(report))


def run_phase(
    name: str,
    kind: str,
    state: Path,
    *,
    latency: float,
    workdir: Path,
    size: int,
    le: int | None = None,
    baseline: list[int] | None = None,
    churn_for: float | None = None,
) -> tuple[Figures, list[int]]:
    """Start a fresh emulator on a copy of ``state``, export in a fresh worker process, measure, stop."""
    copy = workdir / f"{name.replace(' ', '-').replace('%', '')}.state"
    shutil.copyfile(state, copy)
    emulator = Emulator(copy, latency=latency, workdir=workdir)
    out = workdir / "counts.bin"
    args = [sys.executable, __file__, "--worker", kind, "--url", emulator.url, "--out", str(out), "--size", str(size)]
    if le:
        args += ["--le", str(le)]
    if churn_for is not None and baseline is not None:
        (workdir / "baseline.txt").write_text(" ".join(map(str, baseline)))
        args += ["--baseline", str(workdir / "baseline.txt"), "--churn-for", str(churn_for)]
    try:
        emulator.reset_stats()
        done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        stats = emulator.stats()
    finally:
        emulator.stop()
        copy.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: worker failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    counts = out.read_bytes()
    ids = [i for i, c in enumerate(counts) if c]
    figures = Figures(name)
    figures.rows = sum(counts)
    figures.requests = stats["requests_total"] - report.get("churn_requests", 0)
    figures.rejected_503 = stats["rejected_503"] - report.get("churn_503", 0)
    figures.rejected_429 = stats["rejected_429"]
    figures.operating = stats.get("operating_by_method", {}).get("crm.deal.list", 0.0)
    figures.wall = report["wall"]
    figures.peak_mb = report["peak_mb"]
    if churn_for is not None and baseline is not None:
        deleted = set(report["deleted"])
        figures.duplicated = sum(1 for c in counts if c > 1)
        figures.missed = len(set(baseline) - deleted - set(ids))
        figures.note = f"churn: {report['updated']} updated, {len(deleted)} deleted, {report['added']} added in {report['churn_requests']} requests"
        if report.get("churn_error"):
            figures.note += f"; churn failed: {report['churn_error']}"
    return figures, ids


def print_table(rows: list[Figures]) -> None:
    """The figures, one line per phase."""
    head = f"{'phase':<28}{'rows':>9}{'HTTP req':>10}{'503':>6}{'429':>6}{'operating s':>13}{'wall s':>9}{'peak MB':>9}{'dup':>6}{'missed':>8}"
    print(head)
    print("-" * len(head))
    for f in rows:
        dup = "" if f.duplicated is None else str(f.duplicated)
        missed = "" if f.missed is None else str(f.missed)
        print(f"{f.name:<28}{f.rows:>9}{f.requests:>10}{f.rejected_503:>6}{f.rejected_429:>6}{f.operating:>13.2f}{f.wall:>9.1f}{f.peak_mb:>9.1f}{dup:>6}{missed:>8}")
        if f.note:
            print(f"{'':<28}{f.note}")


def main() -> None:
    """Parse options, run every phase, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deals", type=int, default=100_000, help="size of the seeded portal (emulator --seed)")
    parser.add_argument("--latency", type=float, default=1.0, help="emulator latency scale (1 = the cost model's delays)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "b24sync-bench", help="where seeded states are kept")
    parser.add_argument("--skip-fast-bitrix24", action="store_true", help="measure b24sync only")
    parser.add_argument("--worker", choices=["ours", "fb"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--le", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    parser.add_argument("--churn-for", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-list-all-"))
    state = seeded_state(args.deals, args.cache, workdir)
    print(f"emulator: a fresh `b24sync emulator serve` per phase from {state.name}; limits burst 50, 2 req/s, "
          f"480 s operating budget; latency x{args.latency}. Each export runs in a fresh process "
          "(peak memory = growth of its RSS high-water mark during the export).", flush=True)
    common = {"latency": args.latency, "workdir": workdir, "size": args.deals}
    results: list[Figures] = []

    def done(figures: Figures) -> None:
        print(f"  measured: {figures.name} ({figures.wall:.1f} s)", flush=True)

    ours_plain, baseline = run_phase("b24sync list_all", "ours", state, **common)
    results.append(ours_plain)
    done(ours_plain)
    tenth = baseline[len(baseline) // 10]
    results.append(run_phase("b24sync list_all, 10% rows", "ours", state, le=tenth, **common)[0])
    fb_plain = None
    if not args.skip_fast_bitrix24:
        fb_plain, fb_ids = run_phase("fast_bitrix24 get_all", "fb", state, **common)
        if fb_ids != baseline:
            fb_plain.note = f"returned a different ID set than list_all ({len(fb_ids)} vs {len(baseline)})"
        results.append(fb_plain)
    results.append(run_phase("b24sync list_all + churn", "ours", state, baseline=baseline, churn_for=ours_plain.wall, **common)[0])
    if fb_plain is not None:
        results.append(run_phase("fast_bitrix24 get_all + churn", "fb", state, baseline=baseline, churn_for=fb_plain.wall, **common)[0])

    print()
    print_table(results)
    if fb_plain is not None:
        print()
        print(f"b24sync vs fast_bitrix24: operating time x{ours_plain.operating / max(fb_plain.operating, 1e-9):.3f}, "
              f"wall time x{ours_plain.wall / max(fb_plain.wall, 1e-9):.3f}, HTTP requests {ours_plain.requests} vs {fb_plain.requests}, "
              f"peak memory {ours_plain.peak_mb:.1f} MB vs {fb_plain.peak_mb:.1f} MB")
    small = results[1]
    print(f"b24sync peak memory: {small.peak_mb:.1f} MB for {small.rows} rows, {ours_plain.peak_mb:.1f} MB for {ours_plain.rows} rows")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
