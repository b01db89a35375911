"""Hand-built CRM histories for the report tests, played through the emulator's API over HTTP and synced.

The portal's clock is set before every call, so every history row has a known moment: day N of the
scenario at 09:MM portal time (+03:00), where MM is the card's own minute — a card's stays are whole
days. ``DEAL_PATHS`` and ``LEAD_PATHS`` are the histories; the tests hold the figures worked out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from connector.auth import WebhookAuth
from connector.client import Bitrix24Client, RetryPolicy
from connector.emulator import new_portal
from connector.emulator.app import EmulatorApp
from connector.emulator.methods.users import new_user
from connector.emulator.server import EmulatorServer
from connector.transport import HttpTransport
from jobs.sync import run_sync

CODE = "report-test-code"
TZ = timezone(timedelta(hours=3))
DAY0 = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)  # a Monday; day 31 is 2 April
LIMITS = {"rate": 1_000_000.0, "burst": 1_000_000.0, "operating_budget": 1_000_000_000.0}

# name: (minute, user, source, amount, currency, [(day, stage or action)])
# actions: "move C1:NEW" (crm.item.update to pipeline 1), "delete", "sync" is global (SYNCS)
DEAL_PATHS: dict[str, tuple[int, int, str | None, int, str, list[tuple[int, str]]]] = {
    "D1": (1, 2, "WEB", 1000, "RUB", [(0, "NEW"), (1, "PREPARATION"), (3, "PREPAYMENT_INVOICE"), (4, "EXECUTING"),
                                      (6, "FINAL_INVOICE"), (7, "WON")]),  # forward, won
    "D2": (2, 2, "CALL", 500, "RUB", [(0, "NEW"), (2, "PREPAYMENT_INVOICE"), (5, "LOSE")]),  # skips a stage, lost
    "D3": (3, 3, "WEB", 300, "USD", [(1, "NEW"), (2, "PREPARATION"), (4, "PREPAYMENT_INVOICE"),
                                     (5, "PREPARATION")]),  # goes back
    "D4": (4, 3, "CALL", 200, "RUB", [(2, "EXECUTING")]),  # created directly in a later stage
    "D5": (5, 2, "WEB", 700, "RUB", [(3, "NEW"), (4, "PREPARATION"), (6, "move C1:NEW"),
                                     (8, "C1:PREPARATION")]),  # moved to pipeline 1 after the first sync
    "D6": (6, 1, None, 400, "RUB", [(3, "NEW"), (4, "APOLOGY"), (6, "NEW")]),  # lost, reopened
    "D8": (8, 2, "WEB", 100, "RUB", [(4, "NEW"), (5, "PREPARATION"), (9, "delete")]),  # deleted after the first sync
    "D9": (9, 1, "WEB", 50, "RUB", [(5, "NEW"), (6, "UC_PILOT"), (7, "PREPAYMENT_INVOICE")]),  # stage deleted later
    "D10": (10, 3, "WEB", 10, "RUB", [(8, "NEW"), (9, "UC_TRIAL"), (10, "PREPARATION")]),  # stage never mirrored
    "D7": (7, 3, "CALL", 900, "RUB", [(31, "NEW"), (32, "WON")]),  # created in April, won at once
}
# stages added to pipeline 0 for the scenario, and when they are deleted (after their cards moved on)
EXTRA_STAGES = {"UC_PILOT": ("Пилот", 25, 0, 7), "UC_TRIAL": ("Пробный период", 27, 8, 10)}  # name, sort, added, deleted
FIRST_SYNC_DAY = 5  # evening of day 5: D5's rows in pipeline 0 and D8 are in the mirror before they go
END_DAY = 40
USERS = {2: ("Мария", "Кузнецова"), 3: ("Иван", "Петров")}  # user 1 is the portal's admin, Андрей Соколов

LEAD_PATHS: dict[str, tuple[int, str | None, list[tuple[int, str]]]] = {
    "L1": (21, "WEB", [(0, "NEW"), (1, "IN_PROCESS"), (2, "PROCESSED"), (3, "CONVERTED")]),
    "L2": (22, "WEB", [(0, "NEW"), (1, "JUNK")]),
    "L3": (23, "WEB", [(0, "NEW"), (2, "IN_PROCESS")]),
    "L4": (24, "CALL", [(1, "NEW")]),
    "L5": (25, "CALL", [(1, "NEW"), (2, "IN_PROCESS"), (4, "JUNK")]),
    "L6": (26, "CALL", [(2, "PROCESSED"), (3, "CONVERTED")]),
    "L7": (27, None, [(3, "NEW"), (4, "CONVERTED")]),
}


def moment(day: int, minute: int = 0) -> datetime:
    """Day ``day`` of the scenario at 09:``minute`` portal time."""
    return DAY0 + timedelta(days=day, minutes=minute)


@dataclass
class Scenario:
    """A served emulator whose clock the scenario sets, and the mirror it is synced into."""

    engine: Any
    portal: Any = None
    server: Any = None
    client: Any = None
    now: datetime = DAY0
    deals: dict[str, int] = field(default_factory=dict)
    leads: dict[str, int] = field(default_factory=dict)
    status_rows: dict[str, int] = field(default_factory=dict)

    def start(self, history: str = "current") -> "Scenario":
        """A fresh portal (+03:00) with two more managers, served over HTTP (``history``: its history writer)."""
        self.portal = new_portal("+03:00", history=history)
        self.portal.clock = lambda: self.now.timestamp()
        for user_id, (first, last) in USERS.items():
            assert new_user(self.portal, name=first, last_name=last)["ID"] in (user_id, str(user_id))
        self.server = EmulatorServer(EmulatorApp(self.portal, secret=CODE, **LIMITS), secret=CODE).start()
        self.client = Bitrix24Client(HttpTransport(), WebhookAuth(self.server.url),
                                     retry=RetryPolicy(attempts=3, max_elapsed=30.0, base=0.01, cap=0.1))
        return self

    def stop(self) -> None:
        """Close the client and stop the server."""
        self.client.close()
        self.server.stop()

    def at(self, when: datetime) -> None:
        """Set the portal's clock."""
        assert when >= self.now, "the scenario never goes back in time"
        self.now = when

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """One REST call through the client, over HTTP."""
        return self.client.result(method, params)

    def sync(self, **options: Any) -> Any:
        """``run_sync`` of the mirror from the portal."""
        result = run_sync(self.client, self.engine, **options)
        assert result.status == "ok", result.to_json()
        return result


