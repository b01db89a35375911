"""What a report is about, read from the mirror: the entity's tables, the pipeline, its stages, the portal,
and the manager and source filters — each unknown one refused with what does exist.

Only small dictionaries are read here (pipelines, stages, users, sources); never history rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from connector.catalog import LEAD_STATUS, stage_entity_id
from jobs.errors import UserError
from jobs.report.model import FAILURE, PROCESS, REMOVED, SUCCESS, Pipeline, Stage
from jobs.report.modes import SEMANTIC_LETTERS
from mappings import db, tables as t

SOURCE_DICTIONARY = "SOURCE"
DEFAULT_PIPELINE_NAMES = ("default",)
LIST_AT_MOST = 12  # how many existing names an error message lists
BEFORE_STAYS = ("0001", "0002")  # revisions whose history rows have no stays and whose SQLite times have two formats


class ReportError(UserError):
    """A report asked for something the mirror does not hold (a pipeline, stage, manager, source), or an empty mirror."""


@dataclass(frozen=True)
class Entity:
    """Where one kind of card lives in the mirror: its table, its history table and their columns."""

    name: str
    cards: sa.Table
    history: sa.Table
    owner: str  # history column naming the card
    stage: str  # stage column, in the card table and in the history table
    semantic: str  # P/S/F column, likewise
    category: str | None  # pipeline column (deals), likewise
    path: str  # the card's page on the portal: /crm/{path}/details/ID/

    def card(self, name: str) -> sa.ColumnElement[Any]:
        """A column of the card table."""
        return self.cards.c[name]

    def hist(self, name: str) -> sa.ColumnElement[Any]:
        """A column of the history table."""
        return self.history.c[name]


ENTITIES: dict[str, Entity] = {
    "deal": Entity("deal", t.crm_deal, t.crm_deal_stage_history, "deal_id", "stage_id", "stage_semantic_id",
                   "category_id", "deal"),
    "lead": Entity("lead", t.crm_lead, t.crm_lead_status_history, "lead_id", "status_id", "status_semantic_id",
                   None, "lead"),
}


def entity_of(name: str) -> Entity:
    """The entity by name (``deal`` or ``lead``)."""
    try:
        return ENTITIES[name]
    except KeyError:
        raise ReportError(f"unknown entity {name!r}: reports cover {', '.join(ENTITIES)}") from None


def _listing(items: Sequence[str]) -> str:
    shown = list(items[:LIST_AT_MOST])
    more = len(items) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "") if shown else "none"


def check_mirror(conn: Connection) -> None:
    """Refuse a database that holds no mirror (never synced), or one not upgraded yet, with one clear line."""
    inspector = sa.inspect(conn)
    missing = [name for name in ("crm_status", "crm_deal", "crm_lead") if not inspector.has_table(name)]
    if missing:
        raise ReportError(f"the database holds no b24sync mirror (no table {missing[0]}): run `b24sync sync` first")
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision in BEFORE_STAYS:
        raise ReportError(f"the mirror is at revision {revision}, which keeps no stays on its history rows: "
                          "run `b24sync db upgrade`")


@dataclass(frozen=True)
class Portal:
    """The portal the mirror belongs to: its address (for card links) and its timezone (for dates)."""

    address: str | None
    timezone: str | None

    def card_url(self, entity: Entity, card_id: int) -> str | None:
        """``https://PORTAL/crm/deal/details/ID/`` (None when the mirror does not know its portal)."""
        if not self.address:
            return None
        base = self.address if "://" in self.address else f"https://{self.address}"
        return f"{base.rstrip('/')}/crm/{entity.path}/details/{card_id}/"


def portal_of(conn: Connection) -> Portal:
    """The mirror's portal row (address, timezone); empty when the mirror has none yet."""
    if not sa.inspect(conn).has_table(t.b24sync_portal.name):
        return Portal(None, None)
    row = conn.execute(sa.select(t.b24sync_portal.c.address, t.b24sync_portal.c.timezone)
                       .order_by(t.b24sync_portal.c.id).limit(1)).first()
    return Portal(row.address, row.timezone) if row else Portal(None, None)


# ---------------------------------------------------------------- pipelines


def _pipelines(conn: Connection) -> list[Any]:
    c = t.crm_deal_category.c
    return list(conn.execute(sa.select(c.id, c.name, c.origin_id, c.sort, c.deleted_at).order_by(c.sort, c.id)))


def _pipeline_text(row: Any) -> str:
    key = f", key {row.origin_id}" if row.origin_id else ""
    gone = ", deleted" if row.deleted_at is not None else ""
    return f'{row.id} "{row.name}"{key}{gone}'


