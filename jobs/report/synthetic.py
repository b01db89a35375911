"""A synthetic mirror for benchmarks and property tests: realistic stage paths written straight into the tables.

The funnels are the example config's (``config.example.toml``: the 9-stage sales pipeline, the repeat
pipeline, the lead statuses). Paths go forward, skip, go back, are lost, won, reopened, moved to the
other pipeline, start in a later stage, pass a stage that was deleted since, and some cards are deleted.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from connector.catalog import stage_entity_id, stage_prefix
from mappings import tables as t

CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
DAY = 86400.0
REMOVED_STAGE = "PREPARATION"  # a stock stage the example config removes (its rows stay in history)
SOURCES = (("CALL", "Звонок", 10, 30), ("EMAIL", "Электронная почта", 20, 10), ("WEB", "Веб-сайт", 30, 30),
           ("ADVERTISING", "Реклама", 40, 15), ("PARTNER", "Существующий клиент", 50, 8),
           ("RECOMMENDATION", "По рекомендации", 60, 7))
MANAGERS = ("Анна Смирнова", "Иван Петров", "Мария Кузнецова", "Олег Волков", "Дарья Новикова", "Павел Орлов",
            "Елена Морозова", "Сергей Лебедев", "Ирина Козлова", "Никита Соколов", "Юлия Павлова", "Роман Егоров")
WRITE_CHUNK = 5000


@dataclass(frozen=True)
class Funnel:
    """One funnel of the example config: its STATUS_IDs in order and the dictionary they live in."""

    category: int
    name: str
    key: str | None
    process: list[str]
    success: str
    failure: str
    entity_id: str


def example_funnels(config: Path = CONFIG) -> tuple[list[Funnel], Funnel]:
    """The deal pipelines (0 and 1) and the lead statuses of the example config."""
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    deals = []
    for category, pipeline in enumerate(data["pipelines"][:2]):
        prefix = stage_prefix(category)
        stages = pipeline["stages"]
        deals.append(Funnel(
            category, pipeline["name"], None if pipeline.get("default") else pipeline["key"],
            [prefix + s["key"] for s in stages if s.get("semantics", "process") == "process"],
            next(prefix + s["key"] for s in stages if s.get("semantics") == "success"),
            next(prefix + s["key"] for s in stages if s.get("semantics") == "failure"),
            stage_entity_id(category),
        ))
    statuses = data["leads"]["statuses"]
    leads = Funnel(0, "Leads", None, [s["key"] for s in statuses if s.get("semantics", "process") == "process"],
                   next(s["key"] for s in statuses if s.get("semantics") == "success"),
                   next(s["key"] for s in statuses if s.get("semantics") == "failure"), "STATUS")
    return deals, leads


@dataclass
class Card:
    """One generated card: its rows (stage, category, moment) in order, and what the card row says now."""

    id: int
    created: datetime
    rows: list[tuple[str, int, datetime]] = field(default_factory=list)
    assigned: int = 1
    source: str = "CALL"
    amount: Decimal = Decimal(0)
    currency: str = "RUB"
    deleted: bool = False

    @property
    def stage(self) -> str:
        """The current stage (the last row's)."""
        return self.rows[-1][0]

    @property
    def category(self) -> int:
        """The current pipeline (the last row's)."""
        return self.rows[-1][1]


def _semantic(funnel: Funnel, stage: str) -> str:
    return "S" if stage == funnel.success else "F" if stage == funnel.failure else "P"


class _Walker:
    """Draws realistic paths through a funnel from one random generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def pause(self, mean_days: float) -> timedelta:
        """A wait of whole seconds (portal times have no fractions), at least a minute."""
        return timedelta(seconds=max(60, round(self.rng.expovariate(1 / (mean_days * DAY)))))

    def walk(self, card: Card, funnel: Funnel, at: datetime, start: int, removed: str | None = None) -> datetime:
        """Append a path through ``funnel`` to ``card`` starting at process stage ``start`` (0-based)."""
        rng, stages = self.rng, funnel.process
        last = len(stages) - 1
        if removed is not None:
            card.rows.append((removed, funnel.category, at))
            at += self.pause(1.5)
        i = start
        card.rows.append((stages[i], funnel.category, at))
        while True:
            at += self.pause(1.0 + 0.6 * i)
            if rng.random() < 0.07 + 0.015 * i:  # lost
                card.rows.append((funnel.failure, funnel.category, at))
                if rng.random() < 0.1:  # reopened
                    at += self.pause(3)
                    card.rows.append((stages[i], funnel.category, at))
                    continue
                return at
            if i == last:
                if rng.random() < 0.85:
                    card.rows.append((funnel.success, funnel.category, at))
                    if rng.random() < 0.04:  # reopened after won
                        at += self.pause(5)
                        card.rows.append((stages[last], funnel.category, at))
                        continue
                return at
            if rng.random() < 0.05:  # still open here
                return at
            step = rng.random()
            if step < 0.05 and i > 0:
                i -= 1  # back
            elif step < 0.14 and i + 2 <= last:
                i += 2  # skip one
            else:
                i += 1
            card.rows.append((stages[i], funnel.category, at))


def deal_cards(seed: int, history_rows: int, funnels: list[Funnel] | None = None) -> Iterator[Card]:
    """Deals until ``history_rows`` stage-history rows are drawn (the last one's path is cut to fit)."""
    funnels = funnels or example_funnels()[0]
    rng = random.Random(seed)
    walker = _Walker(rng)
    written, card_id = 0, 0
    while written < history_rows:
        card_id += 1
        created = START + timedelta(seconds=rng.randrange(365 * int(DAY)))
        card = _card(rng, card_id, created)
        main = funnels[0] if rng.random() < 0.85 or len(funnels) == 1 else funnels[1]
        start = 0 if rng.random() < 0.9 else rng.randrange(1, min(4, len(main.process)))
        removed = REMOVED_STAGE if main.category == 0 and start == 0 and rng.random() < 0.03 else None
        at = walker.walk(card, main, created, start, removed)
        if main.category == 0 and len(funnels) > 1 and _semantic(main, card.stage) == "P" and rng.random() < 0.15:
            walker.walk(card, funnels[1], at + walker.pause(2), 0)  # moved to the other pipeline
        card.deleted = rng.random() < 0.01
        card.rows = card.rows[: history_rows - written]
        written += len(card.rows)
        yield card


def lead_cards(seed: int, count: int, funnel: Funnel | None = None) -> Iterator[Card]:
    """``count`` leads through the lead statuses (qualified, converted, junk, still new)."""
    funnel = funnel or example_funnels()[1]
    rng = random.Random(seed + 1)
    walker = _Walker(rng)
    for card_id in range(1, count + 1):
        created = START + timedelta(seconds=rng.randrange(365 * int(DAY)))
        card = _card(rng, card_id, created)
        walker.walk(card, funnel, created, 0 if rng.random() < 0.95 else len(funnel.process) - 1)
        card.deleted = rng.random() < 0.01
        yield card


def _card(rng: random.Random, card_id: int, created: datetime) -> Card:
    source = rng.choices([s[0] for s in SOURCES], weights=[s[3] for s in SOURCES])[0]
    usd = rng.random() < 0.05
    amount = Decimal(rng.randrange(1_000, 200_000_00)) / 100
    return Card(card_id, created, assigned=rng.randrange(1, len(MANAGERS) + 1), source=source, amount=amount,
                currency="USD" if usd else "RUB")


# ---------------------------------------------------------------- writing


def write_dictionaries(conn: Connection, deals: list[Funnel], leads: Funnel, *, address: str, tz: str = "+03:00") -> None:
    """Pipelines, their stages (and one deleted stage), lead statuses, sources, managers, the portal row."""
    now = datetime.now(timezone.utc)
    rows, status_id = [], 0
    for funnel in [*deals, leads]:
        ordered = [*funnel.process, funnel.success, funnel.failure]
        for sort, stage in enumerate(ordered, start=1):
            status_id += 1
            semantics = "S" if stage == funnel.success else "F" if stage == funnel.failure else None
            rows.append(dict(id=status_id, entity_id=funnel.entity_id, status_id=stage, name=stage.title(),
                             name_init=None, sort=sort * 10, semantics=semantics, category_id=funnel.category,
                             color=None, system=None, raw={}, deleted_at=None, synced_at=now))
    status_id += 1
    rows.append(dict(id=status_id, entity_id=deals[0].entity_id, status_id=REMOVED_STAGE, name="Подготовка документов",
                     name_init=None, sort=15, semantics=None, category_id=0, color=None, system=None, raw={},
                     deleted_at=now, synced_at=now))
    for code, name, sort, _ in SOURCES:
        status_id += 1
        rows.append(dict(id=status_id, entity_id="SOURCE", status_id=code, name=name, name_init=None, sort=sort,
                         semantics=None, category_id=None, color=None, system=None, raw={}, deleted_at=None, synced_at=now))
    conn.execute(t.crm_status.insert(), rows)
    conn.execute(t.crm_deal_category.insert(), [
        dict(id=f.category, name=f.name, sort=f.category * 100, is_default=f.category == 0, origin_id=f.key,
             originator_id="b24sync" if f.key else None, raw={}, deleted_at=None, synced_at=now) for f in deals])
    conn.execute(t.users.insert(), [
        dict(id=i, active=True, name=name, first_name=name.split()[0], last_name=name.split()[1], raw={},
             deleted_at=None, synced_at=now) for i, name in enumerate(MANAGERS, start=1)])
    conn.execute(t.b24sync_portal.insert(), [dict(id=1, address=address, timezone=tz, first_synced_at=now)])


def write_cards(
    conn: Connection,
    entity: str,
    cards: Iterator[Card],
    funnels: dict[int, Funnel],
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Card rows, then their history rows with IDs in time order across all cards (as the portal numbers
    them), in bulk chunks; returns the number of history rows."""
    deal = entity == "deal"
    table = t.crm_deal if deal else t.crm_lead
    history = t.crm_deal_stage_history if deal else t.crm_lead_status_history
    now = datetime.now(timezone.utc)
    chunk: list[dict[str, Any]] = []
    moves: list[tuple[datetime, int, int, str, int, str, bool, bool, tuple[float | None, str | None]]] = []
    for card in cards:
        if not card.rows:
            continue
        funnel = funnels[card.category]
        semantic = _semantic(funnel, card.stage)
        common = dict(id=card.id, title=f"{'Сделка' if deal else 'Лид'} №{card.id}", opportunity=card.amount,
                      currency_id=card.currency, assigned_by_id=card.assigned, source_id=card.source,
                      date_create=card.created, date_modify=card.rows[-1][2], raw={},
                      deleted_at=now if card.deleted else None, synced_at=now)
        if deal:
            chunk.append(dict(common, category_id=card.category, stage_id=card.stage, stage_semantic_id=semantic,
                              closed=semantic != "P"))
        else:
            chunk.append(dict(common, status_id=card.stage, status_semantic_id=semantic))
        previous = None
        last_here = {category: number for number, (_, category, _) in enumerate(card.rows)}
        for number, (stage, category, at) in enumerate(card.rows):
            sem = _semantic(funnels[category], stage)
            type_id = 1 if number == 0 else 5 if category != previous else 3 if sem != "P" else 2
            previous = category
            hidden = card.deleted or (deal and category != card.category)  # the portal no longer lists these rows
            # a card's rows are in time order, so its next row (by ID) is the next one here: as the sync keeps it
            stay = (card.rows[number + 1][2] - at).total_seconds() if number + 1 < len(card.rows) else None
            visited = None
            if last_here[category] == number:  # the card's last row in this pipeline names the stages it went through
                visited = ",".join(["", *sorted({s for s, c, _ in card.rows if c == category}), ""])
            moves.append((at, card.id, type_id, stage, category, sem, hidden, number == 0, (stay, visited)))
        if len(chunk) >= WRITE_CHUNK:
            conn.execute(table.insert(), chunk)
            chunk.clear()
    if chunk:
        conn.execute(table.insert(), chunk)
        chunk.clear()
    moves.sort(key=lambda m: (m[0], m[1], not m[7]))
    for history_id, (at, card_id, type_id, stage, category, sem, hidden, _, (stay, visited)) in enumerate(moves, start=1):
        row = dict(id=history_id, type_id=type_id, date_create=at, raw={}, first_seen_at=now,
                   deleted_at=now if hidden else None, stay_seconds=stay, visited=visited)
        if deal:
            row.update(deal_id=card_id, category_id=category, stage_semantic_id=sem, stage_id=stage)
        else:
            row.update(lead_id=card_id, status_semantic_id=sem, status_id=stage)
        chunk.append(row)
        if len(chunk) >= WRITE_CHUNK:
            conn.execute(history.insert(), chunk)
            if progress is not None:
                progress(len(chunk))
            chunk.clear()
    if chunk:
        conn.execute(history.insert(), chunk)
        if progress is not None:
            progress(len(chunk))
    return len(moves)
