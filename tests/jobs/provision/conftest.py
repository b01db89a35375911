"""Fixtures of the provisioning tests: a client of an emulator over HTTP, and portal readers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.auth import WebhookAuth
from connector.client import Bitrix24Client, RetryPolicy
from connector.emulator import pipelines
from connector.ratelimit import LeakyBucket
from connector.transport import HttpTransport

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "config.example.toml"
TEST_RETRY = RetryPolicy(attempts=4, max_elapsed=30.0, base=0.01, cap=0.05)


def client_for(server: Any, transport: Any = None, **options: Any) -> Bitrix24Client:
    """The real client over HTTP to ``server``, with a bucket that never throttles tests and a short deadline."""
    options.setdefault("bucket", LeakyBucket(burst=100_000, rate=100_000))
    options.setdefault("retry", TEST_RETRY)
    return Bitrix24Client(transport or HttpTransport(), WebhookAuth(server.url), **options)


@pytest.fixture
def client(emulator: Any) -> Any:
    """A client of the ``emulator`` fixture's portal."""
    made = client_for(emulator)
    yield made
    made.close()


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
