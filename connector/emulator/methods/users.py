"""Employees of the emulated portal: user.get, user.current, profile, server.time, and the default admin.

Rows in ``portal.users`` are kept exactly as user.get returns them (ID a string, ACTIVE a boolean,
UF_DEPARTMENT a list of ints, empty dates as ``{}`` which the envelope prints as ``[]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.emulator import costs, query
from connector.emulator.registry import Call, Result, method

if TYPE_CHECKING:
    from connector.emulator.state import Portal

# user.get filter/sort fields and how they compare
USER_KINDS: dict[str, str] = {
    "ID": "int",
    "ACTIVE": "bool",
    "NAME": "string",
    "LAST_NAME": "string",
    "SECOND_NAME": "string",
    "EMAIL": "string",
    "LAST_LOGIN": "datetime",
    "DATE_REGISTER": "datetime",
    "TIME_ZONE": "string",
    "IS_ONLINE": "char",
    "PERSONAL_GENDER": "string",
    "PERSONAL_WWW": "string",
    "PERSONAL_BIRTHDAY": "datetime",
    "PERSONAL_MOBILE": "string",
    "PERSONAL_CITY": "string",
    "WORK_PHONE": "string",
    "WORK_POSITION": "string",
    "UF_EMPLOYMENT_DATE": "datetime",
    "UF_DEPARTMENT": "int",
    "UF_PHONE_INNER": "string",
    "USER_TYPE": "string",
}
# parameters of user.get that are not filter keys
_RESERVED = {"SORT", "ORDER", "START", "FILTER", "ADMIN_MODE", "AUTH", "SELECT"}
_SEARCHED = ("NAME", "LAST_NAME", "SECOND_NAME", "EMAIL", "WORK_POSITION")


def new_user(
    portal: "Portal",
    *,
    name: str,
    last_name: str,
    email: str | None = None,
    position: str = "",
    second_name: str = "",
    department: int = 1,
    active: bool = True,
    gender: str = "",
) -> dict[str, Any]:
    """Create an employee row (as user.get returns it) with the next user ID; returns the row.

    The seed generator uses this for managers; timestamps come from the portal clock.
    """
    with portal.lock:
        user_id = max(portal.users, default=0) + 1
        portal.seq["user"] = max(portal.seq.get("user", 0), user_id)
        now = portal.now_text()
        row: dict[str, Any] = {
            "ID": str(user_id),
            "XML_ID": f"user-{user_id}",
            "ACTIVE": active,
            "NAME": name,
            "LAST_NAME": last_name,
            "SECOND_NAME": second_name,
            "EMAIL": email or f"user{user_id}@example.ru",
            "LAST_LOGIN": now,
            "DATE_REGISTER": portal.format_time(portal.now().replace(hour=0, minute=0, second=0)),
            "TIME_ZONE": "",
            "IS_ONLINE": "N",
            "TIMESTAMP_X": {},
            "LAST_ACTIVITY_DATE": {},
            "PERSONAL_GENDER": gender,
            "PERSONAL_WWW": "",
            "PERSONAL_BIRTHDAY": "",
            "PERSONAL_MOBILE": "",
            "PERSONAL_CITY": "",
            "WORK_PHONE": "",
            "WORK_POSITION": position,
            "UF_EMPLOYMENT_DATE": "",
            "UF_DEPARTMENT": [department],
            "UF_PHONE_INNER": "",
            "USER_TYPE": "employee",
        }
        portal.users[user_id] = row
        return row


def install_defaults(portal: "Portal") -> None:
    """Create the portal administrator, user 1 (the owner of the default webhook)."""
    with portal.lock:
        if 1 not in portal.users:
            new_user(
                portal,
                name="Андрей",
                last_name="Соколов",
                email="admin@example.ru",
                position="Руководитель отдела продаж",
                gender="M",
            )
        portal.extra.setdefault("admins", [1])


def _copy(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in row.items()}


@method("user.get", scope="user")
def user_get(call: Call) -> Result:
    """user.get: filter keys at the top level or in FILTER, ``sort``/``order``, 50-row pages from ``start``."""
    portal = call.portal
    raw_filter: dict[str, Any] = {k: v for k, v in call.params.items() if str(k).upper() not in _RESERVED}
    raw_filter.update(query.as_mapping(call.param("filter"), "filter"))
    search = next((v for k, v in list(raw_filter.items()) if str(k).upper() == "NAME_SEARCH"), None)
    raw_filter = {k: v for k, v in raw_filter.items() if str(k).upper() != "NAME_SEARCH"}
    schema = query.Schema(USER_KINDS, query.upper_resolver(USER_KINDS), tz=portal.tz, plain_like=True)
    flt = query.compile_filter(raw_filter, schema)
    sort, direction = call.param("sort"), call.param("order")
    if isinstance(direction, dict):  # order given as {FIELD: DIR}
        order = query.compile_order(direction, schema)
    else:
        order = query.compile_order({str(sort or "ID"): str(direction or "ASC")}, schema)
    with portal.lock:
        rows = [portal.users[k] for k in sorted(portal.users)]
        if search:
            needle = str(search).casefold()
            rows = [r for r in rows if any(needle in str(r.get(f) or "").casefold() for f in _SEARCHED)]
        source = query.Source(rows, key=lambda row: int(row["ID"]))
        page = query.paginate(source, flt, order, query.parse_start(call.param("start")))
        call.charge(page.cost())
        result = [_copy(row) for row in page.rows]
    return Result(result, page.total, page.next)


@method("user.current", scope="user")
def user_current(call: Call) -> dict[str, Any]:
    """user.current: the row of the user the webhook or token acts for."""
    with call.portal.lock:
        call.charge(costs.CALL)
        row = call.portal.users.get(call.user_id)
        return _copy(row) if row else {}


@method("profile", scope="basic")
def profile(call: Call) -> dict[str, Any]:
    """profile: a short card of the current user with the ADMIN flag."""
    portal = call.portal
    with portal.lock:
        call.charge(costs.CALL)
        row = portal.users.get(call.user_id) or {}
        offset = portal.now().utcoffset()
        return {
            "ID": str(call.user_id),
            "ADMIN": call.user_id in portal.extra.get("admins", [1]),
            "NAME": row.get("NAME", ""),
            "LAST_NAME": row.get("LAST_NAME", ""),
            "PERSONAL_GENDER": row.get("PERSONAL_GENDER", ""),
            "PERSONAL_PHOTO": "",
            "TIME_ZONE": row.get("TIME_ZONE", ""),
            "TIME_ZONE_OFFSET": int(offset.total_seconds()) if offset else 0,
        }


@method("server.time", scope="basic")
def server_time(call: Call) -> str:
    """server.time: the portal's current time in ISO 8601 with its offset."""
    call.charge(costs.CALL)
    return call.portal.now_text()
