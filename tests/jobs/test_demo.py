"""``b24sync demo``: the README's first command, run twice as a user would; its next steps work as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from mappings import db
from mappings.loader import load_config

ROOT = Path(__file__).resolve().parents[2]
PATIENCE = 300.0


def b24sync(*args: str, cwd: Path, **options: Any) -> subprocess.CompletedProcess[str]:
    """``b24sync ARGS`` in a subprocess with none of the user's B24SYNC_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24SYNC_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=PATIENCE, **options)


def test_the_demo_shows_both_funnels_twice_and_its_next_steps_work(tmp_path: Path) -> None:
    out = tmp_path / "out" / "demo"
    first = b24sync("demo", "--out", str(out), "--deals", "200", "--port", "0", cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    text = first.stdout
    for part in ("provision plan (again)", "No changes", "b24sync sync", "Deal funnel", "Lead funnel", "Weakest stage:",
                 "Lead quality by source", "what is where", "next"):
        assert part in text, part
    code = (out / "emulator.secret").read_text(encoding="utf-8").strip()
    assert code not in text + first.stderr  # the webhook's code stays in its files
    for name in ("mirror.sqlite3", "portal.state", "b24sync.toml", "reports/deal-funnel-default.html", "reports/lead-funnel.html",
                 "reports/lead-funnel.csv"):
        assert (out / name).is_file(), name
    assert (out / "webhook.txt").stat().st_mode & 0o077 == 0
    assert load_config(out / "b24sync.toml").schedule.reports_dir == "reports"

    # a second demo works too, on a fresh mirror
    second = b24sync("demo", "--out", str(out), "--deals", "200", "--port", "0", cwd=tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Deal funnel" in second.stdout and "Lead funnel" in second.stdout
    engine = db.open_engine(f"sqlite:///{out / 'mirror.sqlite3'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(DISTINCT run_id) FROM b24sync_run").scalar() == 1
    finally:
        engine.dispose()

    # the printed next steps: serve the saved portal again, run the worker once against it, check on it
    serve_line = next(line for line in second.stdout.splitlines() if "emulator serve --state" in line)
    port = re.search(r"--port (\d+)", serve_line).group(1)  # type: ignore[union-attr]
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24SYNC_")}
    env["PYTHONPATH"] = str(ROOT)
    emulator = subprocess.Popen([sys.executable, "-m", "jobs.cli", "emulator", "serve", "--state", str(out / "portal.state"),
                                 "--port", port, "--secret", (out / "emulator.secret").read_text().strip()],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert emulator.stdout is not None and emulator.stdout.readline().startswith("webhook: ")
        config = shlex.split(next(line for line in second.stdout.splitlines() if " worker --config " in line))
        worker = b24sync("worker", "--config", config[config.index("--config") + 1], "--once", cwd=tmp_path)
        assert worker.returncode == 0, worker.stderr[-3000:]
        assert "sync ok" in worker.stderr and "report ok" in worker.stderr
        checked = b24sync("status", "--config", str(out / "b24sync.toml"), cwd=tmp_path)
        assert checked.returncode == 0 and checked.stdout.rstrip().endswith("healthy"), checked.stdout
    finally:
        emulator.terminate()
        emulator.wait(timeout=60)
