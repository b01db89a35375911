"""Where the portal comes from, at its hostile edges: token files, timeouts and KEY=VALUE pairs.
Each bad input is a ``PortalNotConfigured`` / ``UserError`` / ``CallFailed`` naming what was wrong;
random input never raises anything else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.errors import EXIT_USAGE, UserError
from jobs.portal import DEFAULT_TIMEOUT, CallFailed, PortalNotConfigured, parse_cli_pairs, read_tokens, timeout_seconds

GOOD = {"access_token": "a-token", "refresh_token": "r-token", "client_endpoint": "https://portal.example/rest/"}

TOKEN_CASES = [
    ("missing", None, "tokens.json: token file not found"),
    ("directory", "DIR", "tokens.json: is a directory, not a token file"),
    ("empty", b"", "is not JSON"),
    ("not-utf8", b"\xff\xfe{}", "tokens.json: not UTF-8 text"),
    ("not-json", b"access_token=1", "is not JSON"),
    ("deep-json", b"[" * 50_000 + b"]" * 50_000, "is not JSON"),
    ("a-list", b"[]", "holds JSON but not an object of tokens"),
    ("a-string", b'"tokens"', "holds JSON but not an object of tokens"),
    ("no-refresh-token", json.dumps({**GOOD, "refresh_token": None}).encode(), "holds no refresh_token"),
    ("numbers-for-tokens", json.dumps({**GOOD, "access_token": 5}).encode(), "holds no access_token"),
    ("blank-endpoint", json.dumps({**GOOD, "client_endpoint": " "}).encode(), "holds no client_endpoint"),
    ("bad-expiry", json.dumps({**GOOD, "expires": [1]}).encode(), "expires is not a unix time"),
    ("infinite-expiry", json.dumps({**GOOD, "expires": "inf"}).encode(), "expires is not a unix time"),
]


def token_file(tmp_path: Path, content: bytes | str | None) -> Path:
    path = tmp_path / "tokens.json"
    if content == "DIR":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in TOKEN_CASES], ids=[c[0] for c in TOKEN_CASES])
def test_a_bad_token_file_is_named_with_what_is_wrong(tmp_path: Path, content: Any, expected: str) -> None:
    with pytest.raises(PortalNotConfigured) as caught:
        read_tokens(token_file(tmp_path, content), "b24sync.toml [portal.oauth]")
    text = str(caught.value)
    assert text.startswith("b24sync.toml [portal.oauth]: ") and expected in text, text
    assert "a-token" not in text and "r-token" not in text
    assert caught.value.exit_code == 1


def test_a_good_token_file_gives_its_tokens(tmp_path: Path) -> None:
    tokens = read_tokens(token_file(tmp_path, json.dumps({**GOOD, "expires": "1780000000"}).encode()))
    assert (tokens.access_token, tokens.refresh_token, tokens.expires) == ("a-token", "r-token", 1_780_000_000.0)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=5),
    max_leaves=20,
)
TOKEN_LIKE = st.fixed_dictionaries({}, optional={key: JSON for key in (*GOOD, "expires", "server_endpoint", "member_id")})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()), TOKEN_LIKE.map(lambda v: json.dumps(v).encode())))
def test_random_token_files_give_tokens_or_one_clear_error(tmp_path: Path, content: bytes) -> None:
    try:
        tokens = read_tokens(token_file(tmp_path, content))
    except PortalNotConfigured as exc:
        assert str(exc).startswith("token_file: ")
    else:
        assert tokens.access_token.strip() and tokens.refresh_token.strip() and tokens.client_endpoint.strip()


TIMEOUT_CASES = [
    (None, {}, DEFAULT_TIMEOUT, None),
    (None, {"B24SYNC_TIMEOUT": " 7.5 "}, 7.5, None),
    (None, {"B24SYNC_TIMEOUT": ""}, DEFAULT_TIMEOUT, None),
    (3.0, {"B24SYNC_TIMEOUT": "7.5"}, 3.0, None),
    (None, {"B24SYNC_TIMEOUT": "seven"}, None, "B24SYNC_TIMEOUT='seven' is not a number of seconds"),
    (None, {"B24SYNC_TIMEOUT": "0"}, None, "B24SYNC_TIMEOUT must be between 0 and 86400 seconds, got 0.0"),
    (None, {"B24SYNC_TIMEOUT": "inf"}, None, "B24SYNC_TIMEOUT must be between"),
    (0.0, {}, None, "--timeout must be between 0 and 86400 seconds"),
    (100_000.0, {}, None, "--timeout must be between"),
]


@pytest.mark.parametrize(("flag", "environ", "seconds", "error"), TIMEOUT_CASES,
                         ids=["default", "env", "env-empty", "flag-wins", "env-word", "env-zero", "env-inf", "flag-zero", "flag-huge"])
def test_the_timeout_comes_from_the_flag_then_the_environment_then_the_default(
    flag: float | None, environ: dict[str, str], seconds: float | None, error: str | None
) -> None:
    if error is None:
        assert timeout_seconds(flag, environ) == seconds
        return
    with pytest.raises(UserError, match="^" + error.replace("(", r"\(").replace(")", r"\)")) as caught:
        timeout_seconds(flag, environ)
    assert caught.value.exit_code == EXIT_USAGE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab[]=>!<%0 \\\x00é", max_size=30), max_size=6))
def test_random_key_value_pairs_parse_or_are_a_usage_error(pairs: list[str]) -> None:
    try:
        parsed = parse_cli_pairs(pairs)
    except CallFailed as exc:
        assert exc.exit_code == EXIT_USAGE and str(exc).startswith(("parameters are KEY=VALUE", "parameters: "))
    else:
        assert isinstance(parsed, dict)


def test_keys_nested_thousands_deep_are_a_usage_error() -> None:
    with pytest.raises(CallFailed) as caught:
        parse_cli_pairs(["filter" + "[x]" * 5000 + "=1"])
    assert caught.value.exit_code == EXIT_USAGE and str(caught.value).startswith("parameters: ")