def _events(paths: dict[str, Any], kind: str) -> list[tuple[datetime, str, str, str]]:
    events = []
    for name, spec in paths.items():
        minute, steps = spec[0], spec[-1]
        for day, step in steps:
            events.append((moment(day, minute), kind, name, step))
    return events


def build(engine: Any) -> Scenario:
    """Play every deal and lead path on a new portal, syncing on the evening of day 5 and at the end."""
    s = Scenario(engine).start()
    s.call("crm.category.add", {"entityTypeId": 2, "fields": {"name": "Повторные продажи", "sort": 200}})
    events = _events(DEAL_PATHS, "deal") + _events(LEAD_PATHS, "lead")
    for stage, (name, sort, added, deleted) in EXTRA_STAGES.items():
        events.append((moment(added, 0), "stage+", stage, name))
        events.append((moment(deleted, 59), "stage-", stage, ""))
    events.append((moment(FIRST_SYNC_DAY, 60 * 12), "sync", "", ""))
    for when, kind, name, step in sorted(events, key=lambda e: e[0]):
        s.at(when)
        if kind == "sync":
            s.sync()
        elif kind == "stage+":
            fields = {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": name, "NAME": step, "SORT": EXTRA_STAGES[name][1]}
            s.status_rows[name] = int(s.call("crm.status.add", {"fields": fields}))
        elif kind == "stage-":
            s.call("crm.status.delete", {"id": s.status_rows[name]})
        elif kind == "deal":
            _deal_step(s, name, step)
        else:
            _lead_step(s, name, step)
    s.at(moment(END_DAY))
    s.sync(reconcile=True)
    return s


def _deal_step(s: Scenario, name: str, step: str) -> None:
    minute, user, source, amount, currency, _ = DEAL_PATHS[name]
    if name not in s.deals:
        fields = {"TITLE": f"Сделка {name}", "STAGE_ID": step, "ASSIGNED_BY_ID": user, "OPPORTUNITY": amount,
                  "CURRENCY_ID": currency, "SOURCE_ID": source or ""}  # empty: the portal would pick CALL
        s.deals[name] = int(s.call("crm.deal.add", {"fields": fields}))
    elif step == "delete":
        s.call("crm.deal.delete", {"id": s.deals[name]})
    elif step.startswith("move "):
        s.call("crm.item.update", {"entityTypeId": 2, "id": s.deals[name],
                                   "fields": {"categoryId": 1, "stageId": step.split()[1]}})
    else:
        s.call("crm.deal.update", {"id": s.deals[name], "fields": {"STAGE_ID": step}})


def _lead_step(s: Scenario, name: str, step: str) -> None:
    _, source, _ = LEAD_PATHS[name]
    if name not in s.leads:
        fields = {"TITLE": f"Лид {name}", "STATUS_ID": step, "SOURCE_ID": source or ""}
        s.leads[name] = int(s.call("crm.lead.add", {"fields": fields}))
    else:
        s.call("crm.lead.update", {"id": s.leads[name], "fields": {"STATUS_ID": step}})
