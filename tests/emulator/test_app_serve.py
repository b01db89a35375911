"""``b24sync emulator serve`` as a real subprocess: one stdout line, clean exit on signals, --state."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

LINE = re.compile(r"^webhook: http://127\.0\.0\.1:(\d+)/rest/1/([^/\s]+)/$")
TLS_LINE = re.compile(r"^webhook: https://127\.0\.0\.1:(\d+)/rest/1/([^/\s]+)/$")


class Served:
    """A running ``emulator serve`` process and the webhook it printed."""

    def __init__(self, *args: str):
        tls = any(arg.startswith("--tls") for arg in args)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "emulator", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.line = self._first_line()
        match = (TLS_LINE if tls else LINE).match(self.line.rstrip("\n"))
        assert match, f"unexpected first line {self.line!r}"
        self.url = self.line.split(" ", 1)[1].strip()
        self.base = self.url.split("/rest/")[0]

    def _first_line(self, timeout: float = 60) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not box:
            self.proc.kill()
            raise AssertionError(f"no webhook line; stderr: {self.proc.stderr.read()}")
        return box[0]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


@pytest.fixture
def served() -> Any:
    started: list[Served] = []

    def start(*args: str) -> Served:
        proc = Served(*args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_one_line_then_clean_exit_on_signal(served: Any, sig: int) -> None:
    server = served("--secret", "cli-secret-code", "--rate", "100", "--burst", "100")
    assert server.line.endswith("/rest/1/cli-secret-code/\n")
    reply = requests.post(server.url + "batch", json={"cmd": {}}, timeout=10)
    assert reply.status_code == 200
    assert requests.get(server.url.replace("cli-secret-code", "wrong") + "batch", timeout=10).status_code == 401
    code, out, err = server.stop(sig)
    assert code == 0
    assert out == ""  # exactly one stdout line, already read
    assert "cli-secret-code" not in err


def test_random_secret_when_none_given(served: Any) -> None:
    first, second = served(), served()
    assert first.url.split("/")[-2] != second.url.split("/")[-2]
    assert first.url.split(":")[2] != second.url.split(":")[2]  # port 0 -> a free port each


def test_state_survives_a_restart_with_oauth_tokens(served: Any, tmp_path: Path) -> None:
    state, tokens_file = tmp_path / "portal.state", tmp_path / "tokens.json"
    first = served("--state", str(state), "--oauth-client-id", "local.cli", "--oauth-client-secret", "s3cret",
                   "--oauth-tokens", str(tokens_file))
    tokens = json.loads(tokens_file.read_text())
    assert oct(tokens_file.stat().st_mode & 0o777) == "0o600"
    assert tokens["client_endpoint"] == first.base + "/rest/"
    bound = requests.post(tokens["client_endpoint"] + "event.bind", timeout=10,
                          json={"auth": tokens["access_token"], "event": "ONCRMDEALUPDATE", "event_type": "offline"})
    assert bound.json()["result"] is True
    code, _, err = first.stop()
    assert code == 0 and state.exists()
    assert tokens["access_token"] not in err and tokens["refresh_token"] not in err

    second = served("--state", str(state))
    listed = requests.post(second.base + "/rest/event.get", json={"auth": tokens["access_token"]}, timeout=10)
    assert listed.json()["result"] == [{"event": "ONCRMDEALUPDATE", "handler": "", "auth_type": "0", "offline": 1}]
    refreshed = requests.get(second.base + "/oauth/token/", timeout=10, params={
        "grant_type": "refresh_token", "client_id": "local.cli", "client_secret": "s3cret",
        "refresh_token": tokens["refresh_token"],
    })
    assert refreshed.status_code == 200
    assert second.stop()[0] == 0


def test_seed_and_timezone(served: Any, tmp_path: Path) -> None:
    server = served("--seed", "120", "--timezone", "+05:00", "--rate", "100", "--burst", "100",
                    "--state", str(tmp_path / "seeded.state"))
    page = requests.post(server.url + "crm.deal.list", json={"select": ["ID", "DATE_CREATE"], "start": 0}, timeout=30).json()
    assert page["total"] > 50 and page["next"] == 50
    assert page["time"]["date_start"].endswith("+05:00")
    assert page["result"][0]["DATE_CREATE"].endswith("+05:00")
    added = requests.post(server.url + "crm.deal.add", json={"fields": {"TITLE": "После перезапуска"}}, timeout=30).json()
    assert server.stop()[0] == 0

    again = served("--state", str(tmp_path / "seeded.state"), "--seed", "999")  # the state file wins over --seed
    deal = requests.post(again.url + "crm.deal.get", json={"id": added["result"]}, timeout=30).json()["result"]
    assert deal["TITLE"] == "После перезапуска"
    total = requests.post(again.url + "crm.deal.list", json={"select": ["ID"]}, timeout=30).json()["total"]
    assert total == page["total"] + 1
    assert again.stop()[0] == 0


def test_limits_and_faults_flags_reach_the_server(served: Any) -> None:
    server = served("--burst", "2", "--rate", "0.001", "--faults", "seed=3")
    statuses = [requests.post(server.url + "batch", timeout=10).status_code for _ in range(3)]
    assert statuses == [200, 200, 503]
    stats = requests.get(server.base + "/_emulator/stats", timeout=10).json()
    assert stats["rejected_503"] == 1
    assert server.stop()[0] == 0


def test_bad_fault_spec_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "emulator", "serve", "--faults", "boom=1"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
        env={**os.environ},
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "boom" in proc.stderr


# ---------------------------------------------------------------------------- bad flags are usage errors


def run_serve(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``emulator serve`` with flags it must refuse before serving (a timeout means it served)."""
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", "emulator", "serve", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd or Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


