"""A portal's funnels as a config file: ``export`` writes TOML (with comments) that ``plan`` reads back as
no changes on the same portal, and that ``apply`` can take to another portal.
"""

from __future__ import annotations

from typing import Any

import tomli_w

from connector.catalog import LEAD_STATUS, stage_entity_id, stage_prefix
from jobs.provision.identity import portal_key
from jobs.provision.snapshot import Snapshot, read_snapshot
from jobs.provision.stages import Stage, actual_stages
from mappings.config import PIPELINE_SORT_STEP, SORT_STEP

_GROUP_TITLES = {"process": "in progress", "success": "success (exactly one)", "failure": "failure"}


def export(client: Any) -> str:
    """The portal's lead statuses and deal pipelines, read through ``client`` (a ``Bitrix24Client``),
    as a config file that ``plan`` reads back as no changes."""
    return export_snapshot(read_snapshot(client))


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
    out += _export_stages("leads.statuses", actual_stages(snapshot.rows(LEAD_STATUS), ""))
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
        out.append(f"key = {toml_value(key)}")
        if cid == 0:
            out.append("default = true            # the portal's default pipeline (id 0)")
        out.append(f"name = {toml_value(category.get('name') or '')}")
        if sort != previous + PIPELINE_SORT_STEP:
            out.append(f"sort = {toml_value(sort)}")
        previous = sort
        out.append("")
        out += _export_stages("pipelines.stages", actual_stages(snapshot.rows(stage_entity_id(cid)), stage_prefix(cid)))
    return "\n".join(out).rstrip("\n") + "\n"


def _export_stages(table: str, stages: list[Stage]) -> list[str]:
    out: list[str] = []
    previous = 0
    group = None
    for stage in stages:
        if stage.semantics != group:
            group = stage.semantics
            out.append(f"# {_GROUP_TITLES[group]}")
        out.append(f"[[{table}]]")
        out.append(f"key = {toml_value(stage.key)}")
        out.append(f"name = {toml_value(stage.name)}")
        if stage.semantics != "process":
            out.append(f"semantics = {toml_value(stage.semantics)}")
        if stage.color:
            out.append(f"color = {toml_value(stage.color)}")
        if stage.sort != previous + SORT_STEP:
            out.append(f"sort = {toml_value(stage.sort)}")
        previous = stage.sort
        out.append("")
    return out


def toml_value(value: Any) -> str:
    """One TOML value as ``tomli_w`` writes it (strings escaped as TOML requires; Cyrillic kept as is)."""
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")
