"""Webhook and OAuth auth: URL parsing, reprs, token storage, refresh once per generation, the refresh race."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import errors, redact
from connector.auth import JsonFileTokenStore, MemoryTokenStore, OAuthAuth, Tokens, WebhookAuth
from connector.transport import HttpTransport

from tests.conftest import FakeClock, make_client

CODE = "abcd1234efgh5678"


def test_webhook_url_is_parsed_and_its_code_never_printed():
    auth = WebhookAuth(f"https://portal.bitrix24.ru/rest/7/{CODE}")
    assert auth.user_id == 7
    assert auth.origin == "https://portal.bitrix24.ru"
    target = auth.target("crm.deal.list", {"start": -1})
    assert target.url == f"https://portal.bitrix24.ru/rest/7/{CODE}/crm.deal.list"
    assert target.params == {"start": -1}
    for text in (repr(auth), str(auth), repr(target)):
        assert CODE not in text and "portal.bitrix24.ru" in text


@pytest.mark.parametrize(
    "url",
    ["portal.bitrix24.ru/rest/1/x/", "https://portal.bitrix24.ru/rest/", "https://portal/rest/admin/code/", "ftp://portal/rest/1/c/"],
)
def test_malformed_webhook_urls_are_refused_without_echoing_the_code(url):
    with pytest.raises(ValueError) as info:
        WebhookAuth(url)
    assert "rest/<user id>/<webhook code>/" in redact.redact(info.value)  # the hint survives masking


def test_webhook_cannot_be_refreshed():
    with pytest.raises(errors.AuthFailed):
        WebhookAuth(f"https://p/rest/1/{CODE}/").refresh(0, lambda url, query: {})


def _tokens(**changes):
    data = {
        "access_token": "access-old-1111",
        "refresh_token": "refresh-old-2222",
        "client_endpoint": "https://portal.bitrix24.com/rest/",
        "server_endpoint": "https://oauth.bitrix.info/rest/",
        "member_id": "m1",
    }
    data.update(changes)
    return Tokens.from_reply(data)


def test_oauth_target_puts_the_token_in_params_and_hides_every_secret():
    auth = OAuthAuth("local.app", "client-secret-3333", _tokens())
    target = auth.target("crm.deal.list", {"start": -1})
    assert target.url == "https://portal.bitrix24.com/rest/crm.deal.list"
    assert target.params == {"start": -1, "auth": "access-old-1111"}
    for text in (repr(auth), str(auth), repr(auth.tokens)):
        for secret in ("access-old-1111", "refresh-old-2222", "client-secret-3333"):
            assert secret not in text


@pytest.mark.parametrize(
    ("server_endpoint", "configured", "expected"),
    [
        ("https://oauth.bitrix.info/rest/", None, "https://oauth.bitrix.info/oauth/token/"),
        ("https://oauth.bitrix24.tech/rest/", None, "https://oauth.bitrix24.tech/oauth/token/"),
        (None, None, "https://oauth.bitrix.info/oauth/token/"),
        ("https://oauth.bitrix.info/rest/", "http://127.0.0.1:9/", "http://127.0.0.1:9/oauth/token/"),
    ],
    ids=["from-server-endpoint", "east", "default", "configured-wins"],
)
def test_token_endpoint_host(server_endpoint, configured, expected):
    auth = OAuthAuth("local.app", "s3cr3t", _tokens(server_endpoint=server_endpoint), oauth_server=configured)
    assert auth.token_url == expected


def test_refresh_asks_once_per_generation_and_saves_before_use():
    store = MemoryTokenStore()
    auth = OAuthAuth("local.app", "client-secret-3333", _tokens(), store=store)
    asked = []

    def fetch(url, query):
        asked.append((url, dict(query)))
        return {"access_token": "access-new-4444", "refresh_token": "refresh-new-5555", "expires_in": 3600}

    auth.refresh(0, fetch)
    auth.refresh(0, fetch)  # a thread that saw expired_token with the old token: nothing to do
    assert len(asked) == 1
    url, query = asked[0]
    assert url == "https://oauth.bitrix.info/oauth/token/"
    assert query == {
        "grant_type": "refresh_token",
        "client_id": "local.app",
        "client_secret": "client-secret-3333",
        "refresh_token": "refresh-old-2222",
    }
    assert auth.generation == 1
    assert store.tokens is not None and store.tokens.access_token == "access-new-4444"
    assert store.tokens.client_endpoint == "https://portal.bitrix24.com/rest/"  # kept from the old tokens
    assert auth.target("x.y", {}).params["auth"] == "access-new-4444"


def test_a_failed_refresh_is_fatal_and_keeps_the_old_tokens():
    store = MemoryTokenStore()
    auth = OAuthAuth("local.app", "s3cr3t", _tokens(), store=store)

    def fetch(url, query):
        raise errors.classify(400, {"error": "invalid_grant", "error_description": "Invalid grant"}, "oauth/token")

    with pytest.raises(errors.AuthFailed):
        auth.refresh(0, fetch)
    assert auth.generation == 0 and store.saves == 0
    assert auth.tokens.refresh_token == "refresh-old-2222"


def test_oauth_needs_tokens():
    with pytest.raises(ValueError):
        OAuthAuth("local.app", "s3cr3t", store=MemoryTokenStore())


def test_json_token_store_writes_atomically_with_mode_600(tmp_path):
    path = tmp_path / "tokens.json"
    store = JsonFileTokenStore(path)
    assert store.load() is None
    store.save(_tokens())
    store.save(_tokens(access_token="access-new-4444"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert store.load().access_token == "access-new-4444"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json"]  # no temp file left behind
    assert json.loads(path.read_text())["refresh_token"] == "refresh-old-2222"


def test_json_token_store_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "tokens.json"
    store = JsonFileTokenStore(path)
    store.save(_tokens())

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.save(_tokens(access_token="access-new-4444"))
    monkeypatch.undo()
    assert store.load().access_token == "access-old-1111"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json"]


def test_json_token_store_reads_the_emulators_token_file(tmp_path):
    reply = {**_tokens().to_dict(), "client_id": "local.app", "token_url": "http://127.0.0.1:1/oauth/token/", "scope": "crm"}
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(reply))
    tokens = JsonFileTokenStore(path).load()
    assert tokens.access_token == "access-old-1111" and tokens.extra["scope"] == "crm"


@responses.activate
def test_expired_token_refreshes_then_repeats_the_call(fake_time):
    responses.post(
        "https://portal.bitrix24.com/rest/profile",
        status=401,
        json={"error": "expired_token", "error_description": "The access token provided has expired."},
    )
    responses.post("https://portal.bitrix24.com/rest/profile", json={"result": {"ID": "1"}})
    responses.get(
        "https://oauth.bitrix.info/oauth/token/",
        json={"access_token": "access-new-4444", "refresh_token": "refresh-new-5555", "client_endpoint": "https://portal.bitrix24.com/rest/"},
    )
    store = MemoryTokenStore()
    auth = OAuthAuth("local.app", "s3cr3t", _tokens(), store=store)
    client = make_client(HttpTransport(), auth, fake_time)
    assert client.result("profile") == {"ID": "1"}
    bodies = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    assert [b["auth"] for b in bodies] == ["access-old-1111", "access-new-4444"]
    assert store.saves == 1


class _Barrier:
    """A transport wrapper: every thread's first expired_token waits until all threads have one."""

    def __init__(self, inner, parties):
        self.inner = inner
        self.barrier = threading.Barrier(parties, timeout=10)
        self.seen: set[int] = set()
        self.fetch_token = inner.fetch_token
        self.close = inner.close

    def send(self, method, params, auth, **options):
        try:
            return self.inner.send(method, params, auth, **options)
        except errors.ExpiredToken:
            me = threading.get_ident()
            if me not in self.seen:
                self.seen.add(me)
                self.barrier.wait()
            raise


