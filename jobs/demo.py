"""``b24sync demo`` (``make demo``): all of b24sync against an embedded, seeded Bitrix24 emulator, in well under a minute.

It seeds a portal with a year of CRM activity and serves it on loopback, then works on it only over
HTTP through ``Bitrix24Client``, as on a real portal: plan ``config.example.toml``, apply it, plan
again (empty); sync the CRM into a fresh SQLite mirror; print the deal and lead funnels (weakest
stage, lead quality per channel); write the HTML and CSV reports; save the portal and a worker
config, and say which command comes next. Nothing is left running.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from connector.client import Bitrix24Client
from connector.emulator import new_portal
from connector.emulator.app import EmulatorApp
from connector.emulator.server import EmulatorServer
from connector.ratelimit import PLANS
from jobs import provision
from mappings.config import Config
from mappings.loader import load_config, parse_config

DEALS = 2000
SEED = 2026
PORT = 8724  # the emulator's loopback port: the saved portal is served again at the same address (the mirror knows it)
OUT = Path("out/demo")
CONFIG = Path(__file__).resolve().parent.parent / "config.example.toml"
MIRROR = "mirror.sqlite3"
PLAN = "enterprise"  # the emulator and the client at an Enterprise portal's limits: 5 requests/s, a burst of 250


def keep_undeclared_pipelines(config: Config, client: Bitrix24Client) -> Config:
    """The config plus, unchanged, every portal pipeline it does not declare (taken from an export).

    This is what a company adopting the example does: export the portal, keep the pipelines it
    still uses as they are, and let the file manage the rest.
    """
    exported = parse_config(provision.export(client), "export")
    declared = {p.key for p in config.pipelines or []} | {p.name for p in config.pipelines or []}
    kept = [p for p in exported.pipelines or [] if not p.default and not declared & {p.key, p.name}]
    return config.model_copy(update={"pipelines": [*(config.pipelines or []), *kept]})


def _server(app: EmulatorApp, secret: str, port: int) -> EmulatorServer:
    """The emulator bound to ``port`` when it is free, else to any free port (``with`` starts and stops it)."""
    try:
        return EmulatorServer(app, port=port, secret=secret)
    except OSError:
        return EmulatorServer(app, port=0, secret=secret)


def _fresh_mirror(out: Path) -> Path:
    """A new, empty mirror each run (a second demo seeds a new portal at the same address)."""
    path = out / MIRROR
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _shown(path: Path) -> str:
    """A path as people type it: relative to the current folder when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _b24sync() -> str:
    """How to run b24sync from here: the venv's script when it is not on PATH."""
    script = Path(sys.executable).parent / "b24sync"
    if script.exists():
        from shutil import which

        found = which("b24sync")
        return "b24sync" if found and Path(found).resolve() == script.resolve() else _shown(script)
    return "b24sync"


def provision_example(client: Bitrix24Client, console: Console) -> bool:
    """Plan ``config.example.toml`` (plus the portal's other pipelines), apply it, plan again; True when the second plan is empty."""
    config = keep_undeclared_pipelines(load_config(CONFIG), client)
    console.rule(f"provision plan --config {CONFIG.name} (+ the portal's other pipelines, kept as they are)")
    first = provision.plan(config, client)
    provision.render_plan(first, console)
    if first.errors:
        return False
    console.rule("provision apply --allow-delete --yes")
    writes = provision.apply(client, first, allow_delete=True, progress=lambda line: console.print(line, markup=False))
    console.print(f"Apply complete: {writes} write call(s).")
    console.rule("provision plan (again)")
    second = provision.plan(config, client)
    provision.render_plan(second, console)
    return not second.has_changes and not second.errors


def sync_mirror(client: Bitrix24Client, engine: Any, console: Console) -> Any:
    """One sync into the mirror, with bars on a terminal; the ``SyncResult``."""
    from jobs.sync import run_sync
    from jobs.sync.progress import NullProgress, RichProgress

    if console.is_terminal:
        with RichProgress(console) as progress:
            result = run_sync(client, engine, progress=progress)
    else:
        result = run_sync(client, engine, progress=NullProgress())
    for line in result.lines():
        console.print(line, markup=False)
    return result


def show_funnels(engine: Any, console: Console) -> None:
    """The default pipeline's deal funnel and the lead funnel (with lead quality per channel) in the terminal."""
    from jobs.report import funnel, render_table

    for entity in ("deal", "lead"):
        console.rule(f"b24sync report funnel --entity {entity}")
        render_table(funnel(engine, entity=entity), console)
    console.print("(The seeded year ran on the portal's stock stages; the stages the config removed are listed apart as "
                  "removed, with their history kept.)", markup=False)


