"""Deal pipelines, stages, lead statuses and the other crm.status dictionaries of the emulated portal.

``install_defaults`` builds what a fresh Russian-language portal has; the small helpers below
answer stage questions (semantics, first stage, stage order) for the CRM handlers and the seeder.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from connector.catalog import DEAL, DEAL_STAGE, LEAD, LEAD_STATUS, QUOTE, stage_entity_id, stage_prefix  # noqa: F401 (re-exported for the handlers)

if TYPE_CHECKING:
    from connector.emulator.state import Portal

DEFAULT_CATEGORY_NAME = "Общая"
DEFAULT_CATEGORY_SORT = 0

# (STATUS_ID suffix, NAME, SORT, COLOR, SEMANTICS, SYSTEM) of the deal stage template; a new
# pipeline N gets the same rows with a ``C{N}:`` prefix.
DEAL_STAGE_TEMPLATE: tuple[tuple[str, str, int, str, str | None, str], ...] = (
    ("NEW", "Новая", 10, "#39A8EF", None, "Y"),
    ("PREPARATION", "Подготовка документов", 20, "#2FC6F6", None, "N"),
    ("PREPAYMENT_INVOICE", "Счёт на предоплату", 30, "#55D0E0", None, "N"),
    ("EXECUTING", "В работе", 40, "#47E4C2", None, "N"),
    ("FINAL_INVOICE", "Финальный счёт", 50, "#FFA900", None, "N"),
    ("WON", "Сделка успешна", 60, "#7BD500", "S", "Y"),
    ("LOSE", "Сделка провалена", 70, "#FF5752", "F", "Y"),
    ("APOLOGY", "Анализ причины провала", 80, "#FF5752", "F", "N"),
)

LEAD_STATUS_TEMPLATE: tuple[tuple[str, str, int, str, str | None, str], ...] = (
    ("NEW", "Не обработан", 10, "#39A8EF", None, "Y"),
    ("IN_PROCESS", "В работе", 20, "#2FC6F6", None, "N"),
    ("PROCESSED", "Обработан", 30, "#55D0E0", None, "N"),
    ("CONVERTED", "Качественный лид", 40, "#7BD500", "S", "Y"),
    ("JUNK", "Некачественный лид", 50, "#FF5752", "F", "Y"),
)

# Other dictionaries as CCrmStatus installs them: ENTITY_ID -> [(STATUS_ID, NAME, SORT, SYSTEM)].
DICTIONARIES: dict[str, tuple[tuple[str, str, int, str], ...]] = {
    "SOURCE": (
        ("CALL", "Звонок", 10, "Y"),
        ("EMAIL", "Электронная почта", 20, "N"),
        ("WEB", "Веб-сайт", 30, "N"),
        ("ADVERTISING", "Реклама", 40, "N"),
        ("PARTNER", "Существующий клиент", 50, "N"),
        ("RECOMMENDATION", "По рекомендации", 60, "N"),
        ("TRADE_SHOW", "Выставка", 70, "N"),
        ("WEBFORM", "CRM-форма", 75, "Y"),
        ("CALLBACK", "Обратный звонок", 77, "Y"),
        ("RC_GENERATOR", "Генератор продаж", 78, "Y"),
        ("STORE", "Интернет-магазин", 79, "Y"),
        ("OTHER", "Другое", 80, "N"),
    ),
    "CONTACT_TYPE": (
        ("CLIENT", "Клиенты", 10, "N"),
        ("SUPPLIER", "Поставщики", 20, "N"),
        ("PARTNER", "Партнеры", 30, "N"),
        ("OTHER", "Другое", 40, "N"),
    ),
    "COMPANY_TYPE": (
        ("CUSTOMER", "Клиент", 10, "N"),
        ("SUPPLIER", "Поставщик", 20, "N"),
        ("COMPETITOR", "Конкурент", 30, "N"),
        ("PARTNER", "Партнер", 40, "N"),
        ("OTHER", "Другое", 50, "N"),
    ),
    "EMPLOYEES": (
        ("EMPLOYEES_1", "менее 50", 10, "Y"),
        ("EMPLOYEES_2", "50-250", 20, "N"),
        ("EMPLOYEES_3", "250-500", 30, "N"),
        ("EMPLOYEES_4", "более 500", 40, "N"),
    ),
    "INDUSTRY": (
        ("IT", "Информационные технологии", 10, "N"),
        ("TELECOM", "Телекоммуникации и связь", 20, "N"),
        ("MANUFACTURING", "Производство", 30, "N"),
        ("BANKING", "Банковские услуги", 40, "N"),
        ("CONSULTING", "Консалтинг", 50, "N"),
        ("FINANCE", "Финансы", 60, "N"),
        ("GOVERNMENT", "Правительство", 70, "N"),
        ("DELIVERY", "Доставка", 80, "N"),
        ("ENTERTAINMENT", "Развлечения", 90, "N"),
        ("NOTPROFIT", "Не для получения прибыли", 100, "N"),
        ("OTHER", "Другое", 110, "N"),
    ),
    "DEAL_TYPE": (
        ("SALE", "Продажа", 10, "N"),
        ("COMPLEX", "Комплексная продажа", 20, "N"),
        ("GOODS", "Продажа товара", 30, "N"),
        ("SERVICES", "Продажа услуги", 40, "N"),
        ("SERVICE", "Сервисное обслуживание", 50, "N"),
    ),
    "CALL_LIST": (
        ("IN_WORK", "В работе", 10, "Y"),
        ("SUCCESS", "Успешный", 20, "Y"),
        ("WRONG_NUMBER", "Неверный номер", 30, "Y"),
        ("STOP_CALLING", "Больше не звонить", 40, "Y"),
    ),
}

QUOTE_STATUS_TEMPLATE: tuple[tuple[str, str, int, str, str | None, str], ...] = (
    ("DRAFT", "Новое", 10, "#39A8EF", None, "Y"),
    ("SENT", "Отправлено клиенту", 20, "#2FC6F6", None, "N"),
    ("APPROVED", "Одобрено", 30, "#7BD500", "S", "Y"),
    ("DECLAINED", "Отклонено", 40, "#FF5752", "F", "Y"),
    ("APOLOGY", "Анализ причины провала", 50, "#FF5752", "F", "N"),
)

# crm.status.entity.types: (ID, NAME, extra keys) in the portal's order; deal stages are inserted
# after DEAL_TYPE (one entry per pipeline once there is more than one), the rest follow.
ENTITY_TYPES_HEAD: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("STATUS", "Стадии лидов", {
        "SEMANTIC_INFO": {"START_FIELD": "NEW", "FINAL_SUCCESS_FIELD": "CONVERTED",
                          "FINAL_UNSUCCESS_FIELD": "JUNK", "FINAL_SORT": 0},
        "ENTITY_TYPE_ID": LEAD,
    }),
    ("SOURCE", "Источники", {}),
    ("CONTACT_TYPE", "Тип контакта", {}),
    ("COMPANY_TYPE", "Тип компании", {}),
    ("EMPLOYEES", "Кол-во сотрудников", {}),
    ("INDUSTRY", "Сфера деятельности", {}),
    ("DEAL_TYPE", "Тип сделки", {}),
)
ENTITY_TYPES_TAIL: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("QUOTE_STATUS", "Стадии предложений", {
        "SEMANTIC_INFO": {"START_FIELD": "DRAFT", "FINAL_SUCCESS_FIELD": "APPROVED",
                          "FINAL_UNSUCCESS_FIELD": "DECLAINED", "FINAL_SORT": 0},
        "ENTITY_TYPE_ID": QUOTE,
    }),
    ("HONORIFIC", "Обращения", {}),
    ("CALL_LIST", "Статусы обзвона", {}),
)
DEAL_STAGES_TYPE_NAME = "Стадии сделок"

LEAD_ENTITY = LEAD_STATUS
DEAL_ENTITY = DEAL_STAGE
QUOTE_ENTITY = "QUOTE_STATUS"
FIXED_ENTITIES = frozenset(
    [key for key, _, _ in ENTITY_TYPES_HEAD] + [key for key, _, _ in ENTITY_TYPES_TAIL]
)
_DEAL_ENTITY_RE = re.compile(r"^DEAL_STAGE(?:_(\d+))?$")
_PREFIX_RE = re.compile(r"^C(\d+):")

EXTRA_SEMANTICS = {None: "process", "S": "success", "F": "failure"}


# ---------------------------------------------------------------------------- naming


def category_of_entity(entity_id: str) -> int | None:
    """The deal pipeline id of a stage ENTITY_ID (``DEAL_STAGE_3`` -> 3), None for other dictionaries."""
    match = _DEAL_ENTITY_RE.match(entity_id or "")
    if match is None:
        return None
    return int(match.group(1) or 0)


def category_of_stage(status_id: str) -> int:
    """The pipeline a deal STATUS_ID belongs to by its prefix (``C5:NEW`` -> 5, ``NEW`` -> 0)."""
    match = _PREFIX_RE.match(status_id or "")
    return int(match.group(1)) if match else 0


# ---------------------------------------------------------------------------- index

# Per-portal lookup tables, rebuilt when ``touch`` is called or the status set changes size. Keyed
# by id() of the portal's statuses container: an entry holds that container (``source``), so the id
# cannot be reused while the entry lives. A plain dict because every CRM write reads it several times.
_INDEX: "dict[int, _Index]" = {}
_INDEX_MAX = 64  # containers of discarded portals are forgotten when there are more


class _Index:
    """(ENTITY_ID, STATUS_ID) -> row, and rows of each ENTITY_ID sorted by SORT."""

    def __init__(self, portal: "Portal"):
        self.version = portal.extra.get("statuses_version", 0)
        self.size = len(portal.statuses)
        self.source = portal.statuses
        self.by_code: dict[tuple[str, str], dict[str, Any]] = {}
        self.deal_stage: dict[str, dict[str, Any]] = {}
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in portal.statuses.values():
            entity = row["ENTITY_ID"]
            self.by_code[(entity, row["STATUS_ID"])] = row
            if category_of_entity(entity) is not None:
                self.deal_stage[row["STATUS_ID"]] = row
            grouped.setdefault(entity, []).append(row)
        self.sorted: dict[str, list[dict[str, Any]]] = {
            entity: sorted(rows, key=sort_key) for entity, rows in grouped.items()
        }

    def fresh(self, portal: "Portal") -> bool:
        return (
            self.source is portal.statuses
            and self.size == len(portal.statuses)
            and self.version == portal.extra.get("statuses_version", 0)
        )


def sort_key(row: dict[str, Any]) -> tuple[int, int]:
    """Order of crm.status rows inside one dictionary: SORT, then ID."""
    return int(row["SORT"]), int(row["ID"])


def _index(portal: "Portal") -> _Index:
    index = _INDEX.get(id(portal.statuses))
    if (
        index is None
        or index.size != len(portal.statuses)
        or index.version != portal.extra.get("statuses_version", 0)
    ):  # ``fresh`` inlined (the entry's source is portal.statuses by its key)
        if index is None and len(_INDEX) >= _INDEX_MAX:
            _INDEX.clear()
        index = _Index(portal)
        _INDEX[id(portal.statuses)] = index
    return index


def touch(portal: "Portal") -> None:
    """Mark the status dictionaries as changed (call after any add/update/delete of a status row)."""
    portal.extra["statuses_version"] = portal.extra.get("statuses_version", 0) + 1


# ---------------------------------------------------------------------------- helpers for other modules


def stage_row(portal: "Portal", entity: str, status_id: str | None) -> dict[str, Any] | None:
    """The crm.status row of a deal stage (any pipeline) or a lead status; None if unknown.

    ``entity`` is "deal" or "lead".
    """
    if not status_id:
        return None
    index = _index(portal)
    if entity == "lead":
        return index.by_code.get((LEAD_ENTITY, status_id))
    if entity == "deal":
        return index.deal_stage.get(status_id)
    raise ValueError(f"entity {entity!r} has no stages")


def entity_status(portal: "Portal", entity_id: str, status_id: str) -> dict[str, Any] | None:
    """The row of any dictionary by its ENTITY_ID and STATUS_ID; None if absent."""
    return _index(portal).by_code.get((entity_id, status_id))


def semantic_id(portal: "Portal", entity: str, status_id: str | None) -> str:
    """``P`` (in progress), ``S`` (success) or ``F`` (failure) of a stage; unknown stages count as P."""
    row = stage_row(portal, entity, status_id)
    if row is None or not row.get("SEMANTICS"):
        return "P"
    return row["SEMANTICS"]


def stages_of(portal: "Portal", category_id: int | str | None) -> list[dict[str, Any]]:
    """Stages of a deal pipeline sorted by SORT (then ID); empty for an unknown pipeline."""
    return list(_index(portal).sorted.get(stage_entity_id(category_id), ()))


def entity_rows(portal: "Portal", entity_id: str) -> list[dict[str, Any]]:
    """Rows of any crm.status dictionary (``SOURCE``, ``STATUS``, ``DEAL_STAGE_2``...) sorted by SORT."""
    return list(_index(portal).sorted.get(entity_id, ()))


def lead_statuses(portal: "Portal") -> list[dict[str, Any]]:
    """Lead statuses (ENTITY_ID ``STATUS``) sorted by SORT."""
    return entity_rows(portal, LEAD_ENTITY)


def first_stage(portal: "Portal", category_id: int | str | None) -> str:
    """STATUS_ID of the first in-progress stage of a deal pipeline (where a new deal starts)."""
    stages = _index(portal).sorted.get(stage_entity_id(category_id), ())
    for row in stages:
        if not row.get("SEMANTICS"):
            return row["STATUS_ID"]
    if stages:
        return stages[0]["STATUS_ID"]
    raise KeyError(f"pipeline {category_id} has no stages")


def first_lead_status(portal: "Portal") -> str:
    """STATUS_ID where a new lead starts (the first in-progress lead status)."""
    for row in lead_statuses(portal):
        if not row.get("SEMANTICS"):
            return row["STATUS_ID"]
    return "NEW"


def category_exists(portal: "Portal", category_id: int | str | None) -> bool:
    """True when a deal pipeline with this id exists (0 always does on a portal with defaults)."""
    try:
        return int(category_id or 0) in portal.categories
    except (TypeError, ValueError):
        return False


def is_known_entity(portal: "Portal", entity_id: str) -> bool:
    """True for dictionaries crm.status.entity.types lists: the fixed ones and the stages of existing pipelines."""
    if entity_id in FIXED_ENTITIES or entity_id == DEAL_ENTITY:
        return True
    category = category_of_entity(entity_id)
    return bool(category) and category_exists(portal, category) and entity_id == stage_entity_id(category)


def is_stage_entity(entity_id: str) -> bool:
    """True for dictionaries with semantics (lead statuses, deal stages, quote statuses)."""
    return entity_id in (LEAD_ENTITY, QUOTE_ENTITY) or category_of_entity(entity_id) is not None


def categories_sorted(portal: "Portal") -> list[dict[str, Any]]:
    """Deal pipelines in the portal's order: by sort, then id (the default one is placed by its sort too)."""
    return sorted(portal.categories.values(), key=lambda c: (int(c["sort"]), int(c["id"])))