@pytest.mark.parametrize("threads", [2, 6])
def test_refresh_race_many_threads_one_refresh(make_emulator, tmp_path, fake_time, threads):
    server = make_emulator(oauth=True)
    server.app.expire_tokens()
    data = server.oauth
    store = JsonFileTokenStore(tmp_path / "tokens.json")
    auth = OAuthAuth(data["client_id"], data["client_secret"], Tokens.from_reply(data), store=store)
    transport = _Barrier(HttpTransport(), threads)
    client = make_client(transport, auth, fake_time)
    results: list[object] = []
    failures: list[BaseException] = []

    def work():
        try:
            results.append(client.result("crm.category.list", {"entityTypeId": 2}))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            failures.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    assert failures == []
    assert len(results) == threads
    assert len(transport.seen) == threads  # every thread really got expired_token
    assert server.stats()["token_refreshes"] == 1
    assert auth.refreshes == 1 and auth.generation == 1
    assert store.load().access_token == auth.tokens.access_token != data["access_token"]
    client.close()


def test_new_tokens_are_stored_before_any_call_uses_them(make_emulator, fake_time):
    server = make_emulator(oauth=True)
    server.app.expire_tokens()
    events: list[str] = []

    class Recording(MemoryTokenStore):
        def save(self, tokens):
            events.append(f"saved {tokens.access_token}")
            super().save(tokens)

    class Spy(HttpTransport):
        def send(self, method, params, auth, **options):
            events.append(f"sent {auth.target(method, params or {}).params['auth']}")
            return super().send(method, params, auth, **options)

    data = server.oauth
    auth = OAuthAuth(data["client_id"], data["client_secret"], Tokens.from_reply(data), store=Recording())
    client = make_client(Spy(), auth, fake_time)
    client.call("crm.category.list", {"entityTypeId": 2})
    new = auth.tokens.access_token
    assert events == [f"sent {data['access_token']}", f"saved {new}", f"sent {new}"]
    client.close()


def _file_client(server, path):
    """A client of its own (own auth, own bucket) on the shared token file, as a second process has."""
    data = server.oauth
    store = JsonFileTokenStore(path)
    if store.load() is None:
        store.save(Tokens.from_reply(data))
    auth = OAuthAuth(data["client_id"], data["client_secret"], store=store)
    return make_client(HttpTransport(), auth, FakeClock()), auth


