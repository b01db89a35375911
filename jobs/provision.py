"""Pipelines as code: desired funnels (config) vs the portal's actual ones -> a Plan -> apply; export to TOML.

A ``Plan`` is plain data (Terraform style): a list of ``Change`` records plus a fingerprint of the
portal state it was made from. ``apply`` runs a plan in batches, ordering the writes so every
intermediate state obeys the portal's rules (in progress < success < failure by SORT).

Identity on the portal:

- a stage or lead status is its STATUS_ID (the ``C{N}:`` prefix of pipeline N is added here);
- the default pipeline is id 0 (``default = true``);
- any other pipeline records its key in the pipeline's ``originId`` (with ``originatorId`` =
  ``b24sync``), written on create and on every update. A pipeline made by hand has no key yet:
  it is known as ``pipeline_{id}`` and matched by that key plus its name, or adopted by name, or
  pinned with ``id``. ``originatorId = b24sync:new`` marks a pipeline whose creation has not
  finished (its stock stages are still to be replaced); the next plan finishes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from connector.catalog import DEAL_STAGE, stage_prefix
from jobs.errors import UserError
from connector.catalog import stage_entity_id as stage_entity
from mappings.config import (
    DEAL_KEY_MAX,
    Config,
    PipelineConfig,
    StageConfig,
    pipeline_sorts,
    stage_sorts,
)

ACTIONS = ("create", "update", "reorder", "move_records", "delete", "noop")
KINDS = ("pipeline", "stage", "lead_status")

ORIGINATOR = "b24sync"
ORIGINATOR_NEW = "b24sync:new"  # a pipeline whose creation is not finished yet
LEAD_ENTITY = "STATUS"
DEAL_ENTITY = DEAL_STAGE
DEAL_TYPE_ID = 2
SEMANTICS_CODE = {"process": "", "success": "S", "failure": "F"}
SEMANTICS_NAME = {None: "process", "": "process", "S": "success", "F": "failure"}
# Stages the portal gives every new deal pipeline and never lets anyone delete (SYSTEM=Y):
# the default pipeline's template (docs §7.2, live observation of C8:NEW..C8:APOLOGY).
NEW_PIPELINE_SYSTEM_STAGES = {"NEW": "process", "WON": "success", "LOSE": "failure"}
PLAN_FORMAT = "b24sync-plan"
PLAN_VERSION = 2  # 2: the plan carries the record counts it relies on (``counts``)


class ProvisionError(UserError):
    """Provisioning cannot go on; ``problems`` says why (each line names the stage or pipeline)."""

    def __init__(self, problems: Sequence[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class StalePlan(ProvisionError):
    """A saved plan was made from a portal state that no longer holds."""


class Gateway(Protocol):
    """What provisioning needs from a Bitrix24 client."""

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """One REST call; returns ``result``."""
        ...

    def batch(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Run calls in order (packed in batches of 50, halting on the first error); results in order."""
        ...

    def count(self, method: str, filter: dict[str, Any]) -> int:
        """``total`` of a list method for a filter."""
        ...

    def ids(self, method: str, filter: dict[str, Any]) -> list[int]:
        """IDs of every record of a list method matching a filter."""
        ...


# ---------------------------------------------------------------- plan data


@dataclass
class Change:
    """One planned change. ``key`` is ``pipeline`` / ``pipeline/STAGE`` / ``STATUS`` by kind.

    Keys are unique per kind. An undeclared portal pipeline whose key (recorded, or derived
    ``pipeline_{id}``) is already used by a declared pipeline is deleted under ``{key}#id{id}``.
    """

    action: str
    kind: str
    key: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str = ""

    @property
    def funnel(self) -> str:
        """The funnel a stage change belongs to: ``leads`` or the pipeline key."""
        if self.kind == "lead_status":
            return "leads"
        return self.key.split("/", 1)[0]

    @property
    def code(self) -> str:
        """The stage key without the pipeline part."""
        return self.key.split("/", 1)[1] if self.kind == "stage" else self.key


@dataclass
class Plan:
    """Changes that take the portal from the state with ``fingerprint`` to the config's state.

    ``counts`` lists the record counts the plan relies on: one entry per stage, lead status or pipeline
    it deletes, ``{"kind", "key", "method", "filter", "records"}``. The fingerprint covers them too, and
    ``apply`` counts again before its first write, so records that arrived since are never stranded.
    """

    changes: list[Change] = field(default_factory=list)
    fingerprint: str = ""
    errors: list[str] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def actionable(self) -> list[Change]:
        """Every change except no-ops."""
        return [c for c in self.changes if c.action != "noop"]

    @property
    def has_changes(self) -> bool:
        """True when applying would write something."""
        return bool(self.actionable)

    def deletions(self) -> list[Change]:
        """Deletes that need ``--allow-delete`` (not the stock stages of a pipeline b24sync created)."""
        return [c for c in self.changes if c.action == "delete" and not (c.before or {}).get("template")]

    def summary(self) -> dict[str, int]:
        """Number of changes per action (no-ops excluded)."""
        counts = {a: 0 for a in ACTIONS if a != "noop"}
        for change in self.actionable:
            counts[change.action] += 1
        return counts

    def to_json(self) -> str:
        """The plan as a JSON document (``--out PLAN``)."""
        data = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "fingerprint": self.fingerprint,
            "summary": self.summary(),
            "errors": self.errors,
            "counts": self.counts,
            "changes": [asdict(c) for c in self.changes],
        }
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """Read a plan written by ``to_json``; ProvisionError when it is not one."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProvisionError(f"not a plan file: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise ProvisionError("not a b24sync plan file")
        if data.get("version") != PLAN_VERSION:
            raise ProvisionError(f"plan file version {data.get('version')} is not supported (expected {PLAN_VERSION})")
        changes = []
        for raw in data.get("changes", []):
            change = Change(**{k: raw.get(k) for k in ("action", "kind", "key", "before", "after", "reason")})
            if change.action not in ACTIONS or change.kind not in KINDS:
                raise ProvisionError(f"plan file has an unknown change {change.action}/{change.kind}")
            changes.append(change)
        counts = data.get("counts", [])
        if not isinstance(counts, list) or not all(isinstance(c, dict) and {"kind", "key", "method", "filter", "records"} <= set(c) for c in counts):
            raise ProvisionError("plan file has malformed record counts")
        return cls(changes, str(data.get("fingerprint", "")), list(data.get("errors", [])), counts)

    def relies_on(self, change: Change, method: str, filter: dict[str, Any], records: int) -> None:
        """Note that ``change`` (a delete) is safe only while ``method`` + ``filter`` counts ``records``."""
        self.counts.append({"kind": change.kind, "key": change.key, "method": method, "filter": filter, "records": records})


def read_plan(path: str) -> Plan:
    """A plan saved by ``plan --out``; ProvisionError naming the file when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as fh:
            return Plan.from_json(fh.read())
    except ProvisionError as exc:
        raise ProvisionError(f"{path}: {exc}") from None


