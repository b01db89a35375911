"""The portal's state file (``--state PATH``): JSON lines that nothing can execute, read about as fast as a pickle.

Line 1 is the header ``{"format": "b24sync-emulator-state", "version": 1}``; then one JSON object
per part, and ``{"part": "end", "parts": N}`` last, so a cut file is told apart from a whole one:

- ``strings``: every distinct text value of the records and history rows, once; their columns hold
  indices into it (0 is ``null``). Loading maps indices back, so equal texts share one object.
- ``records``: one entity's records (``ids`` in the portal's order) as columns, grouped by the
  set of keys a record has (``shapes``);
- ``history``: one entity type's stage history rows, as columns the same way;
- ``portal``: everything else (dictionaries, users, pipelines, queues, tokens, counters), as tagged
  JSON: a tuple is ``{"~tuple": [...]}``, a dict with keys that are not all strings ``{"~map": [[k, v]...]}``.

A column is ``{"k": i}`` (every row holds string ``i``), ``{"c": ints}`` (string indices),
``{"i": ints}`` (the integers themselves), ``{"m": keys, "n": ints, "f": [ints...]}`` (lists of
flat dicts with those keys, such as PHONE: the item count per row, then string indices per key),
``{"r": [...]}`` (plain JSON values that read back exactly) or ``{"t": [...]}`` (tagged JSON).
``ints`` is a packed integer array: base64 of little-endian 32-bit (indices, counts) or 64-bit
(values, record ids) integers, which reads far faster than millions of JSON numbers.
Loading checks the header first and reads with ``json``, ``base64`` and ``array`` only: nothing in
the file is ever executed. Anything that is not such a file raises ``StateFileError``, a ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import os
import sys
import tempfile
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain, count, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

FORMAT = "b24sync-emulator-state"
VERSION = 1
COLUMNAR = ("records", "history")  # the big containers, written as columns


class StateFileError(ValueError):
    """A state file that cannot be read: not one of ours, another version, cut short or malformed."""


_INT32 = next(code for code in "ihl" if array(code).itemsize == 4)
_INT64 = next(code for code in "qlL" if array(code).itemsize == 8)
_INT64_RANGE = range(-(2**63), 2**63)


def _pack(values: list[int], code: str) -> str:
    """Integers as base64 of a little-endian array (``code`` 32- or 64-bit)."""
    packed = array(code, values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _unpack(text: Any, code: str) -> array:
    """The integers ``_pack`` wrote (an array: iterating it is cheaper than a list of them)."""
    if not isinstance(text, str):
        raise StateFileError("a packed integer column is not a string")
    packed = array(code)
    packed.frombytes(base64.b64decode(text, validate=True))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed


# ---------------------------------------------------------------------------- writing


def write(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write ``state`` (the portal's attributes) to ``path`` atomically (a temporary file, then a rename)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=".b24state-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            _write_parts(fh, state)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_parts(fh: IO[str], state: Mapping[str, Any]) -> None:
    strings = _Strings()
    parts: list[dict[str, Any]] = []
    for entity, records in state.get("records", {}).items():
        parts.append({"part": "records", "entity": entity, "ids": _pack(list(records), _INT64),
                      **_rows_part(list(records.values()), strings)})
    for type_id, rows in state.get("history", {}).items():
        parts.append({"part": "history", "type_id": type_id, **_rows_part(rows, strings)})
    rest = {name: value for name, value in state.items() if name not in COLUMNAR}
    lines = [{"format": FORMAT, "version": VERSION}, {"part": "strings", "values": strings.values},
             *parts, {"part": "portal", "state": _tagged(rest)}]
    for line in lines:
        fh.write(_dumps(line))
        fh.write("\n")
    fh.write(_dumps({"part": "end", "parts": len(lines) - 1}))
    fh.write("\n")


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=True)


class _Strings:
    """The file's string table: text -> index in order of first use, index 0 is None."""

    def __init__(self) -> None:
        # a missing text takes the next index as it is looked up: one dict lookup per value
        self.index: defaultdict[str | None, int] = defaultdict(count(1).__next__, {None: 0})

    def codes(self, texts: Iterable[str | None]) -> list[int]:
        """The index of each text, new texts added to the table."""
        return list(map(self.index.__getitem__, texts))

    @property
    def values(self) -> list[str | None]:
        """The table: the texts in index order."""
        return list(self.index)


_TEXT_TYPES = frozenset((str, type(None)))
_SCALARS = frozenset((str, int, float, bool, type(None)))


def _rows_part(rows: list[Mapping[str, Any]], strings: _Strings) -> dict[str, Any]:
    """Rows (dicts) as shapes of columns; ``of`` says which shape each row has when there are several."""
    shape_index: dict[tuple[str, ...], int] = {}
    members: list[list[Mapping[str, Any]]] = []
    of: list[int] = []
    for row in rows:
        keys = tuple(row)
        index = shape_index.get(keys)
        if index is None:
            if not all(key.__class__ is str for key in keys):
                raise TypeError("a state file keeps rows whose field names are strings")
            index = shape_index[keys] = len(members)
            members.append([])
        members[index].append(row)
        of.append(index)
    shapes = [
        {"keys": list(keys), "count": len(group), "columns": [_column(column, strings) for column in _columns(keys, group)]}
        for keys, group in zip(shape_index, members)
    ]
    return {"shapes": shapes, "of": _pack(of, _INT32) if len(shapes) > 1 else None}


