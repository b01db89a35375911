"""``make demo``: the main job of b24sync against an embedded, seeded Bitrix24 emulator.

It seeds a portal with a year of CRM activity, serves it on loopback, and then works on it only
over HTTP through ``Bitrix24Client``, as on a real portal: plan ``config.example.toml`` against the
portal, apply it (moving the deals out of the stock stages the config drops), plan again (empty),
export the result, and show every pipeline's stages with their deal counts.
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from connector.client import Bitrix24Client
from connector.emulator import new_portal
from connector.emulator.app import EmulatorApp
from connector.emulator.server import EmulatorServer
from jobs import provision
from mappings.config import Config
from mappings.loader import load_config, parse_config

DEALS = 2000
SEED = 2026
CONFIG = Path(__file__).resolve().parent.parent / "config.example.toml"


def pipelines_report(client: Bitrix24Client) -> list[dict[str, Any]]:
    """Pipelines in portal order, each with its stages in SORT order (one call plus one batch)."""
    categories = client.result("crm.category.list", {"entityTypeId": 2})["categories"]
    stage_lists = client.batch({
        f"s{c['id']}": ("crm.status.list", {"filter": {"ENTITY_ID": provision.stage_entity(c["id"])}, "order": {"SORT": "ASC"}})
        for c in categories
    })
    return [
        {"pipeline": c, "stages": stage_lists[f"s{c['id']}"]}
        for c in sorted(categories, key=lambda c: (c["sort"], c["id"]))
    ]


def keep_undeclared_pipelines(config: Config, client: Bitrix24Client) -> Config:
    """The config plus, unchanged, every portal pipeline it does not declare (taken from an export).

    This is what a company adopting the example does: export the portal, keep the pipelines it
    still uses as they are, and let the file manage the rest.
    """
    exported = parse_config(provision.export(client), "export")
    declared = {p.key for p in config.pipelines} | {p.name for p in config.pipelines}
    kept = [p for p in exported.pipelines if not p.default and not declared & {p.key, p.name}]
    return config.model_copy(update={"pipelines": [*config.pipelines, *kept]})


def stage_counts(client: Bitrix24Client) -> dict[str, int]:
    """Deals per STAGE_ID, counted from a full keyset export of the deals (ID and stage only)."""
    counts: dict[str, int] = {}
    for deal in client.list_all("crm.deal.list", select=["ID", "STAGE_ID"]):
        counts[deal["STAGE_ID"]] = counts.get(deal["STAGE_ID"], 0) + 1
    return counts


def render(report: list[dict[str, Any]], counts: dict[str, int], console: Console) -> None:
    """One table per pipeline: stage name, code, kind, deals."""
    kinds = {"S": "won", "F": "lost"}
    for entry in report:
        pipeline = entry["pipeline"]
        table = Table(title=f"{pipeline['name']} (pipeline {pipeline['id']})", title_justify="left")
        for column, justify in (("stage", "left"), ("STATUS_ID", "left"), ("kind", "left"), ("deals", "right")):
            table.add_column(column, justify=justify)
        for stage in entry["stages"]:
            kind = kinds.get(stage.get("SEMANTICS") or "", "in progress")
            table.add_row(stage["NAME"], stage["STATUS_ID"], kind, str(counts.get(stage["STATUS_ID"], 0)))
        table.add_row("[b]total[/b]", "", "", f"[b]{sum(counts.get(s['STATUS_ID'], 0) for s in entry['stages'])}[/b]")
        console.print(table)


def main() -> int:
    """Seed, serve, plan, apply, re-plan, export, report; exit 1 if anything does not add up."""
    console = Console(highlight=False)
    config = load_config(CONFIG)
    started = time.perf_counter()
    portal = new_portal(seed=SEED, deals=DEALS)
    deals = len(portal.records["deal"])
    console.print(f"Seeded an emulated portal: {deals} deals, {len(portal.records['lead'])} leads, "
                  f"{len(portal.history[2])} deal stage-history rows ({time.perf_counter() - started:.1f} s).")
    with EmulatorServer(EmulatorApp(portal, secret=secrets.token_hex(8))).start() as server:
        console.print(f"Emulator on {server.base_url}; everything below goes over HTTP through Bitrix24Client.\n")
        client = Bitrix24Client.from_webhook(server.url)
        config = keep_undeclared_pipelines(config, client)
        console.rule(f"provision plan --config {CONFIG.name} (+ the portal's other pipelines, kept as they are)")
        first = provision.plan(config, client)
        provision.render_plan(first, console)
        if first.errors:
            return 1
        console.rule("provision apply --allow-delete --yes")
        writes = provision.apply(client, first, allow_delete=True, progress=console.print)
        console.print(f"Apply complete: {writes} write call(s).")
        console.rule("provision plan (again)")
        second = provision.plan(config, client)
        provision.render_plan(second, console)
        console.rule("provision export (first lines)")
        exported = provision.export(client)
        console.print("\n".join(exported.splitlines()[:12]) + "\n...", markup=False)
        console.rule("deals per stage (list_all keyset export)")
        counts = stage_counts(client)
        render(pipelines_report(client), counts, console)
        stats = server.stats()
        client.close()
    console.print(f"{stats['requests_total']} HTTP requests ({stats['batch_commands_total']} batched commands), "
                  f"{stats['rejected_503']} rejected by the rate limit, {stats['writes_total']} writes.")
    if second.has_changes:
        console.print("[red]the second plan is not empty[/red]")
        return 1
    if sum(counts.values()) != deals:
        console.print(f"[red]exported {sum(counts.values())} deals, the portal holds {deals}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