# ---------------------------------------------------------------- the portal's state


@dataclass
class Snapshot:
    """What provisioning reads from a portal: deal pipelines and the rows of every stage dictionary."""

    categories: list[dict[str, Any]]
    statuses: dict[str, list[dict[str, Any]]]  # ENTITY_ID -> rows sorted by SORT

    def rows(self, entity_id: str) -> list[dict[str, Any]]:
        """Rows of one dictionary in portal order."""
        return self.statuses.get(entity_id, [])

    def fingerprint(self) -> str:
        """A hash of everything a plan depends on (names, sorts, colours, semantics, ids, keys)."""
        cats = sorted(
            ([c.get("id"), c.get("name"), c.get("sort"), c.get("originId") or "", c.get("originatorId") or ""]
             for c in self.categories),
            key=lambda c: int(c[0]),
        )
        rows = sorted(
            ([r.get("ID"), r.get("ENTITY_ID"), r.get("STATUS_ID"), r.get("NAME"), str(r.get("SORT")),
              (r.get("COLOR") or "").upper(), r.get("SEMANTICS") or "", r.get("SYSTEM")]
             for rows in self.statuses.values() for r in rows),
            key=lambda r: (str(r[1]), int(r[0])),
        )
        text = json.dumps({"categories": cats, "statuses": rows}, ensure_ascii=False, sort_keys=True)
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_fingerprint(snapshot: Snapshot, counts: list[dict[str, Any]]) -> str:
    """A hash of the portal state a plan is made from: the snapshot and the record counts it relies on."""
    relied = sorted([c["kind"], c["key"], c["method"], c["filter"], int(c["records"])] for c in counts)
    text = json.dumps({"snapshot": snapshot.fingerprint(), "counts": relied}, ensure_ascii=False, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_snapshot(api: Gateway) -> Snapshot:
    """Read deal pipelines (crm.category.list) and lead statuses and stages (crm.status.list, one
    batch of one call per dictionary)."""
    categories: list[dict[str, Any]] = []
    seen: set[int] = set()
    while True:  # 50 pipelines a page; stop at a short page or one that brings nothing new
        result = api.call("crm.category.list", {"entityTypeId": DEAL_TYPE_ID, "start": len(categories)})
        page = [dict(c) for c in ((result or {}).get("categories") or []) if int(c["id"]) not in seen]
        seen.update(int(c["id"]) for c in page)
        categories += page
        if len(page) < 50:
            break
    entities = [LEAD_ENTITY] + [stage_entity(int(c["id"])) for c in categories]
    replies = api.batch([_status_list(e) for e in entities])
    statuses = {entity: _status_rows(rows, entity) for entity, rows in zip(entities, replies)}
    categories.sort(key=lambda c: (int(c.get("sort") or 0), int(c["id"])))
    return Snapshot(categories, statuses)


def _status_list(entity: str) -> tuple[str, dict[str, Any]]:
    return "crm.status.list", {"order": {"SORT": "ASC"}, "filter": {"ENTITY_ID": entity}}


def _status_rows(result: Any, entity: str) -> list[dict[str, Any]]:
    """crm.status.list rows of one dictionary sorted by SORT, then ID (a keyed result is accepted too)."""
    rows = list(result.values()) if isinstance(result, dict) else list(result or [])
    rows = [r for r in rows if r.get("ENTITY_ID") == entity]
    return sorted(rows, key=lambda r: (int(r.get("SORT") or 0), int(r.get("ID") or 0)))


class ClientGateway:
    """The Gateway over ``connector.client.Bitrix24Client``: writes go in halting batches of 50."""

    def __init__(self, client: Any):
        self.client = client

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """One call; its ``result``."""
        return self.client.call(method, params).result

    def batch(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Calls in order, halting at the first failure (raised as BatchCommandError)."""
        return list(self.client.batch(list(calls), halt=True))

    def count(self, method: str, filter: dict[str, Any]) -> int:
        """``total`` of a list method (one counted page of IDs)."""
        reply = self.client.call(method, {"filter": filter, "select": ["ID"], "start": 0})
        return int(reply.total or 0)

    def ids(self, method: str, filter: dict[str, Any]) -> list[int]:
        """IDs of every matching record through the client's keyset export."""
        return [int(row["ID"]) for row in self.client.list_all(method, filter, ["ID"])]


def as_gateway(api: Any) -> Gateway:
    """A Gateway as is; a ``Bitrix24Client`` wrapped in ``ClientGateway``."""
    return ClientGateway(api) if hasattr(api, "list_all") else api


# ---------------------------------------------------------------- desired state


@dataclass
class Stage:
    """A stage as provisioning compares it (desired or actual)."""

    key: str
    name: str
    sort: int
    semantics: str
    color: str | None = None
    id: int | None = None  # crm.status numeric ID (actual rows only)
    system: bool = False

    def fields(self) -> dict[str, Any]:
        """The comparable fields as a plain dict (plan before/after)."""
        out: dict[str, Any] = {"name": self.name, "sort": self.sort, "semantics": self.semantics}
        if self.color is not None:
            out["color"] = self.color
        return out


@dataclass
class Funnel:
    """One ordered set of stages: the lead statuses or one pipeline's stages."""

    kind: str  # "lead_status" or "stage"
    name: str  # "leads" or the pipeline key
    stages: list[Stage]
    moves: dict[str, str]

    def path(self, code: str) -> str:
        """The change key of a stage of this funnel."""
        return code if self.kind == "lead_status" else f"{self.name}/{code}"


def desired_funnel(kind: str, name: str, stages: list[StageConfig], moves: dict[str, str]) -> Funnel:
    """The declared stages with their derived sort values."""
    sorts = stage_sorts(stages)
    return Funnel(kind, name, [Stage(s.key, s.name, n, s.semantics, s.color) for s, n in zip(stages, sorts)], dict(moves))


def actual_stages(rows: Iterable[dict[str, Any]], prefix: str) -> list[Stage]:
    """Portal rows as stages, keyed without the pipeline prefix."""
    out = []
    for row in rows:
        code = row["STATUS_ID"]
        if prefix and code.startswith(prefix):
            code = code[len(prefix):]
        out.append(
            Stage(
                code,
                row.get("NAME") or "",
                int(row.get("SORT") or 0),
                SEMANTICS_NAME.get(row.get("SEMANTICS"), "process"),
                (row.get("COLOR") or None) and str(row["COLOR"]).upper(),
                int(row["ID"]),
                row.get("SYSTEM") == "Y",
            )
        )
    return out


# ---------------------------------------------------------------- pipeline identity


def portal_key(category: dict[str, Any]) -> str:
    """The key a portal pipeline is known by: its recorded key, else ``default`` / ``pipeline_{id}``."""
    if category.get("originatorId") in (ORIGINATOR, ORIGINATOR_NEW) and category.get("originId"):
        return str(category["originId"])
    return "default" if int(category["id"]) == 0 else f"pipeline_{category['id']}"


def is_stamped(category: dict[str, Any]) -> bool:
    """True when the pipeline carries a key written by b24sync."""
    return category.get("originatorId") in (ORIGINATOR, ORIGINATOR_NEW) and bool(category.get("originId"))


def match_pipelines(
    pipelines: list[PipelineConfig], categories: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
    """Pair each declared pipeline with a portal pipeline (or None: to create); also return problems.

    Order of evidence: ``default = true`` -> id 0; an ``id`` pin; the key recorded on the portal;
    the derived key ``pipeline_{id}`` with the same name (a file exported from this portal);
    finally the same name among pipelines without a recorded key (adoption).
    """
    by_id = {int(c["id"]): c for c in categories}
    claimed: set[int] = set()
    result: dict[str, dict[str, Any] | None] = {}
    problems: list[str] = []

    def claim(p: PipelineConfig, c: dict[str, Any]) -> None:
        """Pair a declared pipeline with a portal pipeline that nothing else may take."""
        result[p.key] = c
        claimed.add(int(c["id"]))

    for p in pipelines:
        if not p.default:
            continue
        if 0 in by_id:
            claim(p, by_id[0])
        else:
            problems.append(f"pipeline {p.key!r}: the portal has no default pipeline (id 0)")
            result[p.key] = None
    for p in pipelines:  # an explicit pin wins, even over a key recorded earlier (that is how a key is renamed)
        if p.default or p.id is None:
            continue
        category = by_id.get(p.id)
        if category is None or int(category["id"]) in claimed:
            problems.append(f"pipeline {p.key!r}: pinned id {p.id} does not exist on the portal")
            result[p.key] = None
        else:
            claim(p, category)
    pending = [p for p in pipelines if p.key not in result]
    for p in pending:
        stamped = [c for c in categories if is_stamped(c) and c["originId"] == p.key and int(c["id"]) not in claimed]
        if stamped:
            claim(p, stamped[0])
    pending = [p for p in pending if p.key not in result]
    for p in pending:  # an export of this very portal: derived key and same name
        for c in categories:
            if int(c["id"]) not in claimed and not is_stamped(c) and portal_key(c) == p.key and c["name"] == p.name:
                claim(p, c)
                break
    for p in pending:
        if p.key in result:
            continue
        same_name = [
            c for c in categories if int(c["id"]) not in claimed and int(c["id"]) != 0 and not is_stamped(c) and c["name"] == p.name
        ]
        if len(same_name) == 1:
            claim(p, same_name[0])
        else:
            result[p.key] = None
    return result, problems


# ---------------------------------------------------------------- planning


def plan(config: Config, api: Gateway | Any) -> Plan:
    """Read the portal and compare it with the config; counts records only where a delete is planned.
    ``api`` is a Gateway or a ``Bitrix24Client``."""
    api = as_gateway(api)
    snapshot = read_snapshot(api)
    needed = deletion_candidates(config, snapshot)
    counts = count_records(api, needed)
    return diff(config, snapshot, counts)


def deletion_candidates(config: Config, snapshot: Snapshot) -> list[tuple[str, str | int]]:
    """(what, id) of every portal object the config would delete: ("lead", STATUS_ID), ("deal", STAGE_ID),
    ("category", id). Their record counts decide whether deleting is safe."""
    out: list[tuple[str, str | int]] = []
    if config.leads is not None:
        declared = {s.key for s in config.leads.statuses}
        out += [("lead", r["STATUS_ID"]) for r in snapshot.rows(LEAD_ENTITY) if r["STATUS_ID"] not in declared]
    if config.pipelines is not None:
        matched, _ = match_pipelines(config.pipelines, snapshot.categories)
        used = {int(c["id"]) for c in matched.values() if c is not None}
        for p in config.pipelines:
            category = matched.get(p.key)
            if category is None:
                continue
            cid = int(category["id"])
            prefix = stage_prefix(cid)
            declared = {prefix + s.key for s in p.stages}
            out += [("deal", r["STATUS_ID"]) for r in snapshot.rows(stage_entity(cid)) if r["STATUS_ID"] not in declared]
        out += [("category", int(c["id"])) for c in snapshot.categories if int(c["id"]) not in used]
    return out


def count_records(api: Gateway, needed: list[tuple[str, str | int]]) -> dict[tuple[str, str | int], int]:
    """Number of leads or deals held by each stage / pipeline in ``needed``: one batch of first pages;
    a full page (50) is followed by a counted call for the exact total."""
    queries = []
    for what, ident in needed:
        if what == "lead":
            queries.append(("crm.lead.list", {"STATUS_ID": ident}))
        elif what == "deal":
            queries.append(("crm.deal.list", {"STAGE_ID": ident}))
        else:
            queries.append(("crm.deal.list", {"CATEGORY_ID": ident}))
    return dict(zip(needed, count_queries(api, queries)))


def count_queries(api: Gateway, queries: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """Records matching each (list method, filter): one batch of first pages; a full page (50) is
    followed by a counted call for the exact total."""
    return [len(rows) if len(rows) < 50 else api.count(method, filt)
            for (method, filt), rows in zip(queries, first_pages(api, queries))]


def first_pages(api: Gateway, queries: list[tuple[str, dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The first page (up to 50 IDs) of each list query, all in one batch."""
    if not queries:
        return []
    pages = api.batch([(m, {"filter": f, "select": ["ID"], "start": 0}) for m, f in queries])
    return [list(rows.values()) if isinstance(rows, dict) else list(rows or []) for rows in pages]


def diff(config: Config, snapshot: Snapshot, counts: dict[tuple[str, str | int], int] | None = None) -> Plan:
    """The plan that takes ``snapshot`` to the state ``config`` declares (pure: no API calls)."""
    counts = counts or {}
    result = Plan()
    _diff_all(result, config, snapshot, counts)
    result.fingerprint = plan_fingerprint(snapshot, result.counts)
    return result


def _diff_all(result: Plan, config: Config, snapshot: Snapshot, counts: dict[tuple[str, str | int], int]) -> None:
    if config.leads is not None:
        desired = desired_funnel("lead_status", "leads", config.leads.statuses, config.leads.move_records)
        actual = actual_stages(snapshot.rows(LEAD_ENTITY), "")
        first = len(result.changes)
        _diff_funnel(result, desired, actual, lambda code: counts.get(("lead", code), 0), "leads", new=False)
        for change in result.changes[first:]:
            if change.action == "delete":
                result.relies_on(change, "crm.lead.list", {"STATUS_ID": change.code}, change.before["records"])
    if config.pipelines is None:
        return
    matched, problems = match_pipelines(config.pipelines, snapshot.categories)
    result.errors += problems
    sorts = pipeline_sorts(config.pipelines)
    used: set[int] = set()
    stage_changes: list[Change] = []
    next_id = max([int(c["id"]) for c in snapshot.categories] + [0]) + 1
    for p, sort in zip(config.pipelines, sorts):
        category = matched.get(p.key)
        after = {"name": p.name, "sort": sort, "key": p.key}
        desired = desired_funnel("stage", p.key, p.stages, p.move_records)
        if category is None:
            if p.default:
                continue
            result.changes.append(Change("create", "pipeline", p.key, None, after,
                                         "new pipeline; the stock stages the portal adds to it are replaced by the declared ones"))
            _check_new_pipeline(result, p, desired, next_id)
            stage_changes += [Change("create", "stage", desired.path(s.key), None, s.fields(), "stage of a new pipeline")
                              for s in desired.stages]
            next_id += 1
            continue
        cid = int(category["id"])
        used.add(cid)
        # before.key is the key recorded on the portal: None for a pipeline made by hand
        recorded = portal_key(category) if is_stamped(category) else None
        before = {"name": category.get("name"), "sort": int(category.get("sort") or 0), "key": recorded, "id": cid}
        pending = category.get("originatorId") == ORIGINATOR_NEW
        if pending:
            before["pending"] = True
        if cid == 0:
            before["key"] = after["key"] = p.key  # the default pipeline carries no recorded key
        changed = [k for k in ("name", "sort") if before[k] != after[k]]
        # apply records the key with any write; with nothing else to write, a pipeline matched by its
        # derived key pipeline_{id} stays as it is (an export of this portal plans as no changes)
        if before["key"] != after["key"] and (changed or portal_key(category) != p.key):
            changed.append("key")
        if changed or pending:
            action = "reorder" if changed == ["sort"] and not pending else "update"
            reason = "finish creating the pipeline (an earlier apply was interrupted)" if pending else ""
            if "key" in changed and not pending:
                reason = f"adopt the portal's pipeline {category.get('name')!r} (id {cid}) and record its key"
            result.changes.append(Change(action, "pipeline", p.key, before, {**after, "id": cid}, reason))
        else:
            result.changes.append(Change("noop", "pipeline", p.key, before, {**after, "id": cid}))
        _check_key_lengths(result, p, desired, cid)
        prefix = stage_prefix(cid)
        actual = actual_stages(snapshot.rows(stage_entity(cid)), prefix)
        changes_before = len(result.changes)
        _diff_funnel(result, desired, actual, lambda code, pre=prefix: counts.get(("deal", pre + code), 0),
                     f"pipeline {p.key!r}", new=pending)
        for change in result.changes[changes_before:]:
            if change.action == "delete":
                result.relies_on(change, "crm.deal.list", {"STAGE_ID": prefix + change.code}, change.before["records"])
        stage_changes += result.changes[changes_before:]
        del result.changes[changes_before:]
    result.changes += stage_changes
    taken = {p.key.lower() for p in config.pipelines}
    for category in snapshot.categories:
        cid = int(category["id"])
        if cid in used:
            continue
        key = portal_key(category)
        if key.lower() in taken:  # a declared pipeline (or another portal pipeline) goes by this key
            key = f"{key}#id{cid}"
        taken.add(key.lower())
        if cid == 0:
            result.errors.append("the portal's default pipeline (id 0) cannot be deleted: declare it with default = true")
            continue
        held = counts.get(("category", cid), 0)
        before = {"name": category.get("name"), "sort": int(category.get("sort") or 0), "key": key, "id": cid, "records": held}
        result.changes.append(Change("delete", "pipeline", key, before, None, "not declared in the config"))
        result.relies_on(result.changes[-1], "crm.deal.list", {"CATEGORY_ID": cid}, held)
        if held:
            result.errors.append(
                f"pipeline {key!r} ({category.get('name')!r}, id {cid}) holds {held} deal(s) and cannot be deleted: "
                "move its deals to another pipeline first, or declare it"
            )


def _diff_funnel(
    result: Plan, desired: Funnel, actual: list[Stage], held: Callable[[str], int], label: str, *, new: bool
) -> None:
    """Append the changes of one funnel: creates/updates/reorders/no-ops in declared order, then
    record moves and deletes. ``new`` marks a pipeline whose stock stages may go without --allow-delete."""
    noun = "lead status" if desired.kind == "lead_status" else "stage"
    records = "lead(s)" if desired.kind == "lead_status" else "deal(s)"
    have = {s.key: s for s in actual}
    declared = {s.key for s in desired.stages}
    portal_success = [s for s in actual if s.semantics == "success"]
    for stage in desired.stages:
        current = have.get(stage.key)
        path = desired.path(stage.key)
        if current is None:
            if stage.semantics == "success" and portal_success:
                result.errors.append(
                    f"{label}: success {noun} {stage.key!r} cannot be added: the portal's success {noun} is "
                    f"{portal_success[0].key!r} and a funnel has exactly one; declare it under key {portal_success[0].key!r}"
                )
            result.changes.append(Change("create", desired.kind, path, None, stage.fields()))
            continue
        if current.semantics != stage.semantics:
            result.errors.append(
                f"{label}: {noun} {stage.key!r} is {current.semantics} on the portal and {stage.semantics} in the config; "
                "Bitrix24 never changes a stage's semantics: give it a new key (and say in move_records where "
                "the old one's records go)"
            )
        before = current.fields() | {"id": current.id}
        after = stage.fields() | {"id": current.id}
        if stage.color is None:
            before.pop("color", None)
        changed = [k for k in ("name", "sort", "color") if before.get(k) != after.get(k)]
        action = "noop" if not changed else "reorder" if changed == ["sort"] else "update"
        result.changes.append(Change(action, desired.kind, path, before, after))
    for stage in actual:
        if stage.key in declared:
            continue
        path = desired.path(stage.key)
        count = held(stage.key)
        target = desired.moves.get(stage.key)
        if stage.system:
            result.errors.append(
                f"{label}: {noun} {stage.key!r} ({stage.name!r}) is a system {noun} that the portal does not let "
                "anyone delete; declare it (renaming it is fine)"
            )
            continue
        if count and target:
            result.changes.append(Change("move_records", desired.kind, path, {"stage": stage.key, "records": count},
                                         {"stage": target}, f"before deleting {stage.key}"))
        elif count:
            result.errors.append(
                f"{label}: {noun} {stage.key!r} ({stage.name!r}) holds {count} {records} and is not declared; "
                f"say where they go: {_moves_hint(desired)} {stage.key} = \"<declared key>\", or declare it"
            )
        template = new and not count
        before = stage.fields() | {"id": stage.id, "records": count}
        if template:
            before["template"] = True
        reason = "stock stage of a pipeline created by b24sync" if template else "not declared in the config"
        result.changes.append(Change("delete", desired.kind, path, before, None, reason))


def _moves_hint(funnel: Funnel) -> str:
    return "[leads.move_records]" if funnel.kind == "lead_status" else f"[pipelines.move_records] of {funnel.name!r}:"


def _check_new_pipeline(result: Plan, p: PipelineConfig, desired: Funnel, predicted_id: int) -> None:
    """A new pipeline comes with system stages NEW, WON, LOSE that cannot be deleted: they must be declared."""
    keys = {s.key: s.semantics for s in desired.stages}
    for key, semantics in NEW_PIPELINE_SYSTEM_STAGES.items():
        if keys.get(key) != semantics:
            result.errors.append(
                f"pipeline {p.key!r}: the portal creates every pipeline with the system stage {key!r} ({semantics}), "
                f"which cannot be deleted; declare a {semantics} stage with key {key!r} (any name)"
            )
    _check_key_lengths(result, p, desired, predicted_id)


def _check_key_lengths(result: Plan, p: PipelineConfig, desired: Funnel, category_id: int) -> None:
    """STATUS_ID room shrinks by the ``C{N}:`` prefix in pipeline N (CCrmStatus::validateStatusId)."""
    room = DEAL_KEY_MAX - len(stage_prefix(category_id))
    for stage in desired.stages:
        if len(stage.key) > room:
            result.errors.append(
                f"pipeline {p.key!r}: stage key {stage.key!r} is longer than {room} characters, the room left "
                f"by the prefix {stage_prefix(category_id)!r}"
            )


# ---------------------------------------------------------------- apply


Progress = Callable[[str], None]


def apply(api: Gateway | Any, plan: Plan, *, allow_delete: bool = False, progress: Progress | None = None) -> int:
    """Run a plan against the portal and return the number of write calls made.

    Refuses a plan with errors, deletions without ``allow_delete``, and a plan whose fingerprint no
    longer matches the portal: the funnels changed, or a stage or pipeline it deletes holds a different
    number of records than the plan counted. All of that is checked before the first write, so a
    refusal leaves the portal untouched. Every step re-reads the part of the portal it changes, so a run that
    was killed halfway leaves a state from which a fresh plan converges.
    """
    say = progress or (lambda message: None)
    api = as_gateway(api)
    if plan.errors:
        raise ProvisionError(plan.errors)
    deletions = plan.deletions()
    if deletions and not allow_delete:
        raise ProvisionError(
            [f"the plan deletes {len(deletions)} object(s); run apply with --allow-delete to allow it:"]
            + [f"  {c.kind} {c.key} ({(c.before or {}).get('name')!r})" for c in deletions]
        )
    snapshot = read_snapshot(api)
    now = count_queries(api, [(c["method"], c["filter"]) for c in plan.counts])
    moved = [
        f"  {c['kind'].replace('_', ' ')} {c['key']!r} now holds {n} {_noun(c)}; the plan counted {c['records']}"
        for c, n in zip(plan.counts, now) if n != int(c["records"])
    ]
    recounted = [{**c, "records": n} for c, n in zip(plan.counts, now)]
    if moved or plan_fingerprint(snapshot, recounted) != plan.fingerprint:
        raise StalePlan(["the portal changed since this plan was made; run plan again"] + moved)
    if not plan.has_changes:
        return 0
    writer = _Writer(api, say)
    category_ids, unfinished = _apply_pipelines(writer, plan, snapshot)
    by_funnel: dict[str, list[Change]] = {}
    for change in plan.changes:
        if change.kind != "pipeline":
            by_funnel.setdefault(change.funnel, []).append(change)
    created = {c.key for c in plan.changes if c.kind == "pipeline" and c.action == "create"}
    for funnel, changes in by_funnel.items():
        if funnel not in created and all(c.action == "noop" for c in changes):
            continue
        if funnel == "leads":
            _apply_funnel(writer, "lead_status", "leads", LEAD_ENTITY, "", changes, template=False)
        else:
            cid = category_ids[funnel]
            _apply_funnel(writer, "stage", funnel, stage_entity(cid), stage_prefix(cid), changes, template=funnel in created)
    for change in plan.changes:
        if change.kind == "pipeline" and change.action == "delete":
            _delete_pipeline(writer, change)
    for key in unfinished:  # its stock stages are replaced: the creation is complete
        writer.run([("crm.category.update", {"entityTypeId": DEAL_TYPE_ID, "id": category_ids[key],
                                             "fields": {"originatorId": ORIGINATOR, "originId": key}})],
                   f"pipeline {key}: creation complete")
    return writer.writes


def _noun(count: dict[str, Any]) -> str:
    return "lead(s)" if count["method"] == "crm.lead.list" else "deal(s)"


class _Writer:
    """Sends write calls in batches and counts them; reports each step."""

    def __init__(self, api: Gateway, say: Progress):
        self.api = api
        self.say = say
        self.writes = 0

    def run(self, calls: list[tuple[str, dict[str, Any]]], message: str) -> list[Any]:
        """Report ``message`` and send ``calls`` in halting batches; their results in order."""
        if not calls:
            return []
        self.say(message)
        results = self.api.batch(calls)
        self.writes += len(calls)
        return results


def _apply_pipelines(writer: _Writer, plan: Plan, snapshot: Snapshot) -> tuple[dict[str, int], list[str]]:
    """Create and update pipelines. Returns pipeline key -> portal id of every declared pipeline, and
    the keys of pipelines still marked unfinished (new ones, or ones an interrupted apply created)."""
    ids: dict[str, int] = {}
    unfinished: list[str] = []
    for change in plan.changes:
        if change.kind != "pipeline" or change.action == "delete":
            continue
        after = change.after or {}
        if change.action == "create":
            fields = {"name": after["name"], "sort": after["sort"], "originatorId": ORIGINATOR_NEW, "originId": change.key}
            result = writer.run([("crm.category.add", {"entityTypeId": DEAL_TYPE_ID, "fields": fields})],
                                f"create pipeline {change.key} ({after['name']!r})")[0]
            ids[change.key] = int(result["category"]["id"])
            unfinished.append(change.key)
            continue
        cid = int(after["id"])
        ids[change.key] = cid
        pending = bool((change.before or {}).get("pending"))
        if pending:
            unfinished.append(change.key)
        if change.action in ("update", "reorder"):
            fields: dict[str, Any] = {"name": after["name"], "sort": after["sort"]}
            if cid:
                fields |= {"originatorId": ORIGINATOR_NEW if pending else ORIGINATOR, "originId": change.key}
            writer.run([("crm.category.update", {"entityTypeId": DEAL_TYPE_ID, "id": cid, "fields": fields})],
                       f"{change.action} pipeline {change.key}")
    return ids, unfinished


def _read_funnel(api: Gateway, entity: str, prefix: str) -> list[Stage]:
    method, params = _status_list(entity)
    return actual_stages(_status_rows(api.call(method, params), entity), prefix)


def _apply_funnel(
    writer: _Writer, kind: str, funnel: str, entity: str, prefix: str, changes: list[Change], *, template: bool
) -> None:
    """Bring one funnel to the plan's stages: create, move records, delete, then fix names/sorts/colours
    in an order that keeps in-progress < success < failure at every step."""
    api = writer.api
    label = "lead statuses" if kind == "lead_status" else f"pipeline {funnel}"
    desired = [(c.code, c.after or {}) for c in changes if c.action in ("create", "update", "reorder", "noop")]
    wanted = {code for code, _ in desired}
    deletes = {c.code for c in changes if c.action == "delete"}
    moves = {c.code: (c.after or {})["stage"] for c in changes if c.action == "move_records"}
    actual = {s.key: s for s in _read_funnel(api, entity, prefix)}
    if template:  # a pipeline created just now: its stock stages that are not declared go
        deletes |= {k for k, s in actual.items() if k not in wanted and not s.system}

    # 1. create what is missing, at a sort that is legal right now
    success = next((s.sort for s in actual.values() if s.semantics == "success"), None)
    calls = []
    for code, after in desired:
        if code in actual:
            continue
        sort = _legal_sort(after["semantics"], after["sort"], success)
        fields = {"ENTITY_ID": entity, "STATUS_ID": prefix + code, "NAME": after["name"], "SORT": sort,
                  "SEMANTICS": SEMANTICS_CODE[after["semantics"]]}
        if after.get("color"):
            fields["COLOR"] = after["color"]
        calls.append(("crm.status.add", {"fields": fields}))
    if calls:
        writer.run(calls, f"{label}: create {len(calls)} stage(s)")
        actual = {s.key: s for s in _read_funnel(api, entity, prefix)}

    # 2. move records off the stages that go, 3. delete them
    entity_method, field_name, noun = (
        ("crm.lead", "STATUS_ID", "leads") if kind == "lead_status" else ("crm.deal", "STAGE_ID", "deals")
    )
    delete_calls = []
    going = [code for code in sorted(deletes) if code in actual]  # the others are gone already
    queries = [(f"{entity_method}.list", {field_name: prefix + code}) for code in going]
    for code, query, rows in zip(going, queries, first_pages(api, queries)):
        stage = actual[code]
        ids = [int(r["ID"]) for r in rows] if len(rows) < 50 else api.ids(*query)
        if ids:
            target = moves.get(code)
            if target is None or target not in actual:
                raise ProvisionError(f"{label}: {code!r} now holds {len(ids)} {noun} and the plan has nowhere to move them; plan again")
            writer.run([(f"{entity_method}.update", {"id": i, "fields": {field_name: prefix + target}}) for i in ids],
                       f"{label}: move {len(ids)} {noun} from {code} to {target}")
        delete_calls.append(("crm.status.delete", {"id": stage.id}))
    if delete_calls:
        writer.run(delete_calls, f"{label}: delete {len(delete_calls)} stage(s)")
        actual = {k: s for k, s in actual.items() if k not in deletes}

    # 4. names, colours and sorts, in a legal order
    targets = {code: after for code, after in desired if code in actual}
    pending = [
        code for code, after in targets.items()
        if (actual[code].name, actual[code].sort) != (after["name"], after["sort"])
        or (after.get("color") and actual[code].color != after["color"])
    ]
    state = {k: (s.semantics, s.sort) for k, s in actual.items()}
    calls = []
    for code in _legal_order(state, {c: targets[c]["sort"] for c in pending}):
        after = targets[code]
        fields = {"NAME": after["name"], "SORT": after["sort"]}
        if after.get("color"):
            fields["COLOR"] = after["color"]
        calls.append(("crm.status.update", {"id": actual[code].id, "fields": fields}))
    writer.run(calls, f"{label}: update {len(calls)} stage(s)")


def _legal_sort(semantics: str, wanted: int, success: int | None) -> int:
    """A SORT for a new stage that the portal accepts now: in progress below the success stage,
    failure above it. Fixed to the wanted value by the later update pass."""
    if success is None:
        return wanted
    if semantics == "process" and wanted >= success:
        return max(success - 1, 1)
    if semantics == "failure" and wanted <= success:
        return success + 1
    return wanted


def _legal(state: dict[str, tuple[str, int]]) -> bool:
    success = [sort for semantics, sort in state.values() if semantics == "success"]
    if not success:
        return True
    s = success[0]
    return all(
        (semantics != "process" or sort < s) and (semantics != "failure" or sort > s)
        for semantics, sort in state.values()
    )


def _legal_order(state: dict[str, tuple[str, int]], targets: dict[str, int]) -> list[str]:
    """An order of sort updates keeping every intermediate state legal (greedy; always progresses when
    the final state is legal: failures rise first, in-progress stages drop first, the success stage
    moves when its neighbours allow). Falls back to the given order for a portal already out of order."""
    state = dict(state)
    pending = list(targets)
    order: list[str] = []
    while pending:
        for code in pending:
            trial = dict(state)
            trial[code] = (state[code][0], targets[code])
            if _legal(trial):
                state = trial
                order.append(code)
                pending.remove(code)
                break
        else:
            order += pending
            break
    return order


def _delete_pipeline(writer: _Writer, change: Change) -> None:
    cid = int((change.before or {})["id"])
    held = writer.api.count("crm.deal.list", {"CATEGORY_ID": cid})
    if held:
        raise ProvisionError(f"pipeline {change.key!r} now holds {held} deal(s); plan again")
    writer.run([("crm.category.delete", {"entityTypeId": DEAL_TYPE_ID, "id": cid})], f"delete pipeline {change.key}")


# ---------------------------------------------------------------- export


def export(api: Gateway | Any) -> str:
    """The portal's lead statuses and deal pipelines as a config file that ``plan`` reads back as no changes.
    ``api`` is a Gateway or a ``Bitrix24Client``."""
    return export_snapshot(read_snapshot(as_gateway(api)))


def export_snapshot(snapshot: Snapshot) -> str:
    """TOML text (with comments) of the funnels in a snapshot."""
    out = [
        "# Funnels exported by `b24sync provision export`.",
        "# `b24sync provision plan --config THIS_FILE` reads it back as no changes.",
        "# Keys are the portal's STATUS_IDs (without the C{N}: prefix of a pipeline) and never change:",
        "# rename and reorder freely. `sort` is written only where it is not the previous value + 10.",
        "",
        "# ------------------------------------------------------------------ lead statuses",
    ]
    out += _export_stages("leads.statuses", actual_stages(snapshot.rows(LEAD_ENTITY), ""))
    out += [
        "# ------------------------------------------------------------------ deal pipelines",
        "# The list is complete: a portal pipeline missing here is planned for deletion.",
        "",
    ]
    previous = 0
    keys: set[str] = set()
    for category in snapshot.categories:
        cid = int(category["id"])
        key = portal_key(category)
        while key in keys:  # a hand-made pipeline whose derived key is taken by a recorded one
            key += "_"
        keys.add(key)
        sort = int(category.get("sort") or 0)
        out.append("[[pipelines]]")
        out.append(f"key = {_toml_str(key)}")
        if cid == 0:
            out.append("default = true            # the portal's default pipeline (id 0)")
        out.append(f"name = {_toml_str(category.get('name') or '')}")
        if sort != previous + 100:
            out.append(f"sort = {sort}")
        previous = sort
        out.append("")
        out += _export_stages("pipelines.stages", actual_stages(snapshot.rows(stage_entity(cid)), stage_prefix(cid)))
    return "\n".join(out).rstrip("\n") + "\n"


_GROUP_TITLES = {"process": "in progress", "success": "success (exactly one)", "failure": "failure"}


def _export_stages(table: str, stages: list[Stage]) -> list[str]:
    out: list[str] = []
    previous = 0
    group = None
    for stage in stages:
        if stage.semantics != group:
            group = stage.semantics
            out.append(f"# {_GROUP_TITLES[group]}")
        out.append(f"[[{table}]]")
        out.append(f"key = {_toml_str(stage.key)}")
        out.append(f"name = {_toml_str(stage.name)}")
        if stage.semantics != "process":
            out.append(f"semantics = {_toml_str(stage.semantics)}")
        if stage.color:
            out.append(f"color = {_toml_str(stage.color)}")
        if stage.sort != previous + 10:
            out.append(f"sort = {stage.sort}")
        previous = stage.sort
        out.append("")
    return out


def _toml_str(value: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML escapes); Cyrillic kept as is."""
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------- rendering

_STYLE = {"create": "green", "update": "yellow", "reorder": "yellow", "move_records": "cyan", "delete": "red"}
_MARK = {"create": "+", "update": "~", "reorder": "~", "move_records": ">", "delete": "-"}
_LABEL = {"create": "create", "update": "update", "reorder": "reorder", "move_records": "move", "delete": "delete"}


def render_plan(plan: Plan, console: Any) -> None:
    """Print a plan for people: changes grouped by funnel (no-ops hidden), errors, then a summary line.
    ``console`` is a rich Console (colour on a terminal, plain text otherwise)."""
    from rich.markup import escape

    groups: dict[str, list[Change]] = {}
    for change in plan.changes:
        group = "Lead statuses" if change.kind == "lead_status" else f"Pipeline {change.funnel}"
        groups.setdefault(group, []).append(change)
    for title, changes in groups.items():
        shown = [c for c in changes if c.action != "noop"]
        if not shown:
            continue
        console.print(f"[bold]{escape(title)}[/bold]")
        for change in shown:
            style = _STYLE[change.action]
            what = "pipeline" if change.kind == "pipeline" else change.code
            console.print(f"  [{style}]{_MARK[change.action]} {_LABEL[change.action]:<7}[/{style}] {escape(what)}  {escape(describe(change))}")
    for error in plan.errors:
        console.print(f"[bold red]error:[/bold red] {escape(error)}")
    counts = plan.summary()
    if not plan.has_changes:
        console.print("No changes: the portal matches the config.")
        return
    parts = [f"{counts['create']} to create", f"{counts['update']} to update", f"{counts['reorder']} to reorder"]
    if counts["move_records"]:
        parts.append(f"{counts['move_records']} record move(s)")
    parts.append(f"{counts['delete']} to delete")
    console.print("Plan: " + ", ".join(parts) + ".")


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def describe(change: Change) -> str:
    """One line about a change: the new object, the fields that change (before -> after), or what goes."""
    before, after = change.before or {}, change.after or {}
    records = "leads" if change.kind == "lead_status" else "deals"
    if change.action == "create":
        text = _value(after.get("name"))
        bits = [after["semantics"]] if "semantics" in after else []
        bits.append(f"sort {after.get('sort')}")
        if after.get("color"):
            bits.append(after["color"])
        return f"{text} ({', '.join(bits)})" + (f" - {change.reason}" if change.kind == "pipeline" else "")
    if change.action in ("update", "reorder"):
        fields = [k for k in ("name", "sort", "color", "key") if k in after and before.get(k) != after.get(k)]
        text = "; ".join(f"{k}: {_value(before.get(k))} -> {_value(after.get(k))}" for k in fields)
        if not text:  # e.g. finishing an interrupted pipeline creation: only the reason says what happens
            return change.reason
        return text + (f" ({change.reason})" if change.reason else "")
    if change.action == "move_records":
        return f"{before.get('records')} {records} -> {after.get('stage')} ({change.reason})"
    if change.action == "delete":
        held = before.get("records", 0)
        where = f"id {before['id']}, " if change.kind == "pipeline" else ""
        return f"{_value(before.get('name'))} ({where}{held} {records}) - {change.reason}"
    return ""

