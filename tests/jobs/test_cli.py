"""The command line's one error boundary: bad arguments and bad files end in one ``error:`` line and a
documented exit code, before any request, without a traceback (unless -vv) and without a secret;
a portal that accepts connections and never answers is given up on within ``B24SYNC_TIMEOUT``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.cli import _verbosity as verbosity
from jobs.cli import main
from tests.jobs.provision.conftest import EXAMPLE

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-canary-code"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: Any, tmp_path: Path) -> None:
    """No webhook, config or timeout from the developer's shell or working directory."""
    for name in ("B24SYNC_WEBHOOK", "B24SYNC_CONFIG", "B24SYNC_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def own_secrets(monkeypatch: Any) -> None:
    """Only this test's secrets are masked: a secret another test registered (say, the word
    "secret") must not mask the words of the messages checked here."""
    from connector import redact

    monkeypatch.setattr(redact, "_known", set())


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def plan_json(**overrides: Any) -> str:
    data = {"format": "b24sync-plan", "version": 3, "fingerprint": "sha256:" + "0" * 64, "summary": {},
            "errors": [], "counts": [], "changes": []}
    data.update(overrides)
    return json.dumps({k: v for k, v in data.items() if v is not None})


def deep_toml(levels: int) -> str:
    return "a = " + "[" * levels + "]" * levels + "\n"


# Each case: what to prepare in the working directory (name -> content; a name ending in "/" is a
# directory, "FIFO" a named pipe), the arguments (ENV stands for the URL of an emulator that no
# request may reach), extra environment, the exit code and a fragment of the one error message.
OAUTH = '[portal.oauth]\nclient_id = "local.x"\nclient_secret_env = "S_X"\ntoken_file = "t.json"\n'
FILE_CASES = [
    ("config-is-a-directory", {"conf/": None}, ["provision", "plan", "--config", "conf", "--webhook", "ENV"], {}, 1,
     "conf has 1 problem(s):\n  conf: is a directory, not a config file"),
    ("config-env-is-a-directory", {"conf/": None}, ["provision", "plan", "--webhook", "ENV"], {"B24SYNC_CONFIG": "conf"}, 1,
     "conf: is a directory, not a config file"),
    ("config-for-rate-limits-is-a-directory", {"conf/": None}, ["call", "profile", "--config", "conf", "--webhook", "ENV"], {}, 2,
     "the config file has problems:\nconf: is a directory, not a config file"),
    ("config-env-for-call-is-a-directory", {"conf/": None}, ["call", "profile", "--webhook", "ENV"], {"B24SYNC_CONFIG": "conf"}, 2,
     "conf: is a directory"),
    ("config-missing", {}, ["provision", "apply", "--config", "nope.toml", "--webhook", "ENV"], {}, 1,
     "nope.toml: config file not found"),
    ("config-not-utf8", {"c.toml": b'[portal]\nrate = "\xff"\n'}, ["provision", "plan", "--config", "c.toml", "--webhook", "ENV"], {}, 1,
     "c.toml: not UTF-8 text (invalid start byte at byte 17)"),
    ("config-with-bom", {"c.toml": "\ufeff[portal]\nrate = 2.0\n"}, ["provision", "plan", "--config", "c.toml", "--webhook", "ENV"], {}, 1,
     "c.toml:1:1: the file starts with a UTF-8 byte order mark (BOM)"),
    ("config-nested-hundreds-deep", {"c.toml": deep_toml(600)}, ["provision", "plan", "--config", "c.toml", "--webhook", "ENV"], {}, 1,
     "TOML nested too deeply"),
    ("config-nested-deep-but-parsable", {"c.toml": deep_toml(40)}, ["call", "profile", "--config", "c.toml", "--webhook", "ENV"], {}, 2,
     "[0][0]: nested more than 32 levels deep"),
    ("config-a-fifo", {"fifo": "FIFO"}, ["provision", "plan", "--config", "fifo", "--webhook", "ENV"], {}, 1, "fifo: is not a regular file"),
    ("empty-config-option", {}, ["provision", "plan", "--config", "", "--webhook", "ENV"], {}, 2, "--config is empty"),
    ("webhook-file-not-utf8", {"c.toml": '[portal]\nwebhook_env = "UNSET_X"\nwebhook_file = "hook"\n', "hook": b"\xfe\xff\x00h"},
     ["call", "profile", "--config", "c.toml"], {}, 2, "the file named by webhook_file is not UTF-8 text"),
    ("webhook-file-a-directory", {"c.toml": '[portal]\nwebhook_env = "UNSET_X"\nwebhook_file = "hook"\n', "hook/": None},
     ["provision", "export", "--config", "c.toml"], {}, 1, "cannot read the secret file (Is a directory"),
    ("client-secret-file-not-utf8",
     {"c.toml": '[portal.oauth]\nclient_id = "local.x"\nclient_secret_file = "s"\n', "s": b"\x80\x81"},
     ["provision", "export", "--config", "c.toml"], {}, 1, "the file named by client_secret_file is not UTF-8 text"),
    ("token-file-a-directory", {"c.toml": OAUTH, "t.json/": None}, ["call", "profile", "--config", "c.toml"], {"S_X": "v"}, 2,
     "t.json: is a directory, not a token file"),
    ("token-file-json-but-not-tokens", {"c.toml": OAUTH, "t.json": '{"access_token": "a", "expires": 5}'},
     ["provision", "export", "--config", "c.toml"], {"S_X": "v"}, 1, "holds no refresh_token, client_endpoint"),
    ("token-file-a-list", {"c.toml": OAUTH, "t.json": "[1, 2]"}, ["call", "profile", "--config", "c.toml"], {"S_X": "v"}, 2,
     "holds JSON but not an object of tokens"),
    ("token-file-not-json", {"c.toml": OAUTH, "t.json": "access_token=abc"}, ["call", "profile", "--config", "c.toml"], {"S_X": "v"}, 2,
     "t.json is not JSON"),
    ("token-file-bad-expiry", {"c.toml": OAUTH, "t.json": json.dumps({"access_token": "a", "refresh_token": "b",
                                                                        "client_endpoint": "https://x/rest/", "expires": "soon"})},
     ["call", "profile", "--config", "c.toml"], {"S_X": "v"}, 2, "expires is not a unix time"),
    ("out-into-a-missing-directory", {}, ["provision", "plan", "--config", str(EXAMPLE), "--out", "no/such/dir/plan.json", "--webhook", "ENV"],
     {}, 1, "--out no/such/dir/plan.json: the directory no/such/dir does not exist"),
    ("out-is-a-directory", {"here/": None}, ["provision", "export", "--out", "here", "--webhook", "ENV"], {}, 1, "--out here: is a directory"),
    ("plan-missing", {}, ["provision", "apply", "--plan", "p.json", "--yes", "--webhook", "ENV"], {}, 1, "p.json: plan file not found"),
    ("plan-a-directory", {"p/": None}, ["provision", "apply", "--plan", "p", "--yes", "--webhook", "ENV"], {}, 1,
     "p: is a directory, not a plan file"),
    ("plan-not-utf8", {"p.json": b'{"format": "\xff"}'}, ["provision", "apply", "--plan", "p.json", "--yes", "--webhook", "ENV"], {}, 1,
     "p.json: not UTF-8 text (invalid start byte at byte 12)"),
    ("plan-not-json", {"p.json": "Plan: 3 to create"}, ["provision", "apply", "--plan", "p.json", "--yes", "--webhook", "ENV"], {}, 1,
     "p.json: not a plan file: not JSON"),
    ("plan-json-nested-deep", {"p.json": "[" * 100_000 + "]" * 100_000}, ["provision", "apply", "--plan", "p.json", "--webhook", "ENV"],
     {}, 1, "p.json: not a plan file"),
    ("plan-wrong-shape", {"p.json": plan_json(changes={"a": 1})}, ["provision", "apply", "--plan", "p.json", "--yes", "--webhook", "ENV"],
     {}, 1, "p.json: plan file: changes must be a list of changes"),
    ("plan-change-missing-fields", {"p.json": plan_json(changes=[{"action": "create", "kind": "stage", "key": "x/Y", "after": {}}])},
     ["provision", "apply", "--plan", "p.json", "--yes", "--webhook", "ENV"], {}, 1, "p.json: plan file: changes[0]: after.name must be text"),
    ("plan-without-fingerprint", {"p.json": plan_json(fingerprint=None)},
     ["provision", "apply", "--plan", "p.json", "--yes", "--webhook", "ENV"], {}, 1,
     "p.json: the plan file has no fingerprint of the portal state it was made from"),
    ("plan-of-an-older-version", {"p.json": plan_json(version=2)},
     ["provision", "apply", "--plan", "p.json", "--yes", "--webhook", "ENV"], {}, 1,
     "p.json: plan file version 2 was made by an older b24sync"),
]


@pytest.mark.parametrize(("files", "args", "env", "code", "expected"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_a_bad_file_is_one_error_line_before_any_request(
    emulator: Any, tmp_path: Path, files: dict[str, Any], args: list[str], env: dict[str, str], code: int, expected: str
) -> None:
    for name, content in files.items():
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        elif content == "FIFO":
            os.mkfifo(tmp_path / name)
        else:
            write(tmp_path / name, content)
    result = run(*[emulator.url if a == "ENV" else a for a in args], env=env)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert emulator.stats()["requests_total"] == 0
    assert not (tmp_path / "no").exists()


ARG_CASES = [
    ("empty-webhook-call", ["call", "profile", "--webhook", ""], {"B24SYNC_WEBHOOK": "ENV"}, 2, "--webhook is empty (an unset variable?)"),
    ("empty-webhook-plan", ["provision", "plan", "--config", str(EXAMPLE), "--webhook", ""], {"B24SYNC_WEBHOOK": "ENV"}, 2,
     "--webhook is empty"),
    ("empty-webhook-detailed", ["provision", "plan", "--config", str(EXAMPLE), "--detailed-exitcode", "--webhook", ""],
     {"B24SYNC_WEBHOOK": "ENV"}, 1, "--webhook is empty"),
    ("method-with-dots", ["call", "../../profile", "--webhook", "ENV"], {}, 2, "METHOD: not a Bitrix24 method name ('/' at position 3)"),
    ("method-with-slash", ["call", "crm.deal.list/x?y=1", "--webhook", "ENV"], {}, 2, "METHOD: not a Bitrix24 method name ('/' at position 14)"),
    ("method-empty", ["call", "", "--webhook", "ENV"], {}, 2, "METHOD: not a Bitrix24 method name (empty)"),
    ("method-a-pasted-webhook", ["call", "https://p.example/rest/1/pasted-code/profile", "--webhook", "ENV"], {}, 2,
     "METHOD: not a Bitrix24 method name (':' at position 6)"),
    ("pair-without-equals", ["call", "crm.deal.list", "oops", "--webhook", "ENV"], {}, 2, "parameters are KEY=VALUE, got 'oops'"),
    ("pair-nested-too-deep", ["call", "crm.deal.list", "filter" + "[a]" * 5000 + "=1", "--webhook", "ENV"], {}, 2, "parameters: "),
    ("bad-config-detailed", ["provision", "plan", "--config", "missing.toml", "--detailed-exitcode", "--webhook", "ENV"], {}, 1,
     "config file not found"),
    ("unknown-option", ["provision", "plan", "--bogus"], {}, 2, "No such option '--bogus'"),
    ("unknown-option-detailed", ["provision", "plan", "--bogus", "--detailed-exitcode"], {}, 1, "No such option '--bogus'"),
    ("unknown-command", ["provison"], {}, 2, "No such command 'provison'"),
    ("bad-format", ["provision", "plan", "--format", "yaml"], {}, 2, "'yaml' is not one of 'text', 'json'"),
    ("timeout-zero", ["call", "profile", "--timeout", "0", "--webhook", "ENV"], {}, 2, "--timeout"),
    ("timeout-not-a-number", ["provision", "export", "--timeout", "soon", "--webhook", "ENV"], {}, 2, "'soon' is not a valid float range"),
    ("timeout-env-not-a-number", ["call", "profile", "--webhook", "ENV"], {"B24SYNC_TIMEOUT": "ten"}, 2,
     "B24SYNC_TIMEOUT='ten' is not a number of seconds"),
    ("timeout-env-negative", ["provision", "export", "--webhook", "ENV"], {"B24SYNC_TIMEOUT": "-3"}, 2,
     "B24SYNC_TIMEOUT must be between 0 and 86400 seconds"),
    ("timeout-env-nan", ["provision", "export", "--webhook", "ENV"], {"B24SYNC_TIMEOUT": "nan"}, 2, "B24SYNC_TIMEOUT must be between"),
    ("all-of-a-get", ["call", "crm.deal.get", "id=1", "--all", "--webhook", "ENV"], {}, 2, "--all needs a list method"),
]


@pytest.mark.parametrize(("args", "env", "code", "expected"), [c[1:] for c in ARG_CASES], ids=[c[0] for c in ARG_CASES])
def test_a_bad_argument_is_one_error_line_before_any_request(
    emulator: Any, args: list[str], env: dict[str, str], code: int, expected: str
) -> None:
    args = [emulator.url if a == "ENV" else a for a in args]
    env = {k: emulator.url if v == "ENV" else v for k, v in env.items()}
    result = run(*args, env=env)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.output and "test-webhook-code" not in result.output
    assert emulator.stats()["requests_total"] == 0


def test_json_output_gets_errors_as_json_on_stdout(emulator: Any, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    result = run("provision", "plan", "--format", "json", "--config", "conf", "--webhook", emulator.url)
    assert result.exit_code == 1 and result.stderr == ""
    assert json.loads(result.stdout)["errors"][0]["text"] == "conf: is a directory, not a config file"
    result = run("provision", "plan", "--format", "json", "--config", str(EXAMPLE), "--webhook", "")
    assert result.exit_code == 2 and result.stderr == ""
    [error] = json.loads(result.stdout)["errors"]
    assert error["message"].startswith("--webhook is empty")


def test_call_all_says_that_order_and_start_are_ignored(make_emulator: Any) -> None:
    server = make_emulator(seed=11, deals=120)
    result = run("call", "crm.deal.list", "--all", "order[ID]=DESC", "start=50", "select[]=ID", "--webhook", server.url)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "warning: --all exports every record in ID order from the first one: order and start ignored\n"
    ids = [int(json.loads(line)["ID"]) for line in result.stdout.splitlines()]
    assert ids == sorted(server.portal.records["deal"])


def test_an_unexpected_error_has_no_traceback_unless_asked(monkeypatch: Any, emulator: Any) -> None:
    import jobs.portal

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"boom at {emulator.url}")

    monkeypatch.setattr(jobs.portal, "run_call", broken)
    quiet = run("call", "profile")
    assert quiet.exit_code == 1
    assert quiet.stderr.startswith("error: unexpected RuntimeError: boom at http://127.0.0.1:")
    assert "(run with -vv to see where)" in quiet.stderr and "Traceback" not in quiet.stderr
    loud = run("-vv", "call", "profile")
    assert loud.exit_code == 1 and "Traceback (most recent call last)" in loud.stderr and "in broken" in loud.stderr
    for result in (quiet, loud):
        assert "test-webhook-code" not in result.stderr  # the webhook code is masked even in a traceback


def test_interrupting_a_command_exits_130(monkeypatch: Any) -> None:
    import jobs.portal

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs.portal, "run_call", interrupted)
    result = run("call", "profile")
    assert result.exit_code == 130 and result.stderr.endswith("error: interrupted\n")


# ---------------------------------------------------------------- a portal that never answers


class SilentServer:
    """A listening socket that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent() -> Any:
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.parametrize(("command", "note"), [
    (["call", "crm.category.list", "entityTypeId=2"], ""),
    (["provision", "plan", "--config", str(EXAMPLE)], ""),
    (["provision", "export"], ""),
    (["provision", "apply", "--config", str(EXAMPLE), "--yes"], "\nNothing was changed on the portal.\n"),
], ids=["call", "plan", "export", "apply"])
def test_a_portal_that_never_answers_fails_within_the_timeout(
    silent: SilentServer, tmp_path: Path, command: list[str], note: str
) -> None:
    """B24SYNC_TIMEOUT=2 against the 120 s default: the process must end long before the default
    would (the subprocess is killed at 60 s), naming the portal's host and never the webhook code;
    an apply that failed while reading says that nothing was changed."""
    url = f"http://127.0.0.1:{silent.port}/rest/1/{SECRET}/"
    env = {**os.environ, "B24SYNC_WEBHOOK": url, "B24SYNC_TIMEOUT": "2", "PYTHONPATH": str(ROOT)}
    env.pop("B24SYNC_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "jobs.cli", *command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: ") and f"127.0.0.1:{silent.port}" in done.stderr, done.stderr
    assert "timeout" in done.stderr and SECRET not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert silent.held  # the request really reached the silent server
    assert done.stderr.endswith(note)


def test_the_timeout_option_wins_over_the_environment(silent: SilentServer) -> None:
    url = f"http://127.0.0.1:{silent.port}/rest/1/{SECRET}/"
    result = run("call", "profile", "--timeout", "1", "--webhook", url, env={"B24SYNC_TIMEOUT": "600"})
    assert result.exit_code == 1 and f"127.0.0.1:{silent.port}" in result.stderr and "timeout" in result.stderr
    assert SECRET not in result.stderr


# ---------------------------------------------------------------- random command lines


WORDS = ["call", "provision", "plan", "apply", "export", "--config", "--webhook", "--timeout", "--out", "--plan",
         "--format", "json", "text", "--yes", "--allow-delete", "--detailed-exitcode", "--all", "-v", "--help",
         "crm.deal.list", "profile", "filter[>ID]=5", "select[]=ID", "a[b][c]=", "=", "", "0", "-1", "nan",
         "http://", "b24sync.toml", ".", "..", "/", "\x00", "é"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=8))
def test_random_command_lines_end_in_a_documented_exit_code(tmp_path: Path, argv: list[str]) -> None:
    """Any command line (no portal configured) ends in 0, 1 or 2 with no exception escaping and no traceback."""
    result = CliRunner().invoke(main, argv, catch_exceptions=False, env={"B24SYNC_TIMEOUT": "1"})
    assert result.exit_code in (0, 1, 2), (argv, result.output)
    assert "Traceback" not in result.output or verbosity(argv) >= 2, (argv, result.output)
    if result.exit_code and "--help" not in argv:
        assert "error: " in result.output or result.output.lstrip().startswith(("{", "Usage:")), (argv, result.output)