def resolve_pipeline(conn: Connection, entity: Entity, spec: str | int | None, *, default_keys: Sequence[str] = ()) -> Pipeline:
    """The pipeline named by ``spec``: an ID (``0`` is the default pipeline), a name, or a config key.

    A key is the one b24sync records in the pipeline's originId (``crm_deal_category.origin_id``);
    the default pipeline stores none, so ``default`` and ``default_keys`` (the config's key of its
    default pipeline) name pipeline 0. Leads have one funnel: ``spec`` must be empty for them.
    """
    if entity.category is None:
        if spec not in (None, ""):
            raise ReportError(f"--pipeline is for deals: leads have one funnel (the lead statuses), got {spec!r}")
        return Pipeline(0, "Leads", None)
    rows = _pipelines(conn)
    by_id = {int(row.id): row for row in rows}

    def found(row_id: int) -> Pipeline:
        row = by_id.get(row_id)
        if row is None:
            return Pipeline(row_id, "default pipeline" if row_id == 0 else f"pipeline {row_id}", None)
        return Pipeline(int(row.id), row.name or f"pipeline {row.id}", row.origin_id or None)

    if spec is None or spec == "":
        return found(0)
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        wanted = int(text)
        if wanted in by_id or (wanted == 0 and _has_stages(conn, entity, 0)):
            return found(wanted)
    else:
        folded = text.casefold()
        if folded in (k.casefold() for k in (*DEFAULT_PIPELINE_NAMES, *default_keys)):
            return found(0)
        for matches in (
            [r for r in rows if r.deleted_at is None and (r.name or "").casefold() == folded],
            [r for r in rows if r.deleted_at is None and (r.origin_id or "").casefold() == folded],
            [r for r in rows if (r.name or "").casefold() == folded or (r.origin_id or "").casefold() == folded],
        ):
            if len(matches) == 1:
                return found(int(matches[0].id))
            if len(matches) > 1:
                raise ReportError(f"pipeline {text!r} is ambiguous: {_listing([_pipeline_text(r) for r in matches])}; "
                                  "name it by ID")
    if not rows and not _has_stages(conn, entity, 0):
        raise empty_mirror(entity)
    raise ReportError(f"no pipeline {text!r} in the mirror; pipelines: {_listing([_pipeline_text(r) for r in rows])}")


def empty_mirror(entity: Entity) -> ReportError:
    """The error for a mirror without the entity's stages (never synced)."""
    what = "deal pipelines" if entity.name == "deal" else "lead statuses"
    return ReportError(f"the mirror holds no {what}: run `b24sync sync` first")


# ---------------------------------------------------------------- stages


def dictionary_of(entity: Entity, pipeline_id: int) -> str:
    """The crm.status ENTITY_ID of a funnel's stages (``STATUS``, ``DEAL_STAGE``, ``DEAL_STAGE_3``)."""
    return LEAD_STATUS if entity.category is None else stage_entity_id(pipeline_id)


def _has_stages(conn: Connection, entity: Entity, pipeline_id: int) -> bool:
    s = t.crm_status.c
    query = sa.select(s.id).where(s.entity_id == dictionary_of(entity, pipeline_id), s.deleted_at.is_(None)).limit(1)
    return conn.execute(query).first() is not None


def semantics_of(value: str | None) -> str:
    """crm_status.semantics (P/S/F, empty for in-progress stages, or a word) as process/success/failure."""
    text = (value or "P").strip().upper()[:1] or "P"
    return SEMANTIC_LETTERS.get(text, PROCESS)


@dataclass(frozen=True)
class Stages:
    """A funnel's current stages in order, and the names of stages that no longer exist (kept rows)."""

    current: list[Stage]
    former_names: dict[str, tuple[str, int | None, str | None]]  # STATUS_ID -> (name, sort, color) of deleted rows

    def removed(self, stage_id: str) -> Stage:
        """A stage seen in history that is not in the dictionary any more, named as it was (or by its ID)."""
        name, sort, color = self.former_names.get(stage_id, (stage_id, None, None))
        return Stage(stage_id, name, REMOVED, 0, sort, color)

    def by_id(self) -> dict[str, Stage]:
        """STATUS_ID -> stage, current stages only."""
        return {stage.id: stage for stage in self.current}


def load_stages(conn: Connection, entity: Entity, pipeline: Pipeline) -> Stages:
    """The funnel's stages by ``sort``: in progress numbered 1..n, success n + 1, failures apart."""
    s = t.crm_status.c
    rows = list(conn.execute(
        sa.select(s.status_id, s.name, s.sort, s.color, s.semantics, s.deleted_at)
        .where(s.entity_id == dictionary_of(entity, pipeline.id))
        .order_by(s.sort, s.id)
    ))
    live = [r for r in rows if r.deleted_at is None]
    if not live:
        if entity.category is None or pipeline.id == 0:
            raise empty_mirror(entity)
        raise ReportError(f'pipeline {pipeline.id} "{pipeline.name}" has no stages in the mirror: run `b24sync sync`')
    current: list[Stage] = []
    process = [r for r in live if semantics_of(r.semantics) == PROCESS]
    for index, row in enumerate(process, start=1):
        current.append(Stage(row.status_id, row.name or row.status_id, PROCESS, index, row.sort, row.color))
    for row in live:
        semantics = semantics_of(row.semantics)
        if semantics == SUCCESS:
            current.append(Stage(row.status_id, row.name or row.status_id, SUCCESS, len(process) + 1, row.sort, row.color))
    for row in live:
        if semantics_of(row.semantics) == FAILURE:
            current.append(Stage(row.status_id, row.name or row.status_id, FAILURE, 0, row.sort, row.color))
    live_ids = {r.status_id for r in live}
    former = {r.status_id: (r.name or r.status_id, r.sort, r.color) for r in rows if r.status_id not in live_ids}
    return Stages(current, former)


