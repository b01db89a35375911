"""Running a plan against the portal: checks first (errors, deletions, a fingerprint that still holds),
then writes in halting batches, each step re-reading the part of the portal it changes.

Bitrix24 has no locks, so two applies may run at once. Each step is therefore written to converge:
a pipeline both runs created is kept once (the lowest id; the other run deletes its own, still
empty copy), and a write the portal refuses because the other run got there first (a stage that
already exists, one already deleted) is followed by a fresh read and the rest of the step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from connector.catalog import DEAL, LEAD_STATUS, stage_entity_id, stage_prefix
from connector.errors import B24Error, FatalError
from jobs.errors import failure_of
from jobs.portal import portal_address
from jobs.provision.changes import Action, Change, Kind, Plan, ProvisionError, StalePlan
from jobs.provision.identity import ORIGINATOR, ORIGINATOR_NEW, keyed
from jobs.provision.order import legal_order, legal_sort
from jobs.provision.records import count_queries, first_pages, record_ids
from jobs.provision.snapshot import UnexpectedReply, plan_fingerprint, read_categories, read_snapshot, read_stages
from jobs.provision.stages import SEMANTICS_CODE

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
# passes over one stage list when the portal refuses a write another apply made first
PASSES = 5


class ApplyFailed(ProvisionError):
    """A portal error stopped apply; the message says whether anything was written."""

    @classmethod
    def after(cls, exc: B24Error | UnexpectedReply, attempted: int, portal: str | None = None) -> "ApplyFailed":
        """The error of ``exc`` and what it means for the portal, ``attempted`` writes having been sent."""
        note = (
            "Nothing was changed on the portal." if not attempted
            else "The portal may be partly changed: run apply again; it continues from where it is."
        )
        return cls([failure_of(exc, portal=portal).message, note])


def apply(client: Any, plan: Plan, *, allow_delete: bool = False, progress: Progress | None = None) -> int:
    """Run a plan against the portal through ``client`` (a ``Bitrix24Client``); the number of write calls made.

    Refuses a plan with errors, deletions without ``allow_delete``, and a plan whose fingerprint no
    longer matches the portal: the funnels changed, or a stage or pipeline it deletes holds a different
    number of records than the plan counted. All of that is checked before the first write, so a
    refusal leaves the portal untouched. Every step re-reads the part of the portal it changes, so a run that
    was killed halfway leaves a state from which a fresh plan converges. A portal error (or a reply
    that is not Bitrix24's) is raised as ``ApplyFailed``, saying whether anything was written.
    """
    if plan.errors:
        raise ProvisionError(plan.errors)
    deletions = plan.deletions()
    if deletions and not allow_delete:
        raise ProvisionError(
            [f"the plan deletes {len(deletions)} object(s); run apply with --allow-delete to allow it:"]
            + [f"  {c.kind.value} {c.key} ({(c.before or {}).get('name')!r})" for c in deletions]
        )
    writer = Writer(client, progress or (lambda message: None))
    try:
        _check_fresh(client, plan)
        if plan.has_changes:
            _run(writer, plan)
    except (B24Error, UnexpectedReply) as exc:
        raise ApplyFailed.after(exc, writer.attempted, portal_address(client.auth)) from exc
    return writer.writes


def _check_fresh(client: Any, plan: Plan) -> None:
    """StalePlan unless the portal is still in the state the plan was made from (funnels and counts)."""
    snapshot = read_snapshot(client)
    now = count_queries(client, [(c["method"], c["filter"]) for c in plan.counts])
    moved = [
        f"  {c['kind'].replace('_', ' ')} {c['key']!r} now holds {n} {_noun(c)}; the plan counted {c['records']}"
        for c, n in zip(plan.counts, now) if n != int(c["records"])
    ]
    recounted = [{**c, "records": n} for c, n in zip(plan.counts, now)]
    if moved or plan_fingerprint(snapshot, recounted) != plan.fingerprint:
        raise StalePlan(["the portal changed since this plan was made; run plan again"] + moved)


def _run(writer: Writer, plan: Plan) -> None:
    category_ids, unfinished = _apply_pipelines(writer, plan)
    by_list: dict[str, list[Change]] = {}
    for change in plan.changes:
        if change.kind != Kind.PIPELINE:
            by_list.setdefault(change.stage_list, []).append(change)
    created = {c.key for c in plan.changes if c.kind == Kind.PIPELINE and c.action == Action.CREATE}
    for name, changes in by_list.items():
        if name not in created and all(c.action == Action.NOOP for c in changes):
            continue
        if name == "leads":
            _apply_stage_list(writer, Kind.LEAD_STATUS, "leads", LEAD_STATUS, "", changes, stock_go=False)
        else:
            cid = category_ids[name]
            _apply_stage_list(writer, Kind.STAGE, name, stage_entity_id(cid), stage_prefix(cid), changes,
                              stock_go=name in created)
    for change in plan.changes:
        if change.kind == Kind.PIPELINE and change.action == Action.DELETE:
            _delete_pipeline(writer, change)
    for key in unfinished:  # its stock stages are replaced: the creation is complete
        writer.run([("crm.category.update", {"entityTypeId": DEAL, "id": category_ids[key],
                                             "fields": {"originatorId": ORIGINATOR, "originId": key}})],
                   f"pipeline {key}: creation complete")


def _noun(count: dict[str, Any]) -> str:
    return "lead(s)" if count["method"] == "crm.lead.list" else "deal(s)"


class Writer:
    """Sends write calls in halting batches and counts them (sent, and completed); reports each step."""

    def __init__(self, client: Any, say: Progress):
        self.client = client
        self.say = say
        self.writes = 0  # write calls in batches that completed
        self.attempted = 0  # write calls sent, whether or not they completed

    def run(self, calls: list[tuple[str, dict[str, Any]]], message: str) -> list[Any]:
        """Report ``message`` and send ``calls`` in halting batches; their results in order."""
        if not calls:
            return []
        self.say(message)
        self.attempted += len(calls)
        results = list(self.client.batch(calls, halt=True))
        self.writes += len(calls)
        return results


def _apply_pipelines(writer: Writer, plan: Plan) -> tuple[dict[str, int], list[str]]:
    """Create and update pipelines. Returns pipeline key -> portal id of every declared pipeline, and
    the keys of pipelines still marked unfinished (new ones, or ones an interrupted apply created)."""
    ids: dict[str, int] = {}
    unfinished: list[str] = []
    for change in plan.changes:
        if change.kind != Kind.PIPELINE or change.action == Action.DELETE:
            continue
        after = change.after or {}
        if change.action == Action.CREATE:
            ids[change.key] = _create_pipeline(writer, change)
            unfinished.append(change.key)
            continue
        cid = int(after["id"])
        ids[change.key] = cid
        if change.unfinished:
            unfinished.append(change.key)
        if change.action in (Action.UPDATE, Action.REORDER):
            fields: dict[str, Any] = {"name": after["name"], "sort": after["sort"]}
            if cid:
                fields |= {"originatorId": ORIGINATOR_NEW if change.unfinished else ORIGINATOR, "originId": change.key}
            writer.run([("crm.category.update", {"entityTypeId": DEAL, "id": cid, "fields": fields})],
                       f"{change.action.value} pipeline {change.key}")
    return ids, unfinished


def _create_pipeline(writer: Writer, change: Change) -> int:
    """Create a pipeline marked unfinished; the id to continue with.

    Another apply may have created the same pipeline at the same moment. After creating, the
    pipelines are read again: when another one carries the same key with a lower id, that one is
    kept by both runs, and ours (just made, so empty) is deleted.
    """
    after = change.after or {}
    fields = {"name": after["name"], "sort": after["sort"], "originatorId": ORIGINATOR_NEW, "originId": change.key}
    result = writer.run([("crm.category.add", {"entityTypeId": DEAL, "fields": fields})],
                        f"create pipeline {change.key} ({after['name']!r})")[0]
    try:
        ours = int(result["category"]["id"])
    except (KeyError, TypeError, ValueError):
        raise UnexpectedReply("not a Bitrix24 reply from crm.category.add: no category id") from None
    same = keyed(read_categories(writer.client), change.key)
    winner = int(same[0]["id"]) if same else ours
    if winner != ours:
        writer.run([("crm.category.delete", {"entityTypeId": DEAL, "id": ours})],
                   f"pipeline {change.key}: another apply created it at the same time (id {winner}); "
                   f"deleting our copy (id {ours})")
    return winner


def _apply_stage_list(
    writer: Writer, kind: Kind, name: str, entity: str, prefix: str, changes: list[Change], *, stock_go: bool
) -> None:
    """Bring one stage list to the plan's stages; when the portal refuses a write (another apply did it
    first, or moved a sort meanwhile), read the list again and do what is still left."""
    for attempt in range(1, PASSES + 1):
        try:
            _stage_list_pass(writer, kind, name, entity, prefix, changes, stock_go=stock_go)
            return
        except FatalError as exc:
            if attempt == PASSES:
                raise
            log.info("%s %s: the portal refused a write (%s); reading it again", kind.value, name, exc)


def _stage_list_pass(
    writer: Writer, kind: Kind, name: str, entity: str, prefix: str, changes: list[Change], *, stock_go: bool
) -> None:
    """One pass over a stage list from a fresh read: create, move records, delete, then fix names,
    sorts and colours in an order that keeps in-progress < success < failure at every step."""
    client = writer.client
    label = "lead statuses" if kind == Kind.LEAD_STATUS else f"pipeline {name}"
    desired = [(c.code, c.after or {}) for c in changes if c.action in (Action.CREATE, Action.UPDATE, Action.REORDER, Action.NOOP)]
    wanted = {code for code, _ in desired}
    deletes = {c.code for c in changes if c.action == Action.DELETE}
    moves = {c.code: (c.after or {})["stage"] for c in changes if c.action == Action.MOVE_RECORDS}
    actual = {s.key: s for s in read_stages(client, entity, prefix)}
    if stock_go:  # a pipeline b24sync is creating: its stock stages that are not declared go
        deletes |= {k for k, s in actual.items() if k not in wanted and not s.system}

    # 1. create what is missing, at a sort that is legal right now
    success = next((s.sort for s in actual.values() if s.semantics == "success"), None)
    calls = []
    for code, after in desired:
        if code in actual:
            continue
        sort = legal_sort(after["semantics"], after["sort"], success)
        fields = {"ENTITY_ID": entity, "STATUS_ID": prefix + code, "NAME": after["name"], "SORT": sort,
                  "SEMANTICS": SEMANTICS_CODE[after["semantics"]]}
        if after.get("color"):
            fields["COLOR"] = after["color"]
        calls.append(("crm.status.add", {"fields": fields}))
    if calls:
        writer.run(calls, f"{label}: create {len(calls)} stage(s)")
        actual = {s.key: s for s in read_stages(client, entity, prefix)}

    # 2. move records off the stages that go, 3. delete them
    entity_method, field_name, noun = (
        ("crm.lead", "STATUS_ID", "leads") if kind == Kind.LEAD_STATUS else ("crm.deal", "STAGE_ID", "deals")
    )
    delete_calls = []
    going = [code for code in sorted(deletes) if code in actual]  # the others are gone already
    queries = [(f"{entity_method}.list", {field_name: prefix + code}) for code in going]
    for code, query, rows in zip(going, queries, first_pages(client, queries)):
        ids = record_ids(client, query, rows)
        if ids:
            target = moves.get(code)
            if target is None or target not in actual:
                raise ProvisionError(f"{label}: {code!r} now holds {len(ids)} {noun} and the plan has nowhere to move them; plan again")
            writer.run([(f"{entity_method}.update", {"id": i, "fields": {field_name: prefix + target}}) for i in ids],
                       f"{label}: move {len(ids)} {noun} from {code} to {target}")
        delete_calls.append(("crm.status.delete", {"id": actual[code].id}))
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
    for code in legal_order(state, {c: targets[c]["sort"] for c in pending}):
        after = targets[code]
        fields = {"NAME": after["name"], "SORT": after["sort"]}
        if after.get("color"):
            fields["COLOR"] = after["color"]
        calls.append(("crm.status.update", {"id": actual[code].id, "fields": fields}))
    writer.run(calls, f"{label}: update {len(calls)} stage(s)")


def _delete_pipeline(writer: Writer, change: Change) -> None:
    """Delete an undeclared pipeline, unless deals arrived in it; one another apply deleted is fine."""
    client = writer.client
    cid = int((change.before or {})["id"])
    held = client.count("crm.deal.list", {"CATEGORY_ID": cid})
    if held:
        raise ProvisionError(f"pipeline {change.key!r} now holds {held} deal(s); plan again")
    try:
        writer.run([("crm.category.delete", {"entityTypeId": DEAL, "id": cid})], f"delete pipeline {change.key}")
    except FatalError:
        if any(int(c["id"]) == cid for c in read_categories(client)):
            raise  # still there: a real refusal; gone: another apply deleted it
