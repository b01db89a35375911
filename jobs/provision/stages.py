"""Stages as provisioning compares them: one ``Stage`` per deal stage or lead status, and ``StageList``,
the ordered stages of the lead statuses or of one pipeline (desired from the config, actual from the portal).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jobs.provision.changes import Kind
from mappings.config import StageConfig, stage_sorts

SEMANTICS_CODE = {"process": "", "success": "S", "failure": "F"}
SEMANTICS_NAME = {None: "process", "": "process", "S": "success", "F": "failure"}


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
class StageList:
    """One ordered set of stages: the lead statuses or one pipeline's stages, with its record moves."""

    kind: Kind  # Kind.LEAD_STATUS or Kind.STAGE
    name: str  # "leads" or the pipeline key
    stages: list[Stage]
    moves: dict[str, str]

    def path(self, code: str) -> str:
        """The change key of a stage of this list."""
        return code if self.kind == Kind.LEAD_STATUS else f"{self.name}/{code}"


def desired_stages(kind: Kind, name: str, stages: list[StageConfig], moves: dict[str, str]) -> StageList:
    """The declared stages with their derived sort values."""
    sorts = stage_sorts(stages)
    return StageList(kind, name, [Stage(s.key, s.name, n, s.semantics, s.color) for s, n in zip(stages, sorts)], dict(moves))


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
