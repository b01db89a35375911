"""The Bitrix24 reply envelope: the only place that reads or writes result/total/next/time/error.

The client parses replies with ``parse_reply``; the emulator builds them with ``success_body`` and
``error_body``, so both sides agree on one shape (including PHP's ``[]`` for an empty object).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from connector import errors


@dataclass(frozen=True)
class Reply:
    """A successful reply: ``result`` plus the list and timing metadata when present."""

    result: Any
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] = field(default_factory=dict)

    @property
    def operating(self) -> float:
        """Seconds of operating time the portal has charged this method in its 10-minute window."""
        return _as_float(self.time.get("operating")) if isinstance(self.time, dict) else 0.0

    @property
    def operating_reset_at(self) -> float | None:
        """Unix time at which the oldest operating-time bucket of this method drops out."""
        value = self.time.get("operating_reset_at") if isinstance(self.time, dict) else None
        return _as_float(value) if value not in (None, "") else None


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _as_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def decode_body(body: bytes | str) -> Any | None:
    """Decode a JSON body; None when it is not JSON (HTML page, truncated body)."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def parse_reply(status: int, body: bytes | str, method: str = "") -> Reply:
    """Parse an HTTP reply into a ``Reply`` or raise the classified error.

    A 200 body without ``result`` or with ``error`` is an error too: some proxies answer 200 with
    an error page, and a truncated body must never pass for an empty result.
    """
    data = decode_body(body)
    if not isinstance(data, dict):
        raise errors.classify(status, None, method)
    if "error" in data or status >= 400:
        if "error" not in data:
            raise errors.classify(status, None, method)
        retry_at = None
        if isinstance(data.get("time"), dict):
            retry_at = _as_float(data["time"].get("operating_reset_at")) or None
        raise errors.classify(status, data, method, retry_at=retry_at)
    if "result" not in data:
        raise errors.classify(status, None, method)
    return reply_from_dict(data)


def reply_from_dict(data: dict[str, Any]) -> Reply:
    """Build a Reply from an already decoded success envelope."""
    time_block = data.get("time")
    return Reply(
        result=data["result"],
        total=_as_int(data.get("total")),
        next=_as_int(data.get("next")),
        time=time_block if isinstance(time_block, dict) else {},
    )


# ---------------------------------------------------------------- server side (emulator)


def php_value(value: Any) -> Any:
    """Copy PHP's JSON quirk: an empty associative array (dict) is serialised as ``[]``."""
    if isinstance(value, dict):
        if not value:
            return []
        return {k: php_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [php_value(v) for v in value]
    return value


def time_block(
    start: float,
    finish: float,
    tz: timezone,
    *,
    processing: float | None = None,
    operating: float | None = None,
    operating_reset_at: int | None = None,
) -> dict[str, Any]:
    """The ``time`` block of a reply, with ISO dates in the portal's offset."""
    block: dict[str, Any] = {
        "start": round(start, 6),
        "finish": round(finish, 6),
        "duration": round(finish - start, 6),
        "processing": round(processing if processing is not None else finish - start, 6),
        "date_start": datetime.fromtimestamp(start, tz).isoformat(timespec="seconds"),
        "date_finish": datetime.fromtimestamp(finish, tz).isoformat(timespec="seconds"),
    }
    if operating_reset_at is not None:
        block["operating_reset_at"] = operating_reset_at
    if operating is not None:
        block["operating"] = round(operating, 6)
    return block


def success_body(
    result: Any,
    *,
    total: int | None = None,
    next: int | None = None,
    time: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A success envelope with the real key order: result, next, total, time."""
    body: dict[str, Any] = {"result": php_value(result)}
    if next is not None:
        body["next"] = next
    if total is not None:
        body["total"] = total
    if time is not None:
        body["time"] = time
    return body


def error_body(code: str | int, description: str) -> dict[str, Any]:
    """An error envelope."""
    return {"error": code, "error_description": description}


def dumps(body: Any) -> bytes:
    """Serialise a body as the portal does (UTF-8, non-ASCII kept as is)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_offset(text: str) -> timezone:
    """``+03:00`` -> a fixed timezone."""
    sign = -1 if text.startswith("-") else 1
    hours, _, minutes = text.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