def test_two_clients_on_one_token_file_refresh_once(make_emulator, tmp_path):
    """The scheduled sync and an admin's ``b24sync call`` share a token file: the second adopts the first's refresh."""
    server = make_emulator(oauth=True)
    path = tmp_path / "tokens.json"
    first, first_auth = _file_client(server, path)
    second, second_auth = _file_client(server, path)
    server.app.expire_tokens()
    assert first.result("crm.category.list", {"entityTypeId": 2})
    assert second.result("crm.category.list", {"entityTypeId": 2})  # its refresh token was used up by the first
    assert server.stats()["token_refreshes"] == 1
    assert first_auth.refreshes == 1 and second_auth.refreshes == 0
    assert second_auth.tokens.access_token == first_auth.tokens.access_token == JsonFileTokenStore(path).load().access_token
    first.close()
    second.close()


def test_adopted_tokens_that_are_expired_too_are_refreshed(make_emulator, tmp_path):
    server = make_emulator(oauth=True)
    path = tmp_path / "tokens.json"
    first, first_auth = _file_client(server, path)
    second, second_auth = _file_client(server, path)
    server.app.expire_tokens()
    first.call("crm.category.list", {"entityTypeId": 2})
    server.app.expire_tokens()  # the tokens the first saved expire before the second uses them
    second.call("crm.category.list", {"entityTypeId": 2})
    assert server.stats()["token_refreshes"] == 2
    assert second_auth.refreshes == 1
    first.close()
    second.close()


_PROCESS = r"""
import sys, time
from pathlib import Path
from connector.auth import JsonFileTokenStore, OAuthAuth
from connector.client import Bitrix24Client, RetryPolicy
from connector.ratelimit import OperatingLedger, RequestPacer
from connector.transport import HttpTransport

path, client_id, secret, ready, go = sys.argv[1:6]
auth = OAuthAuth(client_id, secret, store=JsonFileTokenStore(path))
# a process of its own runs on the real clock, so its deadline is short
client = Bitrix24Client(HttpTransport(), auth, bucket=RequestPacer(burst=10_000, rate=10_000), ledger=OperatingLedger(), retry=RetryPolicy(max_elapsed=60))
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.01)
client.call("crm.category.list", {"entityTypeId": 2})
print(auth.refreshes)
"""


def test_two_processes_on_one_token_file_refresh_once(make_emulator, tmp_path):
    server = make_emulator(oauth=True)
    data = server.oauth
    path = tmp_path / "tokens.json"
    JsonFileTokenStore(path).save(Tokens.from_reply(data))
    server.app.expire_tokens()
    root = Path(__file__).resolve().parents[2]
    go = tmp_path / "go"
    procs = []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        args = [sys.executable, "-c", _PROCESS, str(path), data["client_id"], data["client_secret"], str(ready), str(go)]
        procs.append((subprocess.Popen(args, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), ready))
    for proc, ready in procs:
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.01)
    go.touch()
    outputs = [proc.communicate(timeout=60) for proc, _ in procs]
    assert [proc.returncode for proc, _ in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert sorted(int(out) for out, _ in outputs) == [0, 1]
    assert server.stats()["token_refreshes"] == 1


# ---------------------------------------------------------------- token replies that are not tokens

@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ([], "token reply is a JSON list, not an object"),
        ({"refresh_token": "ref-1234"}, "token reply without access_token"),
        ({"access_token": None, "refresh_token": "ref-1234"}, "token reply without access_token"),
        ({"access_token": "acc-1234", "refresh_token": {"x": 1}}, "token reply without refresh_token"),
        ({"access_token": "acc-1234", "refresh_token": "ref-1234", "client_endpoint": ["x"]}, "token reply without client_endpoint"),
        ({"access_token": "acc-1234", "refresh_token": "ref-1234", "client_endpoint": "https://p/rest/", "expires": "soon"},
         "token reply with an expires that is not a number"),
        ({"access_token": "acc-1234", "refresh_token": "ref-1234", "client_endpoint": "https://p/rest/", "expires": [1]},
         "token reply with an expires that is not a number"),
    ],
    ids=["list", "no-access", "null-access", "object-refresh", "list-endpoint", "text-expires", "list-expires"],
)
def test_a_token_reply_that_is_not_tokens_is_refused(reply, message):
    with pytest.raises(errors.AuthFailed) as info:
        Tokens.from_reply(reply)
    assert message in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["access_token", "refresh_token", "client_endpoint", "server_endpoint", "expires",
                                        "member_id", "domain", "error"]) | st.text(max_size=4),
                       st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6) | st.lists(st.integers(), max_size=2),
                       max_size=6))
def test_random_token_replies_raise_only_auth_errors(reply):
    try:
        tokens = Tokens.from_reply(reply)
    except errors.AuthFailed:
        return
    assert tokens.access_token and tokens.refresh_token and tokens.client_endpoint
