"""Config files at their hostile edge: whatever the file is (a directory, binary, a BOM, TOML nested
hundreds deep, random data), loading ends in a ``ConfigError`` naming the file and what is wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.config import Config, ConfigError
from mappings.loader import MAX_CONFIG_BYTES, load_config, parse_config
from tests.jobs.provision.conftest import EXAMPLE


def only_problem(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    return str(problem)


FILES = [
    ("missing", None, "{path}: config file not found"),
    ("directory", "DIR", "{path}: is a directory, not a config file"),
    ("fifo", "FIFO", "{path}: is not a regular file"),
    ("binary", b"\x00\x01\x02\xff", "{path}: not UTF-8 text (invalid start byte at byte 3)"),
    ("utf16", "[portal]\n".encode("utf-16"), "{path}: not UTF-8 text"),
    ("bom", "\ufeff[portal]\n".encode("utf-8"), "{path}:1:1: the file starts with a UTF-8 byte order mark (BOM), which TOML does "
                                                 "not allow: save it as UTF-8 without BOM"),
    ("arrays-500-deep", ("a = " + "[" * 500 + "]" * 500).encode(), "{path}: TOML nested too deeply (more than 32 levels)"),
    ("tables-500-deep", ("a = " + "{b = " * 500 + "1" + "}" * 500).encode(), "{path}: TOML nested too deeply"),
    ("dotted-keys-2000-deep", (".".join(["k"] * 2000) + " = 1").encode(), "{path}: k.k.k.k"),
    ("too-large", b"# " + b"x" * (MAX_CONFIG_BYTES + 1), "{path}: is larger than 4 MB; a config file is far smaller"),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in FILES], ids=[c[0] for c in FILES])
def test_a_file_that_is_no_config_is_one_problem_naming_it(tmp_path: Path, content: Any, expected: str) -> None:
    path = tmp_path / "b24sync.toml"
    if content == "DIR":
        path.mkdir()
    elif content == "FIFO":
        os.mkfifo(path)
    elif content is not None:
        path.write_bytes(content)
    assert only_problem(path).startswith(expected.format(path=path))


def test_an_unreadable_file_says_so(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "b24sync.toml"
    path.write_text("[portal]\n", encoding="utf-8")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert only_problem(path) == f"{path}: cannot read the config file: Permission denied"


def test_deep_dotted_keys_name_where_the_depth_starts(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(".".join(["k"] * 40) + " = 1\n", encoding="utf-8")
    assert only_problem(path) == f"{path}: {'.'.join(['k'] * 32)}: nested more than 32 levels deep; a b24sync config never is"


# TOML documents built from random data: every value type TOML has, nested a little, under names that
# are partly the config's own, so the models and funnel rules see plausible and implausible input alike.
NAMES = st.sampled_from(["portal", "database", "schedule", "leads", "pipelines", "statuses", "stages", "move_records", "key",
                         "name", "semantics", "color", "sort", "default", "id", "rate", "burst", "oauth", "url", "webhook_env",
                         "sync_every_minutes", "report_cron", "client_id", "token_file"]) | st.text(max_size=8)
SCALARS = (st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12)
           | st.sampled_from(["process", "success", "failure", "#39A8EF", "NEW", "WON", "LOSE", "0 8 * * MON", "sqlite://"]))
DATA = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=5), max_leaves=30)
DOCUMENTS = st.dictionaries(NAMES, DATA, max_size=6)


@settings(max_examples=150, deadline=None)
@given(DOCUMENTS)
def test_random_toml_documents_load_or_are_config_errors(document: dict[str, Any]) -> None:
    try:
        text = tomli_w.dumps(document)
    except (TypeError, ValueError):
        return  # not representable in TOML (e.g. a list of tables mixed with values)
    try:
        config = parse_config(text, source="random.toml")
    except ConfigError as exc:
        assert exc.problems and all(str(p).startswith("random.toml") for p in exc.problems)
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='[]{}=."\'#\n ,abk0129-_\ufeff\\', max_size=80))
def test_random_text_loads_or_is_a_config_error(text: str) -> None:
    try:
        parse_config(text, source="random.toml")
    except ConfigError as exc:
        assert exc.problems


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_files_load_or_are_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "random.toml"
    path.write_bytes(content)
    try:
        load_config(path)
    except ConfigError as exc:
        assert all(str(p).startswith(str(path)) for p in exc.problems)


def test_mutating_the_example_never_escapes_as_anything_but_config_errors() -> None:
    """Every line of the example deleted in turn: each result loads or is a ConfigError with located problems."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for n in range(len(lines)):
        text = "\n".join(lines[:n] + lines[n + 1:])
        try:
            parse_config(text, source="x.toml")
        except ConfigError as exc:
            assert all(p.line is None or 1 <= p.line <= len(lines) for p in exc.problems)
