"""A plan is plain data: a list of changes, each with a closed action, plus the fingerprint of the portal
state it was made from; this module also reads a saved plan back and refuses anything that is not one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from jobs.errors import UserError
from mappings.loader import UnreadableFile, read_text_file

PLAN_FORMAT = "b24sync-plan"
# 2: the plan carries the record counts it relies on (``counts``);
# 3: a change says ``stock`` and ``unfinished`` itself instead of hiding them in ``before``
PLAN_VERSION = 3
MAX_PLAN_BYTES = 64 * 1024 * 1024
FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
COUNT_METHODS = ("crm.lead.list", "crm.deal.list")


class Action(StrEnum):
    """What a change does; the JSON value is the member's value."""

    CREATE = "create"
    UPDATE = "update"
    REORDER = "reorder"  # only SORT changes
    MOVE_RECORDS = "move_records"
    DELETE = "delete"
    NOOP = "noop"


class Kind(StrEnum):
    """What a change is about: a deal pipeline, a stage of one (key ``pipeline/STAGE``), or a lead status."""

    PIPELINE = "pipeline"
    STAGE = "stage"
    LEAD_STATUS = "lead_status"


ACTIONS = tuple(a.value for a in Action)
KINDS = tuple(k.value for k in Kind)
SEMANTICS = ("process", "success", "failure")