def _columns(keys: tuple[str, ...], rows: list[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """The rows' values per key. Read row by row (each dict once, in memory order), then turned over."""
    if len(keys) == 1:
        return [tuple(map(itemgetter(keys[0]), rows))]
    return list(zip(*map(itemgetter(*keys), rows)))


def _column(values: tuple[Any, ...], strings: _Strings) -> dict[str, Any]:
    kinds = set(map(type, values))
    if kinds <= _TEXT_TYPES:
        codes = strings.codes(values)
        if codes and codes.count(codes[0]) == len(codes):
            return {"k": codes[0]}
        return {"c": _pack(codes, _INT32)}
    if kinds == {int} and min(values) in _INT64_RANGE and max(values) in _INT64_RANGE:
        return {"i": _pack(values, _INT64)}
    multi = _multi_column(values, kinds, strings)
    if multi is not None:
        return multi
    if kinds <= _SCALARS or (kinds == {list} and set(map(type, chain.from_iterable(values))) <= _SCALARS):
        return {"r": values}  # scalars, or lists of them (CONTACT_IDS): JSON keeps them as they are
    if all(_plain(v) for v in values):
        return {"r": values}
    return {"t": [_tagged(v) for v in values]}


def _multi_column(values: tuple[Any, ...], kinds: set[type], strings: _Strings) -> dict[str, Any] | None:
    """Lists of dicts that all have the same string-valued keys (multi-fields), flattened; else None."""
    if kinds != {list}:
        return None
    items = list(chain.from_iterable(values))
    if not items or set(map(type, items)) != {dict}:
        return None
    shapes = set(map(tuple, items))
    if len(shapes) != 1:
        return None
    (keys,) = shapes
    if not set(map(type, chain.from_iterable(map(dict.values, items)))) <= _TEXT_TYPES:
        return None
    return {"m": list(keys), "n": _pack(list(map(len, values)), _INT32),
            "f": [_pack(strings.codes(list(map(itemgetter(k), items))), _INT32) for k in keys]}


def _plain(value: Any) -> bool:
    """True when JSON gives ``value`` back exactly (no tuple, no non-string key, nothing else)."""
    kind = value.__class__
    if value is None or kind in (str, int, float, bool):
        return True
    if kind is list:
        return all(_plain(v) for v in value)
    if kind is dict:
        return all(k.__class__ is str and _plain(v) for k, v in value.items())
    return False


def _tagged(value: Any) -> Any:
    """Python data as JSON that keeps tuples and non-string keys (see the module docstring)."""
    kind = value.__class__
    if value is None or kind in (str, int, float, bool):
        return value
    if kind is list:
        return [_tagged(v) for v in value]
    if kind is tuple:
        return {"~tuple": [_tagged(v) for v in value]}
    if kind is dict:
        if all(k.__class__ is str and not k.startswith("~") for k in value):
            return {k: _tagged(v) for k, v in value.items()}
        return {"~map": [[_tagged(k), _tagged(v)] for k, v in value.items()]}
    raise TypeError(f"cannot keep a {kind.__name__} in a state file")


# ---------------------------------------------------------------------------- reading


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The portal attributes stored in ``path``; ``StateFileError`` when it is not a whole state file."""
    collecting = gc.isenabled()
    gc.disable()  # millions of new dicts and no cycle among them: the collector would only rescan them (2x the time)
    try:
        with open(path, "rb", buffering=1 << 20) as fh:  # lines of many megabytes: read them in big chunks
            return _read_parts(fh)
    except StateFileError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, binascii.Error) as exc:
        raise StateFileError(f"{path}: not a readable b24sync emulator state file ({_reason(exc)})") from None
    finally:
        if collecting:
            gc.enable()


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _read_parts(fh: IO[bytes]) -> dict[str, Any]:
    name = getattr(fh, "name", "state file")
    first = fh.readline(4096)
    header = _header(first)
    if header is None or header.get("format") != FORMAT:
        raise StateFileError(
            f"{name}: not a b24sync emulator state file (no {FORMAT!r} header; an old pickled state cannot be "
            "loaded: delete it, and the portal is seeded again)"
        )
    if header.get("version") != VERSION:
        raise StateFileError(f"{name}: state file version {header.get('version')!r}; this emulator reads version {VERSION}")
    state: dict[str, Any] = {"records": {}, "history": {}}
    strings: list[Any] | None = None
    count = 0
    for line in _lines(fh):
        part = json.loads(line)
        kind = part["part"]
        if kind == "end":
            if part["parts"] != count:
                raise StateFileError(f"{name}: {count} parts read, the file says {part['parts']}")
            return state
        count += 1
        if kind == "strings":
            strings = part["values"]
            if not isinstance(strings, list):
                raise StateFileError(f"{name}: the string table is not a list")
        elif kind == "records":
            rows = _read_rows(part, _need(strings, name))
            ids = _unpack(part["ids"], _INT64).tolist()
            if len(ids) != len(rows):
                raise StateFileError(f"{name}: record ids of {part['entity']!r} do not match its rows")
            state["records"][str(part["entity"])] = dict(zip(ids, rows))
        elif kind == "history":
            state["history"][int(part["type_id"])] = _read_rows(part, _need(strings, name))
        elif kind == "portal":
            rest = _untagged(part["state"])
            if not isinstance(rest, dict):
                raise StateFileError(f"{name}: the portal part is not an object")
            state.update({str(k): v for k, v in rest.items() if k not in COLUMNAR})
        else:
            raise StateFileError(f"{name}: unknown part {kind!r}")
    raise StateFileError(f"{name}: the file ends before its last part (cut short?)")


def _header(line: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _lines(fh: IO[bytes]) -> Iterator[bytes]:
    for line in fh:
        if not line.isspace():  # (strip() would copy a line of many megabytes)
            yield line


def _need(strings: list[Any] | None, name: str) -> list[Any]:
    if strings is None:
        raise StateFileError(f"{name}: rows come before the string table")
    return strings


def _read_rows(part: Mapping[str, Any], strings: list[Any]) -> list[dict[str, Any]]:
    """Rows of a records or history part, in their stored order."""
    built: list[list[dict[str, Any]]] = []
    for shape in part["shapes"]:
        keys, count = [str(k) for k in shape["keys"]], int(shape["count"])
        built.append(_shape_rows(keys, count, shape["columns"], strings))
    of = part.get("of")
    if of is None:
        if len(built) > 1:
            raise StateFileError("several row shapes without the order of their rows")
        return built[0] if built else []
    order = _unpack(of, _INT32)
    if sorted(Counter(order).items()) != [(i, len(rows)) for i, rows in enumerate(built) if rows]:
        raise StateFileError("the order of the rows does not match their shapes")
    cursors = [iter(rows) for rows in built]
    return [next(cursors[i]) for i in order]


def _shape_rows(keys: list[str], count: int, columns: list[Any], strings: list[Any]) -> list[dict[str, Any]]:
    """``count`` dicts with ``keys``: constant columns are copied from a template, the others zipped in."""
    if len(columns) != len(keys):
        raise StateFileError("a row shape with a different number of keys and columns")
    template: dict[str, Any] = {}
    names: list[str] = []
    varying: list[list[Any]] = []
    for key, column in zip(keys, columns):
        if "k" in column:
            template[key] = strings[column["k"]]
            continue
        template[key] = None
        values = _values(column, strings)
        if len(values) != count:
            raise StateFileError(f"column {key!r} holds {len(values)} values for {count} rows")
        names.append(key)
        varying.append(values)
    if len(names) == len(keys):  # nothing constant: build each row in one go
        return list(map(dict, map(zip, repeat(keys), zip(*varying))))
    rows = list(map(dict.copy, repeat(template, count)))
    if names:
        deque(map(dict.update, rows, map(zip, repeat(names), zip(*varying))), maxlen=0)
    return rows


def _values(column: Mapping[str, Any], strings: list[Any]) -> list[Any]:
    if "c" in column:
        return list(map(strings.__getitem__, _unpack(column["c"], _INT32)))
    if "i" in column:
        return _unpack(column["i"], _INT64).tolist()
    if "r" in column:
        return list(column["r"])
    if "t" in column:
        return [_untagged(v) for v in column["t"]]
    if "m" in column:
        keys = [str(k) for k in column["m"]]
        fields = [list(map(strings.__getitem__, _unpack(codes, _INT32))) for codes in column["f"]]
        items = list(map(dict, map(zip, repeat(keys), zip(*fields))))
        counts = _unpack(column["n"], _INT32).tolist()
        if sum(counts) != len(items) or any(len(f) != len(items) for f in fields) or min(counts, default=0) < 0:
            raise StateFileError("multi-field items do not add up to their counts")
        flow = iter(items)
        return list(map(list, map(islice, repeat(flow), counts)))
    raise StateFileError(f"unknown column kind {sorted(column)!r}")


def _untagged(value: Any) -> Any:
    kind = value.__class__
    if kind is list:
        return [_untagged(v) for v in value]
    if kind is dict:
        if len(value) == 1:
            if "~tuple" in value:
                return tuple(_untagged(v) for v in value["~tuple"])
            if "~map" in value:
                return {_hashable(_untagged(k)): _untagged(v) for k, v in value["~map"]}
        return {k: _untagged(v) for k, v in value.items()}
    return value


def _hashable(key: Any) -> Any:
    hash(key)  # a list or dict key in a crafted file: TypeError, reported as a broken file
    return key