def entity_types(portal: "Portal") -> list[dict[str, Any]]:
    """crm.status.entity.types as the portal lists it, with one entry per deal pipeline once there are several."""
    rows: list[dict[str, Any]] = [{"ID": key, "NAME": name, **extra} for key, name, extra in ENTITY_TYPES_HEAD]
    if len(portal.categories) <= 1:
        rows.append(_deal_stage_type(0, DEAL_STAGES_TYPE_NAME))
    else:
        for category in categories_sorted(portal):
            rows.append(_deal_stage_type(category["id"], f"{DEAL_STAGES_TYPE_NAME} ({category['name']})"))
    rows.extend({"ID": key, "NAME": name, **extra} for key, name, extra in ENTITY_TYPES_TAIL)
    return rows


def _deal_stage_type(category_id: int, name: str) -> dict[str, Any]:
    prefix = stage_prefix(category_id)
    info = {"START_FIELD": f"{prefix}NEW", "FINAL_SUCCESS_FIELD": f"{prefix}WON",
            "FINAL_UNSUCCESS_FIELD": f"{prefix}LOSE", "FINAL_SORT": 0}
    if category_id == 0:
        return {"ID": DEAL_ENTITY, "NAME": name, "SEMANTIC_INFO": info, "FIELD_ATTRIBUTE_SCOPE": "",
                "ENTITY_TYPE_ID": DEAL, "CATEGORY_ID": 0}
    return {"ID": stage_entity_id(category_id), "NAME": name, "PARENT_ID": DEAL_ENTITY, "SEMANTIC_INFO": info,
            "PREFIX": f"C{category_id}", "FIELD_ATTRIBUTE_SCOPE": f"category_{category_id}",
            "ENTITY_TYPE_ID": DEAL, "CATEGORY_ID": str(category_id)}


