"""The Bitrix24 reply envelope: the only place that reads or writes result/total/next/time/error.

The client parses replies with ``parse_reply`` and takes batch replies apart with ``batch_parts``;
``Reply.mapping``/``Reply.rows`` check the shape of a result where a caller reads it, so anything
that is not a Bitrix24 reply (a proxy's JSON, ``NaN``, nesting hundreds deep, a batch without its
parts) is a ``BadReplyError`` naming the method, never a ``KeyError``. The emulator builds replies
with ``success_body`` and ``error_body``, so both sides agree on one shape (PHP's ``[]`` included).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from connector import errors

# A real reply nests about ten levels (batch -> parts -> command -> rows -> row -> multi-field -> value);
# anything far deeper comes from something else and could exhaust a recursive consumer's stack.
MAX_REPLY_DEPTH = 32


@dataclass(frozen=True)
class Reply:
    """A successful reply: ``result`` plus the list and timing metadata when present.

    ``method`` names the call it answers (for error messages only). ``mapping`` and ``rows`` read
    ``result`` in the shape a caller expects, or raise ``BadReplyError``.
    """

    result: Any
    total: int | None = None
    next: int | None = None
    time: dict[str, Any] = field(default_factory=dict)
    method: str = field(default="", compare=False)

    @property
    def operating(self) -> float:
        """Seconds of operating time the portal has charged this method in its 10-minute window."""
        return _as_float(self.time.get("operating")) if isinstance(self.time, dict) else 0.0

    @property
    def operating_reset_at(self) -> float | None:
        """Unix time at which the oldest operating-time bucket of this method drops out."""
        value = self.time.get("operating_reset_at") if isinstance(self.time, dict) else None
        return _as_float(value) if value not in (None, "") else None

    def bad(self, what: str) -> errors.BadReplyError:
        """The error that says this reply is not what ``method`` answers: ``what`` says why."""
        return bad_reply(self.method, what)

    def _at(self, key: str | None) -> tuple[Any, str]:
        """``result``, or ``result[key]`` of an object result, with its place for messages."""
        if key is None:
            return self.result, "result"
        return as_mapping(self.result, self.method).get(key), f"result[{key}]"

    def mapping(self, key: str | None = None) -> dict[str, Any]:
        """``result`` (or ``result[key]``) as a mapping; PHP's ``[]`` for an empty object is ``{}``."""
        value, where = self._at(key)
        return as_mapping(value, self.method, where)

    def rows(self, key: str | None = None) -> list[dict[str, Any]]:
        """The records of a list reply: ``result`` (legacy lists) or ``result[key]`` (``items``,
        ``categories``); every row a mapping. A PHP list with holes (an object keyed 0..n) counts."""
        value, where = self._at(key)
        return as_rows(value, self.method, where)

    def counted_total(self) -> int:
        """``total`` of a counted page (``start=0``): the number of matching records."""
        if self.total is None:
            raise self.bad("a counted page without total")
        return self.total

    def integer(self) -> int:
        """``result`` as an integer (the new ID an ``*.add`` returns, a count)."""
        value = self.result
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.bad(f"result is {_kind(value)}, not an integer")
        try:
            return int(value)
        except ValueError:
            raise self.bad("result is not an integer") from None