def resolve_stage(stages: Stages, removed: Sequence[str], stage_id: str) -> Stage:
    """The stage named by its STATUS_ID (a current stage, or a removed one seen in history)."""
    wanted = stage_id.strip()
    for stage in stages.current:
        if stage.id == wanted:
            return stage
    if wanted in removed:
        return stages.removed(wanted)
    for stage in stages.current:  # STATUS_IDs are upper case; be kind to a lower-case one
        if stage.id.casefold() == wanted.casefold():
            return stage
    names = [f"{s.id} ({s.name})" for s in stages.current] + [f"{r} (removed)" for r in removed]
    raise ReportError(f"no stage {wanted!r} in this funnel; stages: {_listing(names)}")


# ---------------------------------------------------------------- managers and sources


def resolve_manager(conn: Connection, entity: Entity, spec: str | int | None) -> int | None:
    """The user ID named by ``spec`` (an ID, or a name as in ``users.name``, case-insensitive)."""
    if spec is None or spec == "":
        return None
    u = t.users.c
    rows = list(conn.execute(sa.select(u.id, u.name, u.first_name, u.last_name).order_by(u.id)))
    text = str(spec).strip()

    def full(row: Any) -> str:
        return (row.name or " ".join(p for p in (row.first_name, row.last_name) if p) or f"user {row.id}").strip()

    if text.isdigit():
        wanted = int(text)
        if any(int(r.id) == wanted for r in rows):
            return wanted
        assigned = conn.execute(sa.select(entity.card("assigned_by_id")).where(entity.card("assigned_by_id") == wanted)
                                .limit(1)).first()
        if assigned is not None:
            return wanted
    else:
        folded = " ".join(text.casefold().split())
        exact = [r for r in rows if " ".join(full(r).casefold().split()) == folded
                 or " ".join(f"{r.last_name or ''} {r.first_name or ''}".casefold().split()) == folded]
        partial = exact or [r for r in rows if folded in full(r).casefold()]
        if len(partial) == 1:
            return int(partial[0].id)
        if len(partial) > 1:
            raise ReportError(f"manager {text!r} is ambiguous: {_listing([f'{r.id} {full(r)}' for r in partial])}; "
                              "name them by ID")
    raise ReportError(f"no manager {text!r} in the mirror; users: {_listing([f'{r.id} {full(r)}' for r in rows])}")


def source_names(conn: Connection) -> dict[str, tuple[str, int]]:
    """SOURCE_ID -> (label, sort) from the SOURCE dictionary in crm_status."""
    s = t.crm_status.c
    rows = conn.execute(sa.select(s.status_id, s.name, s.sort).where(s.entity_id == SOURCE_DICTIONARY)
                        .order_by(s.sort, s.id))
    return {r.status_id: (r.name or r.status_id, r.sort if r.sort is not None else 0) for r in rows}


def resolve_source(conn: Connection, entity: Entity, spec: str | None) -> str | None:
    """The SOURCE_ID named by ``spec`` (as in the SOURCE dictionary, or as found on cards)."""
    if spec is None or spec == "":
        return None
    text = str(spec).strip()
    known = source_names(conn)
    if text in known:
        return text
    for source_id, (name, _) in known.items():
        if source_id.casefold() == text.casefold() or name.casefold() == text.casefold():
            return source_id
    on_cards = conn.execute(sa.select(entity.card("source_id")).where(entity.card("source_id") == text).limit(1)).first()
    if on_cards is not None:
        return text
    raise ReportError(f"no source {text!r} in the mirror; sources: {_listing([f'{k} ({v[0]})' for k, v in known.items()])}")


def user_names(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    """User ID -> name (``users.name``, else first and last name) for the given IDs."""
    if not ids:
        return {}
    u = t.users.c
    names: dict[int, str] = {}
    for part in db.chunks(ids):
        for row in conn.execute(sa.select(u.id, u.name, u.first_name, u.last_name).where(u.id.in_(part))):
            text = row.name or " ".join(p for p in (row.first_name, row.last_name) if p)
            names[int(row.id)] = text.strip() or f"user {row.id}"
    return names
