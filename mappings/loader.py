"""Reading a config file: TOML text -> ``Config``, with every problem reported at once and located.

Each problem names its dotted location (``pipelines[0].stages[4].color``) and its line (and the
column of a TOML syntax error); the file itself is checked first (exists, regular, UTF-8, no BOM, size).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mappings.config import SEMANTICS, Config, ConfigError, Problem, inner_model
from mappings.rules import funnel_problems

__all__ = ["ConfigError", "Problem", "UnreadableFile", "load_config", "parse_config", "read_text_file", "location_text", "toml_lines"]

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config is a few kilobytes; refuse to read a runaway file
MAX_DEPTH = 32  # tables and arrays nested deeper than this are never a b24sync config
BOM = "\ufeff"


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise ConfigError with every problem found."""
    source = str(path)
    return parse_config(read_config_text(Path(path), source), source=source)


def read_config_text(path: Path, source: str) -> str:
    """The text of a config file, or a ConfigError saying why it cannot be read (one problem)."""
    try:
        return read_text_file(path, "config file", MAX_CONFIG_BYTES)
    except UnreadableFile as exc:
        raise ConfigError([Problem("", str(exc), source=source)]) from None


class UnreadableFile(Exception):
    """Why a file a user handed us cannot be read as text, in a phrase that follows its name."""


def read_text_file(path: Path, noun: str, max_bytes: int) -> str:
    """The UTF-8 text of a file a user handed us (config, saved plan, token file), or UnreadableFile
    saying why not: missing, a directory or other non-regular file, larger than ``max_bytes``,
    unreadable, or not UTF-8. Never waits on a pipe or device."""
    try:
        if not path.exists():
            raise UnreadableFile(f"{noun} not found")
        if path.is_dir():
            raise UnreadableFile(f"is a directory, not a {noun}")
        if not path.is_file():
            raise UnreadableFile("is not a regular file")
        if path.stat().st_size > max_bytes:
            raise UnreadableFile(f"is larger than {max_bytes // (1024 * 1024)} MB; a {noun} is far smaller")
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read the {noun}: {exc.strerror or type(exc).__name__}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def parse_config(text: str, source: str = "config") -> Config:
    """Validate TOML text as a config; raise ConfigError with every problem found."""
    if text.startswith(BOM):
        raise ConfigError([Problem("", "the file starts with a UTF-8 byte order mark (BOM), which TOML does not "
                                   "allow: save it as UTF-8 without BOM", 1, 1, source)])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(exc, source, text)]) from None
    except RecursionError:
        raise ConfigError([Problem("", f"TOML nested too deeply (more than {MAX_DEPTH} levels)", source=source)]) from None
    deep = _too_deep(data)
    if deep is not None:
        raise ConfigError([Problem(deep, f"nested more than {MAX_DEPTH} levels deep; a b24sync config never is", source=source)])
    lines = toml_lines(text)
    problems: list[Problem] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, data))
    problems.extend(funnel_problems(data))
    if problems:
        located = []
        seen = set()
        for p in problems:
            line = _find_line(lines, p.location)
            key = (p.location, p.message)
            if key not in seen:
                seen.add(key)
                located.append(Problem(p.location, p.message, line, None, source))
        raise ConfigError(located)
    assert config is not None
    return config