class Crafted:
    """Unpickling this would create ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


def _busy_port(tmp_path: Path) -> list[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    _LISTENERS.append(listener)  # kept open until the module's tests end
    return ["--port", str(listener.getsockname()[1])]


_LISTENERS: list[socket.socket] = []


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


USAGE: list[tuple[str, Any, str]] = [
    ("port-in-use", _busy_port, "--port"),
    ("port-out-of-range", lambda tmp: ["--port", "70000"], "--port"),
    ("port-negative", lambda tmp: ["--port", "-1"], "--port"),
    ("timezone-out-of-range", lambda tmp: ["--timezone", "+25:00"], "--timezone"),
    ("timezone-not-an-offset", lambda tmp: ["--timezone", "Europe/Moscow"], "--timezone"),
    ("state-garbage", lambda tmp: ["--state", str(_file(tmp, "garbage.state", b"\x00\x01 not a state"))], "--state"),
    ("state-truncated-json", lambda tmp: ["--state", str(_file(tmp, "cut.state", b'{"format": "b24sync-emulator-state", '
                                                                                    b'"version": 1}\n{"part": "strin'))],
     "--state"),
    ("state-in-a-missing-directory", lambda tmp: ["--state", str(tmp / "missing" / "portal.state")], "--state"),
    ("state-is-a-directory", lambda tmp: ["--state", str(tmp)], "--state"),
    ("tls-cert-without-key", lambda tmp: ["--tls-cert", str(_file(tmp, "cert.pem", b"x"))], "--tls-key"),
    ("tls-pair-not-pem", lambda tmp: ["--tls-cert", str(_file(tmp, "c.pem", b"x")), "--tls-key", str(_file(tmp, "k.pem", b"y"))],
     "--tls-cert"),
    ("history-unknown", lambda tmp: ["--history", "ancient"], "--history"),
    ("host-unknown", lambda tmp: ["--host", "no-such-host.invalid"], "--host"),
]


@pytest.mark.parametrize("make, option", [(m, o) for _, m, o in USAGE], ids=[name for name, _, _ in USAGE])
def test_a_flag_the_emulator_cannot_use_is_a_usage_error_naming_it(tmp_path: Path, make: Any, option: str) -> None:
    proc = run_serve(*make(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and option in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_crafted_pickle_as_state_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    state = _file(tmp_path, "portal.state", pickle.dumps({"records": Crafted(marker)}))
    proc = run_serve("--state", str(state))
    assert proc.returncode == 2 and "--state" in proc.stderr and "pickled" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert state.read_bytes() == pickle.dumps({"records": Crafted(marker)})  # left as it was, not overwritten


# ---------------------------------------------------------------------------- HTTPS


def test_tls_serves_https_with_a_certificate_it_names_on_stderr(served: Any) -> None:
    server = served("--tls", "--secret", "tls-secret-code")
    assert server.url.startswith("https://127.0.0.1:")
    err_line = server.proc.stderr.readline()
    cert = Path(re.search(r"REQUESTS_CA_BUNDLE=(\S+)", err_line).group(1))
    assert cert.is_file() and "SSL_CERT_FILE=" in err_line
    assert requests.get(server.url + "server.time", verify=str(cert), timeout=10).json()["result"]
    localhost = server.url.replace("127.0.0.1", "localhost")
    assert requests.get(localhost + "profile", verify=str(cert), timeout=10).json()["result"]["ID"] == "1"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "server.time", timeout=10)  # not trusted without the certificate
    code, out, err = server.stop()
    assert code == 0 and out == ""
    assert "tls-secret-code" not in err
    assert not cert.exists()  # made for this run, removed with it


def test_tls_with_an_existing_certificate_and_key(served: Any, tmp_path: Path) -> None:
    from connector.emulator.tls import self_signed

    cert, key = self_signed(tmp_path)
    server = served("--tls-cert", str(cert), "--tls-key", str(key))
    assert server.url.startswith("https://")
    assert requests.post(server.url + "crm.deal.add", json={"fields": {"TITLE": "TLS"}}, verify=str(cert), timeout=10).json()["result"] == 1
    assert server.stop()[0] == 0
    assert cert.exists() and key.exists()  # someone else's files stay


def test_history_flag_picks_the_legacy_writer(served: Any) -> None:
    server = served("--history", "legacy", "--rate", "100", "--burst", "100")
    deal = requests.post(server.url + "crm.deal.add", json={"fields": {}}, timeout=10).json()["result"]
    for stage in ("WON", "EXECUTING"):
        requests.post(server.url + "crm.deal.update", json={"id": deal, "fields": {"STAGE_ID": stage}}, timeout=10)
    rows = requests.post(server.url + "crm.stagehistory.list", json={"entityTypeId": 2}, timeout=10).json()["result"]["items"]
    assert [(r["TYPE_ID"], r["STAGE_ID"]) for r in rows] == [(1, "NEW"), (2, "EXECUTING")]
    assert server.stop()[0] == 0


def test_starting_a_running_server_again_serves_it_once(portal):
    import threading

    from connector.emulator.app import EmulatorApp
    from connector.emulator.server import EmulatorServer

    def serving() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "b24-emulator" and t.is_alive()}

    before = serving()
    with EmulatorServer(EmulatorApp(portal, secret="twice")).start() as server:
        server.start()
        assert len(serving() - before) == 1
    assert not serving() - before
