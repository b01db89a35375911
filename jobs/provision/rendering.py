"""A plan for people: changes grouped by pipeline (no-ops hidden), each on one line with what changes
(before -> after), then the plan's errors and a summary line; colour on a terminal, plain text otherwise.
"""

from __future__ import annotations

import json
from typing import Any

from jobs.provision.changes import Action, Change, Kind, Plan

_STYLE = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.REORDER: "yellow", Action.MOVE_RECORDS: "cyan", Action.DELETE: "red"}
_MARK = {Action.CREATE: "+", Action.UPDATE: "~", Action.REORDER: "~", Action.MOVE_RECORDS: ">", Action.DELETE: "-"}
_LABEL = {Action.CREATE: "create", Action.UPDATE: "update", Action.REORDER: "reorder", Action.MOVE_RECORDS: "move", Action.DELETE: "delete"}


def render_plan(plan: Plan, console: Any) -> None:
    """Print a plan for people: changes grouped by stage list (no-ops hidden), errors, then a summary line.
    ``console`` is a rich Console (colour on a terminal, plain text otherwise)."""
    from rich.markup import escape

    groups: dict[str, list[Change]] = {}
    for change in plan.changes:
        group = "Lead statuses" if change.kind == Kind.LEAD_STATUS else f"Pipeline {change.stage_list}"
        groups.setdefault(group, []).append(change)
    for title, changes in groups.items():
        shown = [c for c in changes if c.action != Action.NOOP]
        if not shown:
            continue
        console.print(f"[bold]{escape(title)}[/bold]")
        for change in shown:
            style = _STYLE[change.action]
            what = "pipeline" if change.kind == Kind.PIPELINE else change.code
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
    records = "leads" if change.kind == Kind.LEAD_STATUS else "deals"
    if change.action == Action.CREATE:
        text = _value(after.get("name"))
        bits = [after["semantics"]] if "semantics" in after else []
        bits.append(f"sort {after.get('sort')}")
        if after.get("color"):
            bits.append(after["color"])
        return f"{text} ({', '.join(bits)})" + (f" - {change.reason}" if change.kind == Kind.PIPELINE else "")
    if change.action in (Action.UPDATE, Action.REORDER):
        fields = [k for k in ("name", "sort", "color", "key") if k in after and before.get(k) != after.get(k)]
        text = "; ".join(f"{k}: {_value(before.get(k))} -> {_value(after.get(k))}" for k in fields)
        if not text:  # e.g. finishing an interrupted pipeline creation: only the reason says what happens
            return change.reason
        return text + (f" ({change.reason})" if change.reason else "")
    if change.action == Action.MOVE_RECORDS:
        return f"{before.get('records')} {records} -> {after.get('stage')} ({change.reason})"
    if change.action == Action.DELETE:
        held = before.get("records", 0)
        where = f"id {before['id']}, " if change.kind == Kind.PIPELINE else ""
        return f"{_value(before.get('name'))} ({where}{held} {records}) - {change.reason}"
    return ""