def _too_deep(data: Any) -> str | None:
    """The location of the first value nested more than MAX_DEPTH levels deep, else None (iterative)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return location_text(path[:MAX_DEPTH])
        if isinstance(node, dict):
            stack.extend((value, path + (str(key),)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, path + (index,)) for index, value in enumerate(node))
    return None


def _syntax_problem(exc: tomllib.TOMLDecodeError, source: str, text: str) -> Problem:
    message = str(exc)
    line = column = None
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        line, column = int(match.group(1)), int(match.group(2))
        message = message[: match.start()].strip()
    elif getattr(exc, "lineno", None):
        line, column = exc.lineno, exc.colno  # type: ignore[attr-defined]
    if message == "Cannot overwrite a value" and line is not None:
        location = _key_at(text, line)
        if location:  # tomllib names neither the key nor a useful column (it points past the value)
            return Problem(location, f"set twice (TOML syntax error: {message})", line, None, source)
    return Problem("", f"TOML syntax error: {message}", line, column, source)


def _key_at(text: str, line: int) -> str:
    """The dotted location of the key set on ``line`` (1-based), e.g. 'pipelines[0].stages[1].name'; '' if none."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ""
    key = _KEYLINE.match(lines[line - 1])
    if key is None:
        return ""
    header_line = next((n for n in range(line - 1, 0, -1) if _HEADER.match(lines[n - 1]) and not lines[n - 1].lstrip().startswith("#")), None)
    table: tuple[Any, ...] = ()
    if header_line is not None:
        before = toml_lines("\n".join(lines[:header_line]))
        table = max((path for path, n in before.items() if n == header_line), key=len, default=())
    return location_text(table + tuple(_split_dotted(key.group(1))))


def location_text(loc: tuple[Any, ...]) -> str:
    """('pipelines', 1, 'stages', 3, 'color') -> 'pipelines[1].stages[3].color'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_problems(exc: ValidationError, data: dict[str, Any]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        kind = err["type"]
        message = err["msg"]
        if kind == "extra_forbidden":
            name = str(loc[-1])
            allowed = _allowed_fields(loc[:-1], data)
            hint = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            message = f"unknown setting {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            if allowed:
                message += f"; allowed here: {', '.join(sorted(allowed))}"
        elif kind == "missing":
            message = f"missing required setting {str(loc[-1])!r}"
        elif kind == "literal_error" and loc and loc[-1] == "semantics":
            message = f"unknown semantics {err.get('input')!r}: use one of {', '.join(SEMANTICS)}"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(Problem(location_text(loc), message))
    return problems


def _allowed_fields(loc: tuple[Any, ...], data: dict[str, Any]) -> list[str]:
    """Field names of the model found at ``loc`` (for 'did you mean' hints)."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = _keyed(model).get(part)
        if field is None:
            return []
        model = inner_model(field.annotation)
        if model is None:
            return []
    return list(_keyed(model))


def _keyed(model: Any) -> dict[str, Any]:
    """The model's fields by the key a config file writes (the alias, where a field has one)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


# ---------------------------------------------------------------- TOML line map


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(#.*)?$")
_KEYLINE = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def toml_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each table and key of a TOML document to its line (1-based), with array-of-table indices:
    ``('pipelines', 1, 'stages', 3, 'color') -> 57``. Best effort: used only to point at problems."""
    lines: dict[tuple[Any, ...], int] = {}
    counts: dict[tuple[Any, ...], int] = {}
    arrays: set[tuple[Any, ...]] = set()
    current: tuple[Any, ...] = ()
    in_multiline: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if raw.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(raw)
        if header and not raw.lstrip().startswith("#"):
            names = _split_dotted(header.group(2))
            path: tuple[Any, ...] = ()
            for name in names[:-1]:
                path += (name,)
                if path in arrays:
                    path += (counts[path] - 1,)
            path += (names[-1],)
            if header.group(1) == "[[":
                arrays.add(path)
                counts[path] = counts.get(path, 0) + 1
                lines.setdefault(path, number)
                path += (counts[path] - 1,)
            lines[path] = number
            current = path
            continue
        key = _KEYLINE.match(raw)
        if key and not raw.lstrip().startswith("#"):
            path = current + tuple(_split_dotted(key.group(1)))
            lines.setdefault(path, number)
            rest = raw[key.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return lines


def _find_line(lines: dict[tuple[Any, ...], int], location: str) -> int | None:
    """The line of the longest prefix of ``location`` found in the line map."""
    loc: list[Any] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", location):
        loc.append(int(index) if index else name)
    while loc:
        found = lines.get(tuple(loc))
        if found is not None:
            return found
        loc.pop()
    return None