def _kind(value: Any) -> str:
    """A short name of a JSON value's type for messages (``null``, ``a list``, ``an object``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"


def bad_reply(method: str, what: str) -> errors.BadReplyError:
    """``not a Bitrix24 reply from METHOD: WHAT``."""
    return errors.BadReplyError("", what, 200, method)


def as_mapping(value: Any, method: str, where: str = "result") -> dict[str, Any]:
    """``value`` as a dict, ``[]`` (PHP's empty object) as ``{}``; else ``BadReplyError`` naming ``method``."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list) and not value:
        return {}
    raise bad_reply(method, f"{where} is {_kind(value)}, not an object")


def as_rows(value: Any, method: str, where: str = "result") -> list[dict[str, Any]]:
    """``value`` as a list of records (an object keyed 0..n is PHP's list with holes); else ``BadReplyError``."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, list):
        raise bad_reply(method, f"{where} is {_kind(value)}, not a list of records")
    for row in value:
        if not isinstance(row, Mapping):
            raise bad_reply(method, f"{where} holds {_kind(row)} where a record belongs")
    return value


def _as_float(value: Any) -> float:
    """A finite float, else 0.0 (``1e999`` decodes to infinity, which no portal means)."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _as_int(value: Any) -> int | None:
    if value in (None, "") or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def too_deep(data: Any, limit: int = MAX_REPLY_DEPTH) -> bool:
    """True when ``data`` nests containers more than ``limit`` levels deep (checked level by level, no recursion)."""
    level = [data] if isinstance(data, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            below.extend([c for c in (node.values() if type(node) is dict else node) if type(c) is dict or type(c) is list])
        level = below
    return False


def decode_body(body: bytes | str) -> Any | None:
    """Decode a JSON body; None when it is not JSON a portal sends (HTML, truncated, ``NaN``, far too deep)."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    if body.count("[") + body.count("{") > MAX_REPLY_DEPTH and too_deep(data):
        return None
    return data


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
        retry_at = reset_at(data.get("time"))
        raise errors.classify(status, data, method, retry_at=retry_at)
    if "result" not in data:
        raise errors.classify(status, None, method)
    return reply_from_dict(data, method)


def reply_from_dict(data: dict[str, Any], method: str = "") -> Reply:
    """Build a Reply from an already decoded success envelope."""
    time_block = data.get("time")
    return Reply(
        result=data["result"],
        total=_as_int(data.get("total")),
        next=_as_int(data.get("next")),
        time=time_block if isinstance(time_block, dict) else {},
        method=method,
    )


def reset_at(block: Any) -> float | None:
    """``operating_reset_at`` of a time block, when it has a usable one."""
    if not isinstance(block, Mapping):
        return None
    return _as_float(block.get("operating_reset_at") or 0) or None


# ---------------------------------------------------------------- batch replies

BATCH_PARTS = ("result", "result_error", "result_total", "result_next", "result_time")


@dataclass
class BatchParts:
    """A batch reply taken apart: results, errors, totals, nexts and time blocks per command."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    nexts: dict[str, Any] = field(default_factory=dict)
    times: dict[str, Any] = field(default_factory=dict)
    batch_reset_at: float | None = None  # operating_reset_at of the batch reply itself

    @classmethod
    def from_reply(cls, reply: Reply) -> "BatchParts":
        """Split ``reply.result``; PHP prints an empty part, or one keyed 0..n-1, as a list.

        A reply whose ``result`` is not an object holding at least ``result`` (or ``result_error``)
        is not a batch reply: ``BadReplyError``.
        """
        body = reply.result
        if not isinstance(body, Mapping) or not ("result" in body or "result_error" in body):
            raise reply.bad("a batch reply without its result parts")

        def part(name: str) -> dict[str, Any]:
            value = body.get(name, [])
            if isinstance(value, list):
                return {str(i): v for i, v in enumerate(value)}
            if isinstance(value, Mapping):
                return dict(value)
            raise reply.bad(f"batch part {name} is {_kind(value)}")

        return cls(*(part(name) for name in BATCH_PARTS), batch_reset_at=reply.operating_reset_at)

    def error_of(self, name: str, method: str) -> errors.B24Error | None:
        """The classified error of command ``name`` (a call of ``method``), None when it has none."""
        if name not in self.errors:
            return None
        return command_error(self.errors[name], method)

    def reset_of(self, name: str) -> float | None:
        """The best ``operating_reset_at`` a failed command's error or time block carries."""
        error = self.errors.get(name)
        return (reset_at(error.get("time")) if isinstance(error, Mapping) else None) or reset_at(self.times.get(name))


def batch_parts(reply: Reply) -> BatchParts:
    """``BatchParts.from_reply``: the batch reply taken apart, or ``BadReplyError``."""
    return BatchParts.from_reply(reply)


def command_error(error: Any, method: str) -> errors.B24Error:
    """The classified error of one failed batch command."""
    body = error if isinstance(error, Mapping) else {"error": "", "error_description": str(error)}
    code = body.get("error", "")
    status = errors.HTTP_STATUS.get(code, 400) if isinstance(code, str) else 400
    return errors.classify(status, dict(body), method)


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
