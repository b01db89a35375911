"""Fixtures of the provisioning tests: a client of the emulator over HTTP (``client_for`` of tests/conftest.py,
on fake time), portal readers, the example config and the smallest legal funnels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.emulator import pipelines

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config.example.toml"


@pytest.fixture
def client(emulator: Any, client_for: Any) -> Any:
    """A client (on the suite's fake time, over HTTP) of the ``emulator`` fixture's portal."""
    return client_for(emulator)


def writes(server: Any) -> int:
    """Write calls the emulator has executed (batch commands counted one by one)."""
    return int(server.stats()["writes_total"])


def funnel_rows(portal: Any, entity_id: str) -> list[tuple[str, str, str, str | None, str | None]]:
    """(STATUS_ID, NAME, SORT, COLOR, SEMANTICS) of one dictionary in portal order, read from the emulator's state."""
    return [
        (r["STATUS_ID"], r["NAME"], r["SORT"], r["COLOR"], r["SEMANTICS"])
        for r in pipelines.entity_rows(portal, entity_id)
    ]


def cli(*args: str, url: str | None = None) -> Any:
    """Run ``b24sync provision ARGS`` through click's runner (stdin is not a terminal), with ``--webhook url``."""
    from click.testing import CliRunner

    from jobs.cli import main

    extra = ["--webhook", url] if url else []
    return CliRunner().invoke(main, ["provision", *args, *extra], catch_exceptions=False)


def funnel_toml(table: str, rows: list[tuple[str, str, str]]) -> str:
    """``[[table]]`` TOML tables for (key, name, semantics) rows, blank lines between them."""
    tables = []
    for key, name, semantics in rows:
        text = f'[[{table}]]\nkey = "{key}"\nname = "{name}"'
        tables.append(text + (f'\nsemantics = "{semantics}"' if semantics != "process" else ""))
    return "\n\n".join(tables) + "\n"


# the smallest legal funnels: one stage of each kind
LEADS = funnel_toml("leads.statuses", [("NEW", "Новый", "process"), ("CONVERTED", "Сделка", "success"), ("JUNK", "Брак", "failure")])
STAGES = funnel_toml("pipelines.stages", [("NEW", "Новая", "process"), ("WON", "Успех", "success"), ("LOSE", "Провал", "failure")])
