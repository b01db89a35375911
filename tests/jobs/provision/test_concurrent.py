"""Two admins at once: two applies of the same config against one portal, started a moment apart,
over HTTP with the emulator's latency on. Bitrix24 has no locks; the portal must still end in the
declared state with no duplicate pipeline, and the next plan must be empty."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from jobs import provision as pv
from mappings.loader import load_config
from tests.jobs.provision.conftest import EXAMPLE, cli

LATENCY = 1.0  # each reply waits its modelled cost plus a 20 ms round trip, so the two runs interleave
OFFSETS = [0.0, 0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25, 0.4]


def apply_like_the_cli(client: Any, config: Any, delay: float, outcomes: list[str]) -> None:
    """What `provision apply --yes --allow-delete` does: plan, then apply that plan (refused when stale)."""
    time.sleep(delay)
    try:
        plan = pv.plan(config, client)
        assert not plan.errors, plan.errors
        pv.apply(client, plan, allow_delete=True)
        outcomes.append("applied")
    except pv.StalePlan:
        outcomes.append("refused")  # refused before its first write: the other run changed the portal
    except BaseException as exc:  # anything else fails the test with its message
        outcomes.append(f"failed: {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("offset", OFFSETS, ids=[f"{i}:{o:g}s" for i, o in enumerate(OFFSETS)])
def test_two_concurrent_applies_leave_the_declared_state_once(make_emulator: Any, offset: float, client_for: Any) -> None:
    server = make_emulator(latency=LATENCY)
    config = load_config(EXAMPLE)
    outcomes: list[str] = []
    runs = [threading.Thread(target=apply_like_the_cli, args=(client_for(server), config, delay, outcomes)) for delay in (0.0, offset)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert not any(run.is_alive() for run in runs)
    assert sorted(outcomes) in (["applied", "applied"], ["applied", "refused"]), outcomes

    server.app.latency = 0.0
    assert len(server.portal.categories) == 2  # the default pipeline and one "repeat": no duplicate
    assert sorted(c.get("originId") or "" for c in server.portal.categories.values()) == ["", "repeat"]
    again = cli("plan", "--config", str(EXAMPLE), "--detailed-exitcode", url=server.url)
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output

    clean = make_emulator()
    clean_client, client = client_for(clean), client_for(server)
    pv.apply(clean_client, pv.plan(config, clean_client), allow_delete=True)
    assert pv.export(client) == pv.export(clean_client)  # exactly the declared funnels, nothing half-done
