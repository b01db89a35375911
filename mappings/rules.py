"""The funnel rules of a config: what Bitrix24 demands of lead statuses and deal pipelines across fields.

Checked on the raw TOML data, so that every problem is reported even when other parts of the file
do not validate as models; ``mappings.loader`` adds their lines.
"""

from __future__ import annotations

from typing import Any

from mappings.config import (
    DEAL_KEY_MAX,
    KEY_PATTERN,
    LEAD_KEY_MAX,
    PIPELINE_KEY_MAX,
    SEMANTICS,
    SORT_STEP,
    Problem,
    derived_sorts,
)


def funnel_problems(data: dict[str, Any]) -> list[Problem]:
    """Cross-field rules of lead statuses and pipelines, checked on raw TOML data so that every
    problem is reported even when other parts of the file do not validate."""
    problems: list[Problem] = []
    leads = data.get("leads")
    if isinstance(leads, dict) and isinstance(leads.get("statuses"), list):
        problems += _funnel_rules(leads["statuses"], leads.get("move_records"), "leads", LEAD_KEY_MAX, "lead status")
    pipelines = data.get("pipelines")
    if isinstance(pipelines, list):
        problems += _pipeline_rules(pipelines)
        for i, pipeline in enumerate(pipelines):
            if isinstance(pipeline, dict) and isinstance(pipeline.get("stages"), list):
                problems += _funnel_rules(
                    pipeline["stages"], pipeline.get("move_records"), f"pipelines[{i}]", DEAL_KEY_MAX, "stage"
                )
    return problems


def _pipeline_rules(pipelines: list[Any]) -> list[Problem]:
    problems: list[Problem] = []
    keys: dict[str, int] = {}
    ids: dict[int, int] = {}
    defaults: list[int] = []
    for i, pipeline in enumerate(pipelines):
        if not isinstance(pipeline, dict):
            continue
        where = f"pipelines[{i}]"
        key = pipeline.get("key")
        if isinstance(key, str):
            if key.lower() in keys:
                problems.append(
                    Problem(f"{where}.key", f"duplicate pipeline key {key!r} (first used by pipelines[{keys[key.lower()]}])")
                )
            else:
                keys[key.lower()] = i
            if len(key) > PIPELINE_KEY_MAX:
                problems.append(Problem(f"{where}.key", f"pipeline key {key!r} is longer than {PIPELINE_KEY_MAX} characters"))
        if pipeline.get("default") is True:
            defaults.append(i)
            if pipeline.get("id") is not None:
                problems.append(Problem(f"{where}.id", "the default pipeline is always id 0; remove id"))
        pin = pipeline.get("id")
        if isinstance(pin, int) and not isinstance(pin, bool):
            if pin in ids:
                problems.append(Problem(f"{where}.id", f"pipeline id {pin} is pinned twice (also pipelines[{ids[pin]}])"))
            else:
                ids[pin] = i
    if not defaults:
        problems.append(
            Problem("pipelines", "no default pipeline: exactly one must say default = true "
                    "(the portal's pipeline id 0, which always exists and cannot be deleted)")
        )
    for i in defaults[1:]:
        problems.append(
            Problem(f"pipelines[{i}].default", f"a second default pipeline; the portal has one (pipelines[{defaults[0]}])")
        )
    return problems


def _funnel_rules(
    stages: list[Any], moves: Any, where: str, key_max: int, noun: str
) -> list[Problem]:
    """Rules of one funnel: unique keys, exactly one success stage, a failure stage, the order
    in progress < success < failure, increasing sort values, and valid record moves."""
    problems: list[Problem] = []
    items = "statuses" if where == "leads" else "stages"
    plural = "lead statuses" if where == "leads" else "stages"
    seen: dict[str, int] = {}
    success: list[int] = []
    failures = 0
    processes = 0
    rank = {"process": 0, "success": 1, "failure": 2}
    highest = -1  # highest semantics rank seen so far, for the order rule
    highest_key = ""
    unknown = False
    tables = [(j, stage) for j, stage in enumerate(stages) if isinstance(stage, dict)]
    explicit = [_explicit_sort(stage.get("sort")) for _, stage in tables]
    sorts = derived_sorts(explicit, SORT_STEP)
    for n, (j, stage) in enumerate(tables):
        at = f"{where}.{items}[{j}]"
        key = stage.get("key")
        if isinstance(key, str):
            folded = key.upper()
            if folded in seen:
                problems.append(Problem(f"{at}.key", f"duplicate {noun} key {key!r} (first at {items}[{seen[folded]}])"))
            else:
                seen[folded] = j
            if KEY_PATTERN.match(key) and len(key) > key_max:
                problems.append(
                    Problem(f"{at}.key", f"{noun} key {key!r} is longer than {key_max} characters (the portal's STATUS_ID limit)")
                )
        semantics = stage.get("semantics", "process")
        if not isinstance(semantics, str) or semantics not in rank:
            unknown = True  # reported by the model; the group rules below would only echo it
        else:
            if semantics == "success":
                success.append(j)
                if len(success) == 2:
                    first = stages[success[0]].get("key", success[0])
                    problems.append(
                        Problem(f"{at}.semantics", f"a second success {noun}: the portal allows exactly one (first: {first!r})")
                    )
            elif semantics == "failure":
                failures += 1
            else:
                processes += 1
            if rank[semantics] < highest:
                problems.append(
                    Problem(
                        f"{at}.semantics",
                        f"{semantics} {noun} {key!r} comes after {SEMANTICS[highest]} {noun} {highest_key!r}: "
                        "Bitrix24 orders in progress, then success, then failure",
                    )
                )
            elif rank[semantics] > highest:
                highest, highest_key = rank[semantics], key
        sort = explicit[n]
        if sort is not None and n > 0 and 0 <= sort < sorts[n - 1]:
            problems.append(
                Problem(f"{at}.sort", f"sort {sort} is lower than the previous {noun}'s {sorts[n - 1]} (order = position in the file)")
            )
    if stages and not unknown:
        if not success:
            problems.append(Problem(f"{where}.{items}", f"no success {noun}: the portal needs exactly one (semantics = \"success\")"))
        if not failures:
            problems.append(Problem(f"{where}.{items}", f"no failure {noun}: the portal needs at least one (semantics = \"failure\")"))
        if not processes:
            problems.append(Problem(f"{where}.{items}", f"no in-progress {noun}: the funnel needs at least one (semantics = \"process\")"))
    elif not stages:
        problems.append(Problem(f"{where}.{items}", f"no {plural} declared"))
    if isinstance(moves, dict):
        for old, new in moves.items():
            at = f"{where}.move_records.{old}"
            if not KEY_PATTERN.match(str(old)):
                problems.append(Problem(at, f"key {old!r} may only hold latin letters, digits, '_' and '-'"))
            if str(old).upper() in seen:
                problems.append(Problem(at, f"{old!r} is still declared; records are only moved off {plural} being removed"))
            if not isinstance(new, str):
                problems.append(Problem(at, "the target must be the key of a declared " + noun))
            elif new.upper() not in seen:
                problems.append(Problem(at, f"target {new!r} is not a declared {noun} of this funnel"))
    return problems


def _explicit_sort(value: Any) -> int | None:
    """A ``sort`` written in the file (an integer, not a boolean), else None (derived from the order)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
