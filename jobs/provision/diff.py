"""Desired (config) against actual (portal): ``plan`` reads the portal, ``diff`` compares without any call.

The result is a ``Plan``; anything the portal would refuse, or that would lose records, is a plan error
that names the stage or pipeline and says what to write in the config instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.catalog import LEAD_STATUS, stage_entity_id, stage_prefix
from jobs.provision.changes import Action, Change, Kind, Plan
from jobs.provision.identity import is_stamped, is_unfinished, match_pipelines, portal_key
from jobs.provision.records import count_records
from jobs.provision.snapshot import Snapshot, plan_fingerprint, read_snapshot
from jobs.provision.stages import Stage, StageList, actual_stages, desired_stages
from mappings.config import DEAL_KEY_MAX, Config, PipelineConfig, pipeline_sorts

# Stages the portal gives every new deal pipeline and never lets anyone delete (SYSTEM=Y):
# the default pipeline's template (docs §7.2, live observation of C8:NEW..C8:APOLOGY).
NEW_PIPELINE_SYSTEM_STAGES = {"NEW": "process", "WON": "success", "LOSE": "failure"}

Counts = dict[tuple[str, str | int], int]


def plan(config: Config, client: Any) -> Plan:
    """Read the portal through ``client`` (a ``Bitrix24Client``) and compare it with the config;
    counts records only where a delete is planned."""
    snapshot = read_snapshot(client)
    counts = count_records(client, deletion_candidates(config, snapshot))
    return diff(config, snapshot, counts)


def deletion_candidates(config: Config, snapshot: Snapshot) -> list[tuple[str, str | int]]:
    """(what, id) of every portal object the config would delete: ("lead", STATUS_ID), ("deal", STAGE_ID),
    ("category", id). Their record counts decide whether deleting is safe."""
    out: list[tuple[str, str | int]] = []
    if config.leads is not None:
        declared = {s.key for s in config.leads.statuses}
        out += [("lead", r["STATUS_ID"]) for r in snapshot.rows(LEAD_STATUS) if r["STATUS_ID"] not in declared]
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
            out += [("deal", r["STATUS_ID"]) for r in snapshot.rows(stage_entity_id(cid)) if r["STATUS_ID"] not in declared]
        out += [("category", int(c["id"])) for c in snapshot.categories if int(c["id"]) not in used]
    return out


def diff(config: Config, snapshot: Snapshot, counts: Counts | None = None) -> Plan:
    """The plan that takes ``snapshot`` to the state ``config`` declares (pure: no API calls)."""
    counts = counts or {}
    result = Plan()
    if config.leads is not None:
        _diff_leads(result, config, snapshot, counts)
    if config.pipelines is not None:
        _diff_pipelines(result, config.pipelines, snapshot, counts)
    result.fingerprint = plan_fingerprint(snapshot, result.counts)
    return result


def _diff_leads(result: Plan, config: Config, snapshot: Snapshot, counts: Counts) -> None:
    assert config.leads is not None
    desired = desired_stages(Kind.LEAD_STATUS, "leads", config.leads.statuses, config.leads.move_records)
    actual = actual_stages(snapshot.rows(LEAD_STATUS), "")
    first = len(result.changes)
    _diff_stages(result, desired, actual, lambda code: counts.get(("lead", code), 0), "leads", unfinished=False)
    for change in result.changes[first:]:
        if change.action == Action.DELETE:
            result.relies_on(change, "crm.lead.list", {"STATUS_ID": change.code}, change.before["records"])


def _diff_pipelines(result: Plan, pipelines: list[PipelineConfig], snapshot: Snapshot, counts: Counts) -> None:
    matched, problems = match_pipelines(pipelines, snapshot.categories)
    result.errors += problems
    used: set[int] = set()
    stage_changes: list[Change] = []
    next_id = max([int(c["id"]) for c in snapshot.categories] + [0]) + 1
    for p, sort in zip(pipelines, pipeline_sorts(pipelines)):
        category = matched.get(p.key)
        after = {"name": p.name, "sort": sort, "key": p.key}
        desired = desired_stages(Kind.STAGE, p.key, p.stages, p.move_records)
        if category is None:
            if p.default:
                continue
            result.changes.append(Change(Action.CREATE, Kind.PIPELINE, p.key, None, after,
                                         "new pipeline; the stock stages the portal adds to it are replaced by the declared ones"))
            _check_new_pipeline(result, p, desired, next_id)
            stage_changes += [Change(Action.CREATE, Kind.STAGE, desired.path(s.key), None, s.fields(), "stage of a new pipeline")
                              for s in desired.stages]
            next_id += 1
            continue
        cid = int(category["id"])
        used.add(cid)
        result.changes.append(_pipeline_change(p, category, after))
        _check_key_lengths(result, p, desired, cid)
        prefix = stage_prefix(cid)
        actual = actual_stages(snapshot.rows(stage_entity_id(cid)), prefix)
        changes_before = len(result.changes)
        _diff_stages(result, desired, actual, lambda code, pre=prefix: counts.get(("deal", pre + code), 0),
                     f"pipeline {p.key!r}", unfinished=is_unfinished(category))
        for change in result.changes[changes_before:]:
            if change.action == Action.DELETE:
                result.relies_on(change, "crm.deal.list", {"STAGE_ID": prefix + change.code}, change.before["records"])
        stage_changes += result.changes[changes_before:]
        del result.changes[changes_before:]
    result.changes += stage_changes
    _diff_undeclared_pipelines(result, pipelines, snapshot, used, counts)


def _pipeline_change(p: PipelineConfig, category: dict[str, Any], after: dict[str, Any]) -> Change:
    """The change of a declared pipeline that exists on the portal (update, reorder or no-op)."""
    cid = int(category["id"])
    # before.key is the key recorded on the portal: None for a pipeline made by hand
    recorded = portal_key(category) if is_stamped(category) else None
    before = {"name": category.get("name"), "sort": int(category.get("sort") or 0), "key": recorded, "id": cid}
    unfinished = is_unfinished(category)
    if cid == 0:
        before["key"] = after["key"] = p.key  # the default pipeline carries no recorded key
    changed = [k for k in ("name", "sort") if before[k] != after[k]]
    # apply records the key with any write; with nothing else to write, a pipeline matched by its
    # derived key pipeline_{id} stays as it is (an export of this portal plans as no changes)
    if before["key"] != after["key"] and (changed or portal_key(category) != p.key):
        changed.append("key")
    if not changed and not unfinished:
        return Change(Action.NOOP, Kind.PIPELINE, p.key, before, {**after, "id": cid})
    action = Action.REORDER if changed == ["sort"] and not unfinished else Action.UPDATE
    reason = "finish creating the pipeline (an earlier apply was interrupted)" if unfinished else ""
    if "key" in changed and not unfinished:
        reason = f"adopt the portal's pipeline {category.get('name')!r} (id {cid}) and record its key"
    return Change(action, Kind.PIPELINE, p.key, before, {**after, "id": cid}, reason, unfinished=unfinished)


def _diff_undeclared_pipelines(
    result: Plan, pipelines: list[PipelineConfig], snapshot: Snapshot, used: set[int], counts: Counts
) -> None:
    """Deletes of portal pipelines the config does not declare (refused while they hold deals)."""
    taken = {p.key.lower() for p in pipelines}
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
        result.changes.append(Change(Action.DELETE, Kind.PIPELINE, key, before, None, "not declared in the config"))
        result.relies_on(result.changes[-1], "crm.deal.list", {"CATEGORY_ID": cid}, held)
        if held:
            result.errors.append(
                f"pipeline {key!r} ({category.get('name')!r}, id {cid}) holds {held} deal(s) and cannot be deleted: "
                "move its deals to another pipeline first, or declare it"
            )


def _diff_stages(
    result: Plan, desired: StageList, actual: list[Stage], held: Callable[[str], int], label: str, *, unfinished: bool
) -> None:
    """Append the changes of one stage list: creates/updates/reorders/no-ops in declared order, then
    record moves and deletes. ``unfinished`` marks a pipeline whose stock stages go without --allow-delete."""
    noun = "lead status" if desired.kind == Kind.LEAD_STATUS else "stage"
    records = "lead(s)" if desired.kind == Kind.LEAD_STATUS else "deal(s)"
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
            result.changes.append(Change(Action.CREATE, desired.kind, path, None, stage.fields()))
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
        action = Action.NOOP if not changed else Action.REORDER if changed == ["sort"] else Action.UPDATE
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
            result.changes.append(Change(Action.MOVE_RECORDS, desired.kind, path, {"stage": stage.key, "records": count},
                                         {"stage": target}, f"before deleting {stage.key}"))
        elif count:
            result.errors.append(
                f"{label}: {noun} {stage.key!r} ({stage.name!r}) holds {count} {records} and is not declared; "
                f"say where they go: {_moves_hint(desired)} {stage.key} = \"<declared key>\", or declare it"
            )
        stock = unfinished and not count
        before = stage.fields() | {"id": stage.id, "records": count}
        reason = "stock stage of a pipeline created by b24sync" if stock else "not declared in the config"
        result.changes.append(Change(Action.DELETE, desired.kind, path, before, None, reason, stock=stock))


def _moves_hint(stages: StageList) -> str:
    return "[leads.move_records]" if stages.kind == Kind.LEAD_STATUS else f"[pipelines.move_records] of {stages.name!r}:"


def _check_new_pipeline(result: Plan, p: PipelineConfig, desired: StageList, predicted_id: int) -> None:
    """A new pipeline comes with system stages NEW, WON, LOSE that cannot be deleted: they must be declared."""
    keys = {s.key: s.semantics for s in desired.stages}
    for key, semantics in NEW_PIPELINE_SYSTEM_STAGES.items():
        if keys.get(key) != semantics:
            result.errors.append(
                f"pipeline {p.key!r}: the portal creates every pipeline with the system stage {key!r} ({semantics}), "
                f"which cannot be deleted; declare a {semantics} stage with key {key!r} (any name)"
            )
    _check_key_lengths(result, p, desired, predicted_id)


def _check_key_lengths(result: Plan, p: PipelineConfig, desired: StageList, category_id: int) -> None:
    """STATUS_ID room shrinks by the ``C{N}:`` prefix in pipeline N (CCrmStatus::validateStatusId)."""
    room = DEAL_KEY_MAX - len(stage_prefix(category_id))
    for stage in desired.stages:
        if len(stage.key) > room:
            result.errors.append(
                f"pipeline {p.key!r}: stage key {stage.key!r} is longer than {room} characters, the room left "
                f"by the prefix {stage_prefix(category_id)!r}"
            )
