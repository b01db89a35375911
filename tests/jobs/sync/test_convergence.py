"""Convergence: random changes on the portal interleaved with syncs that are killed, faulted and rate-limited.

After a final sync with ``--reconcile`` every table equals the portal field for field, no key is
duplicated, and every stage-history row the portal ever listed is still in the mirror. A quick
set of seeds runs with the suite; ``B24SYNC_CONVERGENCE_SEEDS=200`` runs seeds 1..200 by hand.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.lease import LeaseHeld
from mappings import db, entities as ent
from tests.jobs.sync.conftest import MirrorCheck, client_of, listed, run_sync

ROOT = Path(__file__).resolve().parents[3]
LONG = int(os.environ.get("B24SYNC_CONVERGENCE_SEEDS", "0") or 0)
SEEDS = list(range(1, LONG + 1)) if LONG else [1, 2]
ROUNDS = 5


class Changes:
    """Random adds, updates, stage moves, pipeline moves and deletes, made through the API in batches."""

    def __init__(self, portal: Any, rng: random.Random):
        from connector.emulator.app import EmulatorApp
        from tests.jobs.sync.conftest import WEBHOOK_CODE

        self.client = client_of(EmulatorApp(portal, secret=WEBHOOK_CODE, rate=1e9, burst=1e9, operating_budget=1e12))  # no faults
        self.portal = portal
        self.rng = rng
        categories = self.client.result("crm.category.list", {"entityTypeId": 2})["categories"]
        if len(categories) < 2:
            self.client.call("crm.category.add", {"entityTypeId": 2, "fields": {"name": "Second pipeline"}})
            categories = self.client.result("crm.category.list", {"entityTypeId": 2})["categories"]
        self.stages = {}
        for category in categories:
            entity = "DEAL_STAGE" if category["id"] == 0 else f"DEAL_STAGE_{category['id']}"
            self.stages[int(category["id"])] = [s["STATUS_ID"] for s in self.client.result("crm.status.list", {"filter": {"ENTITY_ID": entity}})]
        self.statuses = [s["STATUS_ID"] for s in self.client.result("crm.status.list", {"filter": {"ENTITY_ID": "STATUS"}})]

    def _some(self, entity: str) -> int | None:
        ids = list(self.portal.records[entity])
        return self.rng.choice(ids) if ids else None

    def make(self, count: int) -> None:
        """``count`` random changes."""
        calls: list[tuple[str, dict[str, Any]]] = []
        rng = self.rng
        for _ in range(count):
            kind = rng.choices(["add", "update", "stage", "pipeline", "delete", "lead", "lead_status", "contact", "company_delete"],
                               weights=[14, 14, 16, 5, 6, 10, 8, 6, 2])[0]
            deal = self._some("deal")
            if kind == "add" or deal is None:
                category = rng.choice(list(self.stages))
                calls.append(("crm.deal.add", {"fields": {"TITLE": f"new {rng.random():.6f}", "CATEGORY_ID": category,
                                                          "OPPORTUNITY": rng.randint(0, 10**6) / 100, "STAGE_ID": rng.choice(self.stages[category])}}))
            elif kind == "update":
                calls.append(("crm.deal.update", {"id": deal, "fields": {"TITLE": f"edit {rng.random():.6f}", "COMMENTS": "x" * rng.randint(0, 5)}}))
            elif kind == "stage":
                category = int(self.portal.records["deal"][deal]["CATEGORY_ID"] or 0)
                calls.append(("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": rng.choice(self.stages[category])}}))
            elif kind == "pipeline":
                calls.append(("crm.item.update", {"entityTypeId": 2, "id": deal, "fields": {"categoryId": rng.choice(list(self.stages))}}))
            elif kind == "delete":
                calls.append(("crm.deal.delete", {"id": deal}))
            elif kind == "lead":
                calls.append(("crm.lead.add", {"fields": {"TITLE": f"lead {rng.random():.6f}",
                                                          "PHONE": [{"VALUE": f"+7 {rng.randint(1000, 9999)}", "VALUE_TYPE": "WORK"}]}}))
            elif kind == "lead_status" and self._some("lead"):
                calls.append(("crm.lead.update", {"id": self._some("lead"), "fields": {"STATUS_ID": rng.choice(self.statuses)}}))
            elif kind == "contact" and self._some("contact"):
                calls.append(("crm.contact.update", {"id": self._some("contact"), "fields": {"NAME": f"n{rng.randint(0, 99)}"}}))
            elif kind == "company_delete" and self._some("company"):
                calls.append(("crm.company.delete", {"id": self._some("company")}))
        self.client.batch(calls, collect=True)  # a deal deleted earlier in the same batch may refuse a later change


class Scenario:
    """One seed: a portal behind one emulator (plain or hostile by turns), one mirror, the history ever listed."""

    def __init__(self, seed: int, make_emulator: Any, seeded_portal: Any, mirror_url: str):
        self.rng = random.Random(seed)
        self.seed = seed
        self.server = make_emulator(seeded_portal(seed % 3 + 1, deals=60))
        self.app = self.server.app
        self.url = mirror_url
        self.engine = db.open_engine(mirror_url)
        self.changes = Changes(self.app.portal, self.rng)
        self.ever: dict[str, set[int]] = {name: set() for name in ent.HISTORIES}

    def hostile(self, on: bool) -> None:
        """Faults, a tight rate limit and slow replies (on), or none of them (off), for the next sync."""
        from connector.emulator.faults import FaultPlan
        from connector.emulator.limits import LeakyBucket

        if on:
            self.app.faults = FaultPlan.parse(f"5xx=0.06,timeout=0.02,html=0.03,cut=0.03,reset=0.03,seed={self.rng.randint(1, 10**6)},hang=0.3")
            self.app.bucket = LeakyBucket(rate=8.0, burst=6.0, clock=self.app._now)
            self.app.latency = 0.3
        else:
            self.app.faults = FaultPlan.parse(None)
            self.app.bucket = LeakyBucket(rate=1e6, burst=1e6, clock=self.app._now)
            self.app.latency = 0.0

    def remember_history(self) -> None:
        """After a complete run: every history row the portal lists now must stay in the mirror for good."""
        for name in ent.HISTORIES:
            stream = ent.STREAMS[name]
            self.ever[name] |= {int(r["ID"]) for r in listed(self.app, stream.list_method, {"entityTypeId": stream.entity_type_id})}

    def sync_in_process(self, *, during: bool = False, reconcile: bool = False) -> Any:
        """A sync in this process; with ``during`` another thread changes the portal while it runs."""
        worker = None
        if during:
            worker = threading.Thread(target=lambda: [self.changes.make(3) or time.sleep(0.02) for _ in range(5)])
            worker.start()
        client = client_of(self.server)
        try:
            return run_sync(client, self.engine, reconcile=reconcile, wait=30)
        except LeaseHeld:
            return None
        finally:
            client.close()
            if worker is not None:
                worker.join()

    def sync_killed(self) -> None:
        """A sync in a subprocess, killed with SIGKILL at a random moment."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "B24SYNC_TIMEOUT": "20"}
        proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "sync", "--webhook", self.server.url, "--db", self.url, "--wait"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(self.rng.uniform(0.6, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def play(self) -> None:
        """The rounds, then the final sync and reconcile."""
        for _ in range(ROUNDS):
            self.changes.make(self.rng.randint(5, 25))
            how = self.rng.choice(["plain", "hostile", "killed", "during", "reconcile"])
            self.hostile(how == "hostile" or (how == "killed" and self.rng.random() < 0.5))
            if how == "killed":
                self.sync_killed()
                continue
            result = self.sync_in_process(during=how == "during", reconcile=how == "reconcile")
            if result is not None and result.ok and how in ("plain", "reconcile"):
                self.remember_history()
        self.hostile(False)
        final = self.sync_in_process(reconcile=True)
        assert final is not None and final.ok, final and final.error
        self.remember_history()

    def check(self) -> None:
        """Every table equals the portal; nothing duplicated; no history row ever listed is lost."""
        MirrorCheck(self.engine, self.app).everything(self.ever)

    def close(self) -> None:
        """Release the mirror's connections."""
        self.engine.dispose()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_mirror_converges(seed: int, make_emulator: Any, seeded_portal: Any, mirror_url: str) -> None:
    scenario = Scenario(seed, make_emulator, seeded_portal, mirror_url)
    try:
        scenario.play()
        scenario.check()
    finally:
        scenario.close()
