"""How Bitrix24 names the stage dictionary of a deal pipeline, shared by the client, the jobs and the emulator.

Pipeline 0 keeps its stages in ``DEAL_STAGE`` with plain STATUS_IDs (``WON``); pipeline N keeps them in
``DEAL_STAGE_N`` with the ``CN:`` prefix (``C3:WON``).
"""

from __future__ import annotations

DEAL_STAGE = "DEAL_STAGE"


def _category(category_id: int | str | None) -> int:
    return int(category_id or 0)


def stage_entity_id(category_id: int | str | None) -> str:
    """ENTITY_ID of a deal pipeline's stages: ``DEAL_STAGE`` for 0, ``DEAL_STAGE_N`` otherwise."""
    category = _category(category_id)
    return DEAL_STAGE if category == 0 else f"{DEAL_STAGE}_{category}"


def stage_prefix(category_id: int | str | None) -> str:
    """STATUS_ID prefix of a deal pipeline's stages: "" for 0, ``C{N}:`` otherwise."""
    category = _category(category_id)
    return "" if category == 0 else f"C{category}:"