# ---------------------------------------------------------------------------- rows


def refresh_extra(portal: "Portal", entity_id: str) -> None:
    """Recompute ``EXTRA`` of a stage dictionary: the first failure stage is "failure", later ones "apology"."""
    if not is_stage_entity(entity_id):
        return
    seen_failure = False
    for row in sorted((r for r in portal.statuses.values() if r["ENTITY_ID"] == entity_id), key=sort_key):
        semantics = row.get("SEMANTICS")
        label = EXTRA_SEMANTICS.get(semantics, "process")
        if semantics == "F":
            label = "apology" if seen_failure else "failure"
            seen_failure = True
        row["EXTRA"] = {"SEMANTICS": label, "COLOR": row.get("COLOR")}


def new_status_row(
    portal: "Portal",
    entity_id: str,
    status_id: str,
    name: str,
    *,
    sort: int = 10,
    color: str | None = None,
    semantics: str | None = None,
    system: bool = False,
) -> dict[str, Any]:
    """Create and store one crm.status row; returns it. Callers validate; this only builds the shape."""
    category = category_of_entity(entity_id)
    row_id = portal.next_id("status")
    row: dict[str, Any] = {
        "ID": str(row_id),
        "ENTITY_ID": entity_id,
        "STATUS_ID": status_id,
        "NAME": name,
        "NAME_INIT": name if system else "",
        "SORT": str(int(sort)),
        "SYSTEM": "Y" if system else "N",
        "CATEGORY_ID": str(category) if category else None,
        "COLOR": color,
        "SEMANTICS": semantics or None,
    }
    portal.statuses[row_id] = row
    if is_stage_entity(entity_id):
        refresh_extra(portal, entity_id)
    touch(portal)
    return row