def write_worker_config(out: Path, mirror: Path, webhook: str) -> Path:
    """A worker config for the saved portal; the webhook goes to a file of its own (mode 600), never into the config."""
    secret_file = out / "webhook.txt"
    secret_file.write_text(webhook + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    path = out / "b24sync.toml"
    path.write_text(
        "# Written by `b24sync demo`: the worker's config for the demo portal (out/demo/portal.state).\n"
        "[portal]\n"
        'webhook_env = ""              # the URL is read from webhook_file only\n'
        'webhook_file = "webhook.txt"\n'
        f"rate = {PLANS[PLAN][1]:g}\n"
        f"burst = {PLANS[PLAN][0]:g}\n\n"
        "[database]\n"
        f'url = "sqlite:///{mirror.resolve()}"\n\n'
        "[schedule]\n"
        "sync_every_seconds = 30\n"
        'reconcile_cron = "0 3 * * *"\n'
        'reports_dir = "reports"\n',
        encoding="utf-8",
    )
    return path


def run_demo(out: Path = OUT, *, deals: int = DEALS, console: Console | None = None, port: int = PORT) -> int:
    """Seed, serve, provision, sync, report, save; exit 1 if anything does not add up."""
    from jobs.worker.reports import write_reports
    from mappings import db

    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = max(console.width, 120)  # the funnel tables stay readable in a log or a pipe
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    mirror = _fresh_mirror(out)
    portal = new_portal(seed=SEED, deals=deals)
    console.print(f"Seeded an emulated portal: {len(portal.records['deal'])} deals, {len(portal.records['lead'])} leads, "
                  f"{len(portal.history[2])} deal stage-history rows ({time.perf_counter() - began:.1f} s).")
    code = secrets.token_hex(8)
    engine = db.open_engine(f"sqlite:///{mirror}")
    burst, rate = PLANS[PLAN]
    with _server(EmulatorApp(portal, secret=code, rate=rate, burst=burst), code, port) as server:
        console.print(f"Emulator on {server.base_url} (an {PLAN.capitalize()} portal's limits: {rate:g} requests/s, a burst of "
                      f"{burst:g}); everything below goes over HTTP through Bitrix24Client.\n")
        client = Bitrix24Client.from_webhook(server.url, plan=PLAN)
        try:
            provisioned = provision_example(client, console)
            console.rule(f"b24sync sync --db sqlite:///{_shown(mirror)}")
            result = sync_mirror(client, engine, console) if provisioned else None
        finally:
            client.close()
        stats = server.stats()
        port_used = server.port
        webhook = server.url
    if result is None or not result.ok:
        console.print("[red]the demo stopped: " + ("the second plan is not empty" if result is None else f"the sync failed: {result.error}")
                      + "[/red]")
        engine.dispose()
        return 1
    show_funnels(engine, console)
    written, problems = write_reports(engine, out / "reports")
    engine.dispose()
    for problem in problems:
        console.print(f"[red]report: {problem}[/red]")
    portal.save(out / "portal.state")
    secret_file = out / "emulator.secret"
    secret_file.write_text(code + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    config = write_worker_config(out, mirror, webhook)
    console.print(f"\n{stats['requests_total']} HTTP requests ({stats['batch_commands_total']} batched commands), "
                  f"{stats['rejected_503']} rejected by the rate limit; done in {time.perf_counter() - began:.1f} s.")
    _next_steps(console, out, mirror, config, written, port_used)
    return 1 if problems else 0


def _next_steps(console: Console, out: Path, mirror: Path, config: Path, written: list[Path], port: int) -> None:
    latest = [p for p in written if p.stem in ("deal-funnel-default", "lead-funnel") and p.suffix == ".html"]
    b24 = _b24sync()
    console.rule("what is where")
    console.print(f"  the mirror (SQLite)     {_shown(mirror)}", markup=False)
    console.print(f"  the reports (HTML, CSV) {_shown(out / 'reports')}/: " + ", ".join(p.name for p in latest)
                  + f" and {len(written) - len(latest)} more (other pipelines, CSV, dated copies)", markup=False)
    console.print(f"  the emulated portal     {_shown(out / 'portal.state')}", markup=False)
    console.print(f"  a worker config         {_shown(config)} (webhook in webhook.txt, mode 600)", markup=False)
    console.rule("next")
    page = next((p for p in latest if p.stem == "deal-funnel-default"), None)
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if page is not None:
        console.print(f"  open the funnel:   {opener} {shlex.quote(_shown(page))}", markup=False, soft_wrap=True)
    query = "SELECT stage_id, count(*), sum(opportunity) FROM crm_deal GROUP BY stage_id ORDER BY 2 DESC"
    console.print(f"  query the mirror:  sqlite3 {shlex.quote(_shown(mirror))} {shlex.quote(query)}", markup=False, soft_wrap=True)
    secret = shlex.quote(_shown(out / "emulator.secret"))
    console.print(f"  run the worker:    {b24} emulator serve --state {shlex.quote(_shown(out / 'portal.state'))} "
                  f'--port {port} --secret "$(cat {secret})" &', markup=False, soft_wrap=True)
    console.print(f"                     {b24} worker --config {shlex.quote(_shown(config))} --metrics-port 9724", markup=False,
                  soft_wrap=True)
    console.print(f"  check on it:       {b24} status --config {shlex.quote(_shown(config))}", markup=False, soft_wrap=True)


def main() -> int:
    """``python -m jobs.demo [OUT]``: the same as ``b24sync demo``."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    return run_demo(out, deals=int(os.environ.get("B24SYNC_DEMO_DEALS", DEALS)))


if __name__ == "__main__":
    sys.exit(main())
