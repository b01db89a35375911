"""How the record methods read ``id``, ``fields`` and ``auth_connector``, word their errors, and register.

Legacy crm.<entity>.* and crm.item.* refuse the same things in different words (``ErrorStyle``);
``register_per_entity`` registers one family of handlers under every entity's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connector.emulator.records.fields import ENTITIES, Entity, Field
from connector.emulator.registry import ApiError, Call, method


class ErrorStyle:
    """How a family of methods words its errors (legacy crm.deal.* vs crm.item.*)."""

    def __init__(self, item: bool):
        self.item = item

    def invalid(self, spec: Field) -> ApiError:
        """The error for a value a field refuses."""
        if self.item:
            return ApiError("CRM_FIELD_ERROR_VALUE_NOT_VALID", f'Invalid value for field "{spec.title}"', 400)
        return ApiError("", f'Invalid value for the "{spec.title}" field', 400)

    def not_found(self) -> ApiError:
        """The error for a record that does not exist."""
        if self.item:
            return ApiError("NOT_FOUND", "Element not found", 400)
        return ApiError("", "Not found", 400)


LEGACY = ErrorStyle(item=False)
ITEM = ErrorStyle(item=True)


def id_param(call: Call, style: ErrorStyle = LEGACY) -> int:
    """The positive integer ``id`` parameter, or the style's error."""
    raw = call.param("id")
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        if style.item:
            raise style.not_found()
        raise ApiError("", "ID is not defined or invalid.", 400)
    return value


def connector_key(call: Call) -> str | None:
    """The call's ``auth_connector`` key: offline bindings with that key do not queue this write."""
    value = call.param("auth_connector")
    return None if value in (None, "") else str(value)


def fields_param(call: Call) -> dict[str, Any]:
    """The ``fields`` parameter as a dict (an empty PHP array is {})."""
    raw = call.param("fields")
    if isinstance(raw, dict):
        return raw
    if raw == [] or raw == [""]:
        return {}
    raise ApiError("", "Parameter 'fields' must be array.", 400)


def register_per_entity(handlers: Mapping[str, Callable[[Call, Entity], Any]]) -> None:
    """Register ``crm.<entity>.<suffix>`` for every entity and every ``suffix: handler(call, entity)``."""
    for entity in ENTITIES.values():
        for suffix, handler in handlers.items():
            def bound(call: Call, _handler: Any = handler, _entity: Entity = entity) -> Any:
                return _handler(call, _entity)

            bound.__doc__ = f"crm.{entity.name}.{suffix}"
            method(f"crm.{entity.name}.{suffix}")(bound)
