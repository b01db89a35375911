"""Many portals: three portals, each with its own mirror, served by two workers that share the work through the leases."""

from __future__ import annotations

from typing import Any

import pytest

from mappings import tables
from tests.jobs.conftest import BACKENDS
from tests.jobs.worker.conftest import PATIENCE, assert_mirror, client_of, eventually, rows, runs, write_config
from tests.jobs.worker.test_leases import never_overlap

NAMES = ("north", "south", "west")


def started_name(worker: Any) -> str:
    """The name a worker logged when it started (``host:pid``)."""
    return worker.wait_for(lambda w: next((e["worker"] for e in w.events() if e.get("event") == "started"), None), "the start")


@pytest.mark.parametrize("mirror_backend", BACKENDS[-1:])  # PostgreSQL when the suite has it (CI, make test)
def test_three_portals_two_workers_every_mirror_converges(make_emulator: Any, serve: Any, make_mirror: Any, start_worker: Any,
                                                          tmp_path: Any) -> None:
    folder = tmp_path / "portals"
    portals = []
    for number, name in enumerate(NAMES):
        app = make_emulator(seed=50 + number, deals=120, http=False)
        served = serve(app, delay=0.05)
        url, engine = make_mirror(upgraded=False)
        write_config(folder, name, served.url, url, sync_every_seconds=1, reconcile_cron="0 3 * * *")
        portals.append((name, app, engine))

    one = start_worker("--config-dir", str(folder), "--lease-ttl", "5", name="one")
    two = start_worker("--config-dir", str(folder), "--lease-ttl", "5", name="two")
    names = {started_name(one), started_name(two)}
    for name, _, engine in portals:
        eventually(lambda e=engine: [r for r in runs(e) if set(r.statuses.values()) == {"ok"}], f"{name}'s first sync", alive=one)

    for name, app, _ in portals:
        client = client_of(app)
        deals = sorted(app.portal.records["deal"])
        client.call("crm.deal.update", {"id": deals[0], "fields": {"TITLE": f"changed on {name}"}})
        client.call("crm.deal.delete", {"id": deals[1]})
        client.result("crm.lead.add", {"fields": {"TITLE": f"a new lead on {name}"}})
    for name, app, engine in portals:
        first = sorted(app.portal.records["deal"])[0]
        eventually(lambda e=engine, d=first, n=name: rows(e, tables.crm_deal, tables.crm_deal.c.id == d)[0]["title"] == f"changed on {n}",
                   f"{name}'s change in its mirror", alive=two)
    assert one.stop() == 0 and two.stop() == 0

    # a last pass over every portal: sync, then reconcile (the deletions)
    last = start_worker("--config-dir", str(folder), "--once", name="once")
    assert last.process.wait(timeout=PATIENCE) == 0, last.text()
    assert sorted(e["job"] for e in last.jobs(status="ok")) == sorted(["reconcile", "sync"] * len(NAMES))
    writers = set()
    for name, app, engine in portals:
        assert_mirror(engine, app)
        writers |= {r.worker for r in never_overlap(engine)}
    assert names <= writers  # both workers wrote: the work was shared