class ProvisionError(UserError):
    """Provisioning cannot go on; ``problems`` says why (each line names the stage or pipeline)."""

    def __init__(self, problems: Sequence[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class StalePlan(ProvisionError):
    """A saved plan was made from a portal state that no longer holds."""


class PlanFileError(ProvisionError):
    """A file handed to ``apply --plan`` is not a plan this version of b24sync can apply."""


@dataclass
class Change:
    """One planned change. ``key`` is ``pipeline`` / ``pipeline/STAGE`` / ``STATUS`` by kind.

    Keys are unique per kind. An undeclared portal pipeline whose key (recorded, or derived
    ``pipeline_{id}``) is already used by a declared pipeline is deleted under ``{key}#id{id}``.
    ``before`` and ``after`` are the compared fields (``reason`` is only for display); ``stock``
    marks the delete of a stock stage the portal put into a pipeline b24sync is creating (no
    ``--allow-delete`` needed), ``unfinished`` a pipeline whose creation an earlier apply did not finish.
    """

    action: Action
    kind: Kind
    key: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str = ""
    stock: bool = False
    unfinished: bool = False

    def __post_init__(self) -> None:
        self.action = Action(self.action)
        self.kind = Kind(self.kind)

    @property
    def stage_list(self) -> str:
        """The stage list a change belongs to: ``leads`` or the pipeline key."""
        if self.kind == Kind.LEAD_STATUS:
            return "leads"
        return self.key.split("/", 1)[0]

    @property
    def code(self) -> str:
        """The stage key without the pipeline part."""
        return self.key.split("/", 1)[1] if self.kind == Kind.STAGE else self.key


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
        return [c for c in self.changes if c.action != Action.NOOP]

    @property
    def has_changes(self) -> bool:
        """True when applying would write something."""
        return bool(self.actionable)

    def deletions(self) -> list[Change]:
        """Deletes that need ``--allow-delete`` (not the stock stages of a pipeline b24sync is creating)."""
        return [c for c in self.changes if c.action == Action.DELETE and not c.stock]

    def summary(self) -> dict[str, int]:
        """Number of changes per action (no-ops excluded)."""
        counts = {a.value: 0 for a in Action if a != Action.NOOP}
        for change in self.actionable:
            counts[change.action.value] += 1
        return counts

    def relies_on(self, change: Change, method: str, filter: dict[str, Any], records: int) -> None:
        """Note that ``change`` (a delete) is safe only while ``method`` + ``filter`` counts ``records``."""
        self.counts.append({"kind": change.kind.value, "key": change.key, "method": method, "filter": filter, "records": records})

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
        """Read a plan written by ``to_json``; PlanFileError saying what is wrong when it is not one."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise PlanFileError("not a plan file: JSON nested too deeply") from None
        except ValueError as exc:
            raise PlanFileError(f"not a plan file: not JSON ({exc})") from None
        return plan_from_data(data)


def read_plan(path: str | Path) -> Plan:
    """The plan saved in ``path`` by ``plan --out``; PlanFileError naming the file when it is not one."""
    path = Path(path)
    try:
        text = read_text_file(path, "plan file", MAX_PLAN_BYTES)
    except UnreadableFile as exc:
        raise PlanFileError(f"{path}: {exc}") from None
    try:
        return Plan.from_json(text)
    except PlanFileError as exc:
        raise PlanFileError(f"{path}: {exc}") from None


# ---------------------------------------------------------------- what a saved plan must look like


def plan_from_data(data: Any) -> Plan:
    """A Plan from parsed JSON, every part checked against what ``apply`` reads (PlanFileError if not)."""
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise PlanFileError("not a b24sync plan file")
    version = data.get("version")
    if version != PLAN_VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version < PLAN_VERSION:
            raise PlanFileError(f"plan file version {version} was made by an older b24sync (this one reads version "
                                f"{PLAN_VERSION}); run plan again")
        raise PlanFileError(f"plan file version {_shown(version)} is not supported (expected {PLAN_VERSION})")
    fingerprint = data.get("fingerprint")
    if not isinstance(fingerprint, str) or not FINGERPRINT.fullmatch(fingerprint):
        raise PlanFileError("the plan file has no fingerprint of the portal state it was made from, so it cannot be "
                            "checked against the portal; refused: run plan again")
    errors = _list(data, "errors", "a list of messages")
    if not all(isinstance(e, str) for e in errors):
        raise PlanFileError("plan file: errors must be a list of messages")
    counts = [_count(raw, i) for i, raw in enumerate(_list(data, "counts", "a list of record counts"))]
    changes = [_change(raw, i) for i, raw in enumerate(_list(data, "changes", "a list of changes"))]
    if len({(c.kind, c.key, c.action) for c in changes}) != len(changes):
        raise PlanFileError("plan file: a change appears twice")
    return Plan(changes, fingerprint, list(errors), counts)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _list(data: dict[str, Any], name: str, what: str) -> list[Any]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise PlanFileError(f"plan file: {name} must be {what}")
    return value


def _bad(where: str, what: str) -> PlanFileError:
    return PlanFileError(f"plan file: {where}: {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(raw: Any, index: int) -> dict[str, Any]:
    where = f"counts[{index}]"
    if not isinstance(raw, dict) or not {"kind", "key", "method", "filter", "records"} <= set(raw):
        raise PlanFileError("plan file has malformed record counts")
    if raw["kind"] not in KINDS or not isinstance(raw["key"], str):
        raise _bad(where, "kind and key must name a pipeline, stage or lead status")
    if raw["method"] not in COUNT_METHODS:
        raise _bad(where, f"method must be one of {', '.join(COUNT_METHODS)}")
    filt = raw["filter"]
    if not isinstance(filt, dict) or len(filt) != 1 or not all(
        isinstance(k, str) and (isinstance(v, str) or _is_int(v)) for k, v in filt.items()
    ):
        raise _bad(where, "filter must be one field and its value")
    if not _is_int(raw["records"]) or raw["records"] < 0:
        raise _bad(where, "records must be a count")
    return {k: raw[k] for k in ("kind", "key", "method", "filter", "records")}


def _change(raw: Any, index: int) -> Change:
    where = f"changes[{index}]"
    if not isinstance(raw, dict):
        raise _bad(where, "not a change")
    action, kind = raw.get("action"), raw.get("kind")
    if action not in ACTIONS or kind not in KINDS:
        raise PlanFileError(f"plan file has an unknown change {_shown(action)}/{_shown(kind)}")
    key = raw.get("key")
    if not isinstance(key, str) or not key or (kind == Kind.STAGE and key.count("/") != 1):
        raise _bad(where, "key must name the pipeline, stage (pipeline/STAGE) or lead status")
    before, after, reason = raw.get("before"), raw.get("after"), raw.get("reason", "")
    stock, unfinished = raw.get("stock", False), raw.get("unfinished", False)
    if not (before is None or isinstance(before, dict)) or not (after is None or isinstance(after, dict)):
        raise _bad(where, "before and after must be objects or null")
    if not isinstance(reason, str) or not isinstance(stock, bool) or not isinstance(unfinished, bool):
        raise _bad(where, "reason must be text, stock and unfinished true or false")
    change = Change(Action(action), Kind(kind), key, before, after, reason, stock, unfinished)
    _check_fields(change, where)
    return change


def _check_fields(change: Change, where: str) -> None:
    """The fields of ``before`` / ``after`` that apply and the renderer read, with their types."""
    before, after = change.before or {}, change.after or {}

    def need(data: dict[str, Any], name: str, ok: Any, what: str) -> None:
        """PlanFileError unless ``data[name]`` exists and passes ``ok``."""
        if name not in data or not ok(data[name]):
            raise _bad(where, f"{'after' if data is after else 'before'}.{name} must be {what}")

    text, count = (lambda v: isinstance(v, str)), (lambda v: _is_int(v) and v >= 0)
    if change.action == Action.DELETE:
        need(before, "id", count, "an id")
        need(before, "records", count, "a count")
        return
    if change.action == Action.MOVE_RECORDS:
        need(before, "records", count, "a count")
        need(after, "stage", lambda v: isinstance(v, str) and bool(v), "a stage key")
        return
    need(after, "name", text, "text")
    need(after, "sort", count, "a sort value")
    if change.kind == Kind.PIPELINE:
        if change.action != Action.CREATE:
            need(after, "id", count, "a pipeline id")
        return
    need(after, "semantics", lambda v: v in SEMANTICS, f"one of {', '.join(SEMANTICS)}")
    if after.get("color") is not None:
        need(after, "color", lambda v: isinstance(v, str) and bool(re.fullmatch(r"#[0-9A-Fa-f]{6}", v)), "a colour #RRGGBB")
    if change.action != Action.CREATE:
        need(after, "id", count, "a status id")
