"""PHP-style nested parameter encoding, shared by the client and the emulator.

Bitrix24 reads parameters the way PHP does: ``filter[>ID]=5&select[]=ID``. ``flatten``/``encode_query``
turn nested Python data into that form; ``parse_pairs``/``decode_query`` turn it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote_plus

_SAFE = "[]"


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
    the server still sees the parameter.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        _flatten_value(name, value, pairs)
    return pairs


def _flatten_value(name: str, value: Any, pairs: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        if not value:
            pairs.append((name, ""))
        for key, item in value.items():
            _flatten_value(f"{name}[{key}]", item, pairs)
    elif isinstance(value, (list, tuple)):
        if not value:
            pairs.append((name, ""))
        for index, item in enumerate(value):
            _flatten_value(f"{name}[{index}]", item, pairs)
    else:
        pairs.append((name, scalar_to_str(value)))


def encode_query(params: Mapping[str, Any]) -> str:
    """Encode nested params as a query string; brackets stay literal, everything else is quoted."""
    return "&".join(
        f"{quote_plus(key, safe=_SAFE)}={quote_plus(value)}" for key, value in flatten(params)
    )


def _split_key(key: str) -> list[str]:
    """``filter[>ID][0]`` -> ``["filter", ">ID", "0"]``; ``select[]`` -> ``["select", ""]``."""
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    parts = [head]
    rest = "[" + rest
    while rest.startswith("["):
        end = rest.find("]")
        if end < 0:  # PHP keeps an unbalanced tail as part of the last name
            parts[-1] += rest
            break
        parts.append(rest[1:end])
        rest = rest[end + 1 :]
    return parts


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Rebuild nested data from bracketed pairs, as PHP builds ``$_REQUEST``.

    Mappings whose keys are exactly 0..n-1 (including ``key[]=`` appends) become lists.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = _split_key(key)
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(_next_index(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _listify(root)


def _next_index(node: dict[str, Any]) -> int:
    ints = [int(k) for k in node if k.isdigit()]
    return max(ints) + 1 if ints else 0


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            keys = sorted(int(k) for k in converted)
            if keys == list(range(len(keys))):
                return [converted[str(k)] for k in keys]
        return converted
    return node


def decode_query(query: str) -> dict[str, Any]:
    """Parse a URL query string or form body into nested data."""
    return parse_pairs(parse_qsl(query, keep_blank_values=True))


def to_json_text(data: Any) -> str:
    """JSON text for a request body; Decimals become strings so money keeps its precision."""
    return json.dumps(data, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