def install_stage_template(portal: "Portal", category_id: int) -> list[dict[str, Any]]:
    """Give a deal pipeline the default stage set (``C{N}:``-prefixed for N > 0)."""
    entity_id = stage_entity_id(category_id)
    prefix = stage_prefix(category_id)
    return [
        new_status_row(portal, entity_id, prefix + code, name, sort=sort, color=color,
                       semantics=semantics, system=system == "Y")
        for code, name, sort, color, semantics, system in DEAL_STAGE_TEMPLATE
    ]


def new_category(portal: "Portal", name: str, sort: int) -> dict[str, Any]:
    """Create a deal pipeline with its default stages; returns the category object."""
    category_id = portal.next_id("category")
    category = {
        "id": category_id,
        "name": name,
        "sort": sort,
        "entityTypeId": DEAL,
        "isDefault": "N",
        "originId": "",
        "originatorId": "",
    }
    portal.categories[category_id] = category
    install_stage_template(portal, category_id)
    return category


def remove_category(portal: "Portal", category_id: int) -> None:
    """Delete a deal pipeline and every stage of it (callers check the rules first)."""
    entity_id = stage_entity_id(category_id)
    for row_id in [k for k, row in portal.statuses.items() if row["ENTITY_ID"] == entity_id]:
        del portal.statuses[row_id]
    portal.categories.pop(category_id, None)
    touch(portal)


def install_defaults(portal: "Portal") -> None:
    """Install what a fresh Russian-language portal has: pipeline 0 with its stages, lead statuses, dictionaries."""
    with portal.lock:
        portal.categories[0] = {
            "id": 0,
            "name": DEFAULT_CATEGORY_NAME,
            "sort": DEFAULT_CATEGORY_SORT,
            "entityTypeId": DEAL,
            "isDefault": "Y",
        }
        for code, name, sort, color, semantics, system in LEAD_STATUS_TEMPLATE:
            new_status_row(portal, LEAD_ENTITY, code, name, sort=sort, color=color,
                           semantics=semantics, system=system == "Y")
        install_stage_template(portal, 0)
        for code, name, sort, color, semantics, system in QUOTE_STATUS_TEMPLATE:
            new_status_row(portal, QUOTE_ENTITY, code, name, sort=sort, color=color,
                           semantics=semantics, system=system == "Y")
        for entity_id, items in DICTIONARIES.items():
            for code, name, sort, system in items:
                new_status_row(portal, entity_id, code, name, sort=sort, system=system == "Y")
