"""PHP-style nested parameter encoding, shared by the client and the emulator.

Bitrix24 reads parameters the way PHP does: ``filter[>ID]=5&select[]=ID``. ``flatten``/``encode_query``
turn nested Python data into that form; ``parse_pairs``/``decode_query`` turn it back, in linear time
and within limits (``ParamError`` beyond them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote_plus

_SAFE = "[]"

# PHP's defaults: max_input_nesting_level = 64; max_input_vars is 1,000 there, a portal raises it
MAX_DEPTH = 64
MAX_PAIRS = 100_000


class ParamError(ValueError):
    """Parameters that cannot be encoded or decoded: nested too deep, too many, or not data."""


def scalar_to_str(value: Any) -> str:
    """Render one scalar as PHP's http_build_query would (True -> "1", False -> "0", None -> "")."""
    if value is None:
        return ""
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def flatten(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested mappings and lists into (key, value) pairs with bracketed keys.

    Lists are indexed (``select[0]=ID``); an empty list or mapping is sent as ``key=`` so that
    the server still sees the parameter. Nesting deeper than ``MAX_DEPTH`` (or a structure that
    contains itself) is a ``ParamError``.
    """
    pairs: list[tuple[str, str]] = []
    # an explicit stack (no recursion): (name, value, depth), in the order the pairs come out
    stack: list[tuple[str, Any, int]] = [(f"{prefix}[{key}]" if prefix else str(key), value, 1) for key, value in params.items()]
    stack.reverse()
    while stack:
        name, value, depth = stack.pop()
        if isinstance(value, Mapping):
            children = [(f"{name}[{key}]", item) for key, item in value.items()]
        elif isinstance(value, (list, tuple)):
            children = [(f"{name}[{index}]", item) for index, item in enumerate(value)]
        else:
            pairs.append((name, scalar_to_str(value)))
            continue
        if depth >= MAX_DEPTH:
            raise ParamError(f"parameters nested deeper than {MAX_DEPTH} levels")
        if not children:
            pairs.append((name, ""))
        stack.extend((child, item, depth + 1) for child, item in reversed(children))
    return pairs


def encode_query(params: Mapping[str, Any]) -> str:
    """Encode nested params as a query string; brackets stay literal, everything else is quoted."""
    return "&".join(
        f"{quote_plus(key, safe=_SAFE)}={quote_plus(value)}" for key, value in flatten(params)
    )


def command_text(method: str, params: Mapping[str, Any] | None) -> str:
    """One batch command: ``method?query`` with the parameters encoded as PHP reads them."""
    return f"{method}?{encode_query(params)}" if params else method


def _split_key(key: str, max_depth: int = MAX_DEPTH) -> list[str]:
    """``filter[>ID][0]`` -> ``["filter", ">ID", "0"]``; ``select[]`` -> ``["select", ""]`` (one pass)."""
    open_at = key.find("[")
    if open_at < 0:
        return [key]
    parts = [key[:open_at]]
    at = open_at
    while at < len(key) and key[at] == "[":
        end = key.find("]", at)
        if end < 0:  # PHP keeps an unbalanced tail as part of the last name
            parts[-1] += key[at:]
            break
        if len(parts) >= max_depth:
            raise ParamError(f"parameter key nested deeper than {max_depth} levels")
        parts.append(key[at + 1 : end])
        at = end + 1
    return parts


def _index(key: str) -> int | None:
    """A key that PHP would treat as a list index (ASCII digits), as an int."""
    return int(key) if key.isascii() and key.isdigit() else None


def parse_pairs(pairs: Iterable[tuple[str, str]], *, max_depth: int = MAX_DEPTH, max_pairs: int = MAX_PAIRS) -> dict[str, Any]:
    """Rebuild nested data from bracketed pairs, as PHP builds ``$_REQUEST``, in linear time.

    Mappings whose keys are exactly 0..n-1 (including ``key[]=`` appends) become lists. A key
    nested deeper than ``max_depth`` or more than ``max_pairs`` pairs is a ``ParamError``.
    """
    root: dict[str, Any] = {}
    # id(node) -> [the index a ``key[]`` append takes there (max index + 1), node]; holding the node
    # keeps its id from being reused by another mapping while we parse
    next_free: dict[int, list[Any]] = {}
    count = 0
    for key, value in pairs:
        count += 1
        if count > max_pairs:
            raise ParamError(f"more than {max_pairs} parameters")
        parts = _split_key(key, max_depth)
        node = root
        last = len(parts) - 1
        for i, part in enumerate(parts):
            free = next_free.get(id(node))
            if free is None:
                free = next_free[id(node)] = [0, node]
            if part == "":
                part = str(free[0])
            index = _index(part)
            if index is not None and index >= free[0]:
                free[0] = index + 1
            if i == last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _listify(root)


def _listify(root: dict[str, Any]) -> Any:
    """Turn every mapping keyed exactly 0..n-1 into a list, bottom-up, without recursion."""
    order: list[tuple[dict[str, Any], str, dict[str, Any]]] = []  # (parent, key, child) parents first
    stack = [root]
    while stack:
        node = stack.pop()
        for key, child in node.items():
            if isinstance(child, dict):
                order.append((node, key, child))
                stack.append(child)
    for parent, key, child in reversed(order):
        parent[key] = _as_list(child)
    return _as_list(root)


def _as_list(node: dict[str, Any]) -> Any:
    if not node:
        return node
    indexes = [_index(k) for k in node]
    if None in indexes or sorted(indexes) != list(range(len(indexes))):  # type: ignore[type-var]
        return node
    by_index = dict(zip(indexes, node.values()))
    return [by_index[i] for i in range(len(indexes))]


def decode_query(query: str, *, max_depth: int = MAX_DEPTH, max_pairs: int = MAX_PAIRS) -> dict[str, Any]:
    """Parse a URL query string or form body into nested data (``ParamError`` beyond the limits)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=max_pairs)
    except ValueError:
        raise ParamError(f"more than {max_pairs} parameters") from None
    return parse_pairs(pairs, max_depth=max_depth, max_pairs=max_pairs)


def to_json_text(data: Any) -> str:
    """JSON text for a request body; Decimals become strings so money keeps its precision.

    Data JSON cannot carry (an object of an unknown type, NaN, nesting past the interpreter's
    stack) is a ``ParamError``.
    """
    try:
        return json.dumps(data, ensure_ascii=False, default=_json_default, allow_nan=False)
    except RecursionError:
        raise ParamError("parameters nested too deep to send") from None
    except (TypeError, ValueError) as exc:
        raise ParamError(f"parameters cannot be sent as JSON: {exc}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
