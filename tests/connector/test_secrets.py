"""Canary secrets: a webhook code, OAuth tokens and a client secret planted, then every failure path run with
DEBUG logging; none of them may appear in logs, exception texts, tracebacks, reprs, or the CLI's output."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from connector import errors
from connector.auth import JsonFileTokenStore, OAuthAuth, Tokens, WebhookAuth
from connector.client import RetryPolicy
from connector.emulator.faults import FaultPlan
from connector.transport import HttpTransport
from tests.conftest import FakeClock, make_client

WEBHOOK_CODE = "CANARYwebhook5f1e2d"
WRONG_CODE = "CANARYwrongcode77aa"
CLIENT_SECRET = "CANARYclientSecret9a8b"
ACCESS = "CANARYaccess1c2d3e"
REFRESH = "CANARYrefresh3e4f5a"
CANARIES = [WEBHOOK_CODE, WRONG_CODE, CLIENT_SECRET, ACCESS, REFRESH]
ROOT = Path(__file__).resolve().parents[2]


def _client(auth, **options):
    """An HTTP client on a fake clock (its waits are instant; its reads are real and short)."""
    return make_client(
        HttpTransport(read_timeout=options.pop("read_timeout", 5.0)),
        auth,
        FakeClock(),
        retry=options.pop("retry", RetryPolicy(attempts=4, max_elapsed=60.0, base=0.01, cap=0.02)),
        **options,
    )


def _texts_of(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def _plant_oauth(server, client_id="local.canary"):
    app = server.app
    app.add_oauth_client(client_id, CLIENT_SECRET)
    with server.portal.lock:
        app.portal.oauth["access"][ACCESS] = {"client_id": client_id, "user_id": 1, "expires": 0}  # already expired
        app.portal.oauth["refresh"][REFRESH] = {"client_id": client_id, "user_id": 1, "expires": 4e9}
    return Tokens.from_reply(
        {"access_token": ACCESS, "refresh_token": REFRESH, "client_endpoint": server.oauth_url, "server_endpoint": server.oauth_url}
    )


def test_no_canary_escapes(make_emulator, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    server = make_emulator(seed=11, deals=120, secret=WEBHOOK_CODE, faults=FaultPlan.parse("hang=1"))
    assert WEBHOOK_CODE in server.url  # the canary is really in play
    texts: list[str] = []
    fresh_tokens: list[str] = []

    # --- webhook: success, every fault, fatal errors, a dead port
    client = _client(WebhookAuth(server.url), read_timeout=0.3, retry=RetryPolicy(attempts=8, max_elapsed=60.0, base=0.01, cap=0.02))
    texts += [repr(client), repr(client.auth), str(client.auth), repr(client.transport)]
    server.app.faults.push("5xx", "5xx", "html", "cut", "reset", "timeout")
    assert len(list(client.list_all("crm.deal.list", select=["ID"]))) == len(server.portal.records["deal"])
    for method, params in [("crm.deal.get", {"id": 999999}), ("crm.no.such", {})]:
        try:
            client.call(method, params)
        except errors.FatalError as exc:
            texts += _texts_of(exc)
            logging.getLogger("connector.client").exception("logged with a traceback")
    impatient = _client(WebhookAuth(server.url), read_timeout=0.3, retry=RetryPolicy(attempts=2, max_elapsed=60.0, base=0.01))
    server.app.faults.push("timeout", "reset")
    with pytest.raises(errors.TransportError) as info:
        impatient.call("crm.deal.list", {"start": -1})
    texts += _texts_of(info.value)
    server.app.faults.push("cut")
    with pytest.raises(errors.BadReplyError) as info:
        client.call("crm.deal.add", {"fields": {"TITLE": "x"}})
    texts += _texts_of(info.value)
    wrong = _client(WebhookAuth(server.url.replace(WEBHOOK_CODE, WRONG_CODE)))
    with pytest.raises(errors.AuthFailed) as info:
        wrong.call("profile")
    texts += _texts_of(info.value) + [repr(wrong.auth)]
    dead = _client(WebhookAuth(f"http://127.0.0.1:9/rest/1/{WEBHOOK_CODE}/"), retry=RetryPolicy(attempts=2, max_elapsed=60.0, base=0.01))
    with pytest.raises(errors.ConnectFailed) as info:
        dead.call("profile")
    texts += _texts_of(info.value)
    with pytest.raises(ValueError) as bad_url:
        WebhookAuth(f"https://portal.example/rest/admin/{WEBHOOK_CODE}/")
    texts += _texts_of(bad_url.value)

    # --- OAuth: expired token refreshed, a refused refresh, an unreachable token server
    store = JsonFileTokenStore(tmp_path / "tokens.json")
    auth = OAuthAuth("local.canary", CLIENT_SECRET, _plant_oauth(server), store=store)
    oauth = _client(auth)
    texts += [repr(auth), str(auth), repr(auth.tokens), repr(store), repr(oauth), repr(auth.target("profile", {}))]
    assert oauth.result("profile")
    fresh_tokens += [auth.tokens.access_token, auth.tokens.refresh_token]
    server.app.expire_tokens()
    with server.portal.lock:
        server.portal.oauth["refresh"].clear()  # the next refresh is refused: invalid_grant
    with pytest.raises(errors.AuthFailed) as info:
        oauth.call("profile")
    texts += _texts_of(info.value)
    unreachable = OAuthAuth("local.canary", CLIENT_SECRET, _plant_oauth(server, "local.canary2"), oauth_server="http://127.0.0.1:9")
    with pytest.raises(errors.RefreshFailed) as info:  # the call was never sent: only the token server failed
        _client(unreachable, retry=RetryPolicy(attempts=1, max_elapsed=60.0)).call("profile")
    assert isinstance(info.value.cause, errors.ConnectFailed)
    texts += _texts_of(info.value) + _texts_of(info.value.cause)

    # --- the CLI, in a subprocess with -vv (DEBUG), success and failures
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24SYNC_")}
    env["PYTHONPATH"] = str(ROOT)
    runs = [
        ["call", "crm.deal.list", "select[]=ID", "start=-1", "--webhook", server.url],
        ["call", "crm.deal.list", "--all", "select[]=TITLE", "--webhook", server.url],
        ["call", "crm.no.such", "--webhook", server.url],
        ["call", "profile", "--webhook", server.url.replace(WEBHOOK_CODE, WRONG_CODE)],
        ["call", "profile", "--webhook", f"http://127.0.0.1:9/rest/1/{WEBHOOK_CODE}/"],
        ["call", "profile", "--webhook", f"https://portal.example/rest/x/{WEBHOOK_CODE}/"],
    ]
    codes = []
    for args in runs:
        done = subprocess.run([sys.executable, "-m", "jobs.cli", "-vv", *args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        codes.append(done.returncode)
        texts += [done.stdout, done.stderr]
    assert codes[:2] == [0, 0] and all(code != 0 for code in codes[2:])
    assert any("DEBUG" in t and "/rest/1/***/" in t for t in texts)  # DEBUG really ran and was masked

    # --- collect everything that was logged or printed
    texts.append(caplog.text)
    for record in caplog.records:
        texts += [record.getMessage(), record.exc_text or ""]
    out, err = capfd.readouterr()
    texts += [out, err]
    assert any("retrying" in t for t in texts)  # the failure paths were really taken

    for secret in CANARIES + fresh_tokens:
        leaks = [t for t in texts if secret in t]
        assert not leaks, f"{secret[:6]}… leaked in: {leaks[0][:300]!r}"
    client.close()
    oauth.close()


def test_a_logger_that_did_not_exist_before_is_masked_too(caplog):
    """Secrets are masked where records are made, whatever logger or handler: a fresh one at DEBUG, its own handler."""
    import io
    import uuid

    from connector import redact

    token = "CANARYoauthToken7d6c5b"
    redact.register(token)
    name = f"jobs.sync.fresh_{uuid.uuid4().hex}"
    logger = logging.getLogger(name)  # created now, after the connector was imported
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger=name):
            logger.debug("calling %s with auth=%s", f"https://portal.example.ru/rest/1/{WEBHOOK_CODE}/crm.deal.list", token)
            logger.info("token reply: %r", {"access_token": token, "refresh_token": REFRESH})
            try:
                raise RuntimeError(f"failed at https://portal.example.ru/rest/1/{WEBHOOK_CODE}/profile")
            except RuntimeError:
                logger.exception("with a traceback")
    finally:
        logger.removeHandler(handler)
    printed = stream.getvalue() + caplog.text
    assert "/rest/1/***/crm.deal.list" in printed and "auth=***" in printed and "Traceback" in printed
    for secret in (WEBHOOK_CODE, token, REFRESH):
        assert secret not in printed
    assert all(secret not in record.getMessage() for record in caplog.records for secret in (WEBHOOK_CODE, token, REFRESH))
