"""Fault injection: deterministic by seed, and each kind misbehaves on the wire as specified."""

from __future__ import annotations

import http.client
import socket
from typing import Any

import pytest
import requests

from connector.emulator.faults import KINDS, FaultPlan
from tests.conftest import WEBHOOK_CODE

HOOK = f"/rest/1/{WEBHOOK_CODE}"
SPEC = "5xx=0.2,timeout=0.1,html=0.1,cut=0.1,reset=0.1,seed=7"


@pytest.fixture
def counted(register_method: Any) -> list[int]:
    """``test.count`` records each run, so a test can tell whether the method ran."""
    runs: list[int] = []

    def count(call: Any) -> dict[str, Any]:
        runs.append(1)
        return {"n": len(runs), "payload": "x" * 200}

    register_method("test.count", count)
    return runs


def test_same_seed_same_faults() -> None:
    first = [FaultPlan.parse(SPEC).draw() for _ in range(1)]
    plan_a, plan_b = FaultPlan.parse(SPEC), FaultPlan.parse(SPEC)
    seq_a = [plan_a.draw() for _ in range(300)]
    seq_b = [plan_b.draw() for _ in range(300)]
    assert seq_a == seq_b
    assert seq_a[:1] == first
    other = FaultPlan.parse(SPEC.replace("seed=7", "seed=8"))
    assert [other.draw() for _ in range(300)] != seq_a
    assert set(seq_a) == {None, *KINDS}  # every kind occurs with these rates
    assert plan_a.injected == {k: seq_a.count(k) for k in KINDS}


def test_parse_spec() -> None:
    plan = FaultPlan.parse(" 5xx=0.05, timeout=0.02 ,html=0.01,cut=0.01,reset=0.01,seed=7,hang=1.5")
    assert plan.rates == {"5xx": 0.05, "timeout": 0.02, "html": 0.01, "cut": 0.01, "reset": 0.01}
    assert (plan.seed, plan.hang) == (7, 1.5)
    assert not FaultPlan.parse("").active
    assert not FaultPlan.parse(None).active


@pytest.mark.parametrize("spec", ["boom=0.1", "5xx", "5xx=lots", "5xx=0.7,html=0.7"])
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        FaultPlan.parse(spec)


def test_no_faults_without_rates() -> None:
    plan = FaultPlan.parse("seed=3")
    assert [plan.draw() for _ in range(100)] == [None] * 100


def test_in_process_fault_shapes(make_emulator: Any, counted: list) -> None:
    app = make_emulator(http=False)
    app.faults.push("5xx", "5xx", "html", "html", "cut", "reset", "timeout", None)
    replies = [app.request("GET", f"{HOOK}/test.count") for _ in range(8)]

    assert (replies[0].status, replies[0].json()["error"]) == (500, "INTERNAL_SERVER_ERROR")
    assert (replies[1].status, replies[1].body) == (502, b"Bad Gateway")
    assert [r.status for r in replies[2:4]] == [502, 503]
    assert all(dict(r.headers)["Content-Type"] == "text/html" and b"nginx" in r.body for r in replies[2:4])
    cut = replies[4]
    assert cut.fault == "cut" and cut.status == 200 and cut.length is not None and len(cut.body) < cut.length
    assert [r.fault for r in replies[5:7]] == ["reset", "timeout"]
    assert replies[7].status == 200 and replies[7].fault is None
    # only "cut" lets the method run (the reply is lost after the work); the others fail before it
    assert len(counted) == 2
    assert app.stats()["faults"] == {"5xx": 2, "html": 2, "cut": 1, "reset": 1, "timeout": 1}


def test_seeded_faults_are_the_same_over_http(make_emulator: Any, counted: list) -> None:
    def statuses() -> list[Any]:
        emulator = make_emulator(faults="5xx=0.3,html=0.2,seed=11")
        seen = []
        for _ in range(30):
            reply = requests.get(emulator.url + "test.count", timeout=10)
            seen.append((reply.status_code, reply.headers.get("Content-Type", "").split(";")[0]))
        return seen

    first, second = statuses(), statuses()
    assert first == second
    assert {s for s, _ in first} >= {200, 500, 502}


def _raw_get(emulator: Any, path: str, timeout: float = 10) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(emulator.host, emulator.port, timeout=timeout)
    conn.request("GET", path)
    return conn.getresponse()


def test_cut_body_over_http(make_emulator: Any, counted: list) -> None:
    emulator = make_emulator()
    emulator.app.faults.push("cut")
    reply = _raw_get(emulator, f"{HOOK}/test.count")
    assert reply.status == 200
    declared = int(reply.getheader("Content-Length"))
    with pytest.raises(http.client.IncompleteRead) as cut:
        reply.read()
    assert 0 < len(cut.value.partial) < declared
    emulator.app.faults.push("cut")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(emulator.url + "test.count", timeout=10)


def test_reset_over_http(make_emulator: Any, counted: list) -> None:
    emulator = make_emulator()
    emulator.app.faults.push("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(emulator.url + "test.count", timeout=10)
    assert counted == []
    assert requests.get(emulator.url + "test.count", timeout=10).status_code == 200  # the server lives on


def test_timeout_hangs_past_the_client_timeout(make_emulator: Any, counted: list) -> None:
    emulator = make_emulator(faults=FaultPlan.parse("hang=30"))
    emulator.app.faults.push("timeout")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(emulator.url + "test.count", timeout=0.3)
    assert counted == []
    # a hanging request must not keep the server from stopping (the fixture stops it after the test)
    emulator.stop()
    with pytest.raises(OSError):
        socket.create_connection((emulator.host, emulator.port), timeout=1).close()


def test_timeout_closes_without_reply_after_hang(make_emulator: Any, counted: list) -> None:
    emulator = make_emulator(faults=FaultPlan.parse("hang=0.05"))
    emulator.app.faults.push("timeout")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(emulator.url + "test.count", timeout=10)


def test_stats_endpoint_and_oauth_token_endpoint_never_fault(make_emulator: Any) -> None:
    emulator = make_emulator(faults="5xx=1.0,seed=1")
    assert requests.get(f"{emulator.base_url}/_emulator/stats", timeout=10).status_code == 200
    assert requests.get(emulator.url + "batch", timeout=10).status_code in (500, 502)


@pytest.mark.parametrize("path", ["/rest/1/{code}/crm.deal.get?id=999999999", "/rest/1/wrong-code/crm.deal.list"],
                         ids=["method-error-400", "auth-error-401"])
def test_cut_applies_to_error_replies_too(make_emulator: Any, path: str) -> None:
    emulator = make_emulator()
    emulator.app.faults.push("cut")
    reply = _raw_get(emulator, path.format(code=WEBHOOK_CODE))
    assert reply.status in (400, 401)
    with pytest.raises(http.client.IncompleteRead):
        reply.read()
    assert emulator.stats()["faults"]["cut"] == 1
