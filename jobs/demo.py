"""``make demo``: start a seeded local Bitrix24 emulator and show its pipelines, stages and deal counts.

Everything is read over plain HTTP from the emulator, as any Bitrix24 client would: one call for
the pipelines, one batch for their stages, one batch of counting ``crm.deal.list`` calls.
"""

from __future__ import annotations

import secrets
import sys
import time
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from connector.emulator import new_portal
from connector.emulator.app import EmulatorApp
from connector.emulator.server import EmulatorServer
from connector.encoding import encode_query

DEALS = 2000
SEED = 2026


def call(session: requests.Session, url: str, method: str, params: dict[str, Any] | None = None) -> Any:
    """One REST call as JSON POST; the ``result`` of the reply (raises on an error reply)."""
    reply = session.post(url + method, json=params or {}, timeout=60)
    body = reply.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']} {body.get('error_description', '')}")
    return body["result"]


def batch(session: requests.Session, url: str, commands: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Run up to 50 commands in one ``batch``; returns the batch's ``result`` block."""
    cmd = {key: f"{method}?{encode_query(params)}" for key, (method, params) in commands.items()}
    return call(session, url, "batch", {"halt": 1, "cmd": cmd})


def pipelines_report(url: str) -> list[dict[str, Any]]:
    """Pipelines with their stages and the number of deals in each stage, read over HTTP."""
    with requests.Session() as session:
        categories = call(session, url, "crm.category.list", {"entityTypeId": 2})["categories"]
        entity = {c["id"]: ("DEAL_STAGE" if c["id"] == 0 else f"DEAL_STAGE_{c['id']}") for c in categories}
        stage_lists = batch(session, url, {
            f"s{cid}": ("crm.status.list", {"filter": {"ENTITY_ID": name}, "order": {"SORT": "ASC"}})
            for cid, name in entity.items()
        })["result"]
        report = []
        for category in sorted(categories, key=lambda c: (c["sort"], c["id"])):
            stages = stage_lists[f"s{category['id']}"]
            counts = batch(session, url, {
                f"c{i}": ("crm.deal.list", {"filter": {"STAGE_ID": s["STATUS_ID"]}, "select": ["ID"], "start": 0})
                for i, s in enumerate(stages)
            })
            totals = counts["result_total"] or {}
            report.append({
                "pipeline": category,
                "stages": [dict(stage, DEALS=int(totals.get(f"c{i}", 0))) for i, stage in enumerate(stages)],
            })
        return report


def render(report: list[dict[str, Any]], console: Console) -> None:
    """One table per pipeline: stage name, code, kind, deals."""
    kinds = {"S": "won", "F": "lost"}
    for entry in report:
        pipeline = entry["pipeline"]
        table = Table(title=f"{pipeline['name']} (pipeline {pipeline['id']})", title_justify="left")
        table.add_column("stage")
        table.add_column("STATUS_ID")
        table.add_column("kind")
        table.add_column("deals", justify="right")
        for stage in entry["stages"]:
            table.add_row(stage["NAME"], stage["STATUS_ID"], kinds.get(stage.get("SEMANTICS") or "", "in progress"),
                          str(stage["DEALS"]))
        table.add_row("[b]total[/b]", "", "", f"[b]{sum(s['DEALS'] for s in entry['stages'])}[/b]")
        console.print(table)


def main() -> int:
    """Seed a portal, serve it on loopback, print the report, stop."""
    console = Console()
    started = time.perf_counter()
    portal = new_portal(seed=SEED, deals=DEALS)
    deals = len(portal.records["deal"])
    console.print(f"Seeded an emulated portal with {deals} deals, {len(portal.records['lead'])} leads and "
                  f"{len(portal.history[2])} deal stage-history rows in {time.perf_counter() - started:.1f} s.")
    with EmulatorServer(EmulatorApp(portal, secret=secrets.token_hex(8))).start() as server:
        console.print(f"Emulator listening on {server.base_url} (webhook /rest/1/<code>/); reading it over HTTP:\n")
        report = pipelines_report(server.url)
        render(report, console)
        stats = server.stats()
    console.print(f"{stats['requests_total']} HTTP requests ({stats['batch_commands_total']} batched commands), "
                  f"{stats['rejected_503']} rejected by the rate limit.")
    counted = sum(s["DEALS"] for entry in report for s in entry["stages"])
    if counted != deals:
        console.print(f"[red]stage counts add up to {counted}, the portal holds {deals} deals[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
