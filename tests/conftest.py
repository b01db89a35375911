"""Shared fixtures: a fresh portal, the emulator over real HTTP, and a factory for custom emulators.

- ``portal``: ``new_portal()`` (defaults installed, not seeded).
- ``emulator``: that portal served on 127.0.0.1 (random port) with generous limits; ``.url`` is
  the webhook URL, ``.portal``, ``.app``, ``.stats()``, ``.base_url``.
- ``make_emulator(portal=None, *, seed=None, deals=None, oauth=False, http=True, **app_options)``:
  any limits/faults/latency/clock (``EmulatorApp`` keyword arguments). ``seed`` builds a seeded
  portal (cached per session, a fresh copy each time). ``oauth=True`` installs an app: ``.oauth``
  holds ``client_id``, ``client_secret``, ``access_token``, ``refresh_token``; calls go to
  ``.oauth_url``. ``http=False`` returns the bare ``EmulatorApp`` (in-process, no socket).
- ``emulator_app``: the in-process app on ``portal`` with generous limits.
- ``clock`` (also as ``fake_time``): one ``FakeClock`` (``clock()``, ``sleep``, ``advance``, ``sleeps``)
  for the emulator and the client alike.
- ``make_client(transport, auth, clock, ...)``: a client on that clock; ``client_for(server_or_url)``
  an HTTP client on it for an emulator; ``mock_client(handler)`` one on ``MockTransport(handler)``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from connector import redact
from connector.auth import WebhookAuth
from connector.client import Bitrix24Client, RetryPolicy
from connector.emulator import new_portal
from connector.emulator.app import EmulatorApp
from connector.emulator.server import EmulatorServer
from connector.emulator.state import Portal
from connector.ratelimit import OperatingLedger, RequestPacer
from connector.transport import HttpTransport, MockTransport

WEBHOOK_CODE = "test-webhook-code"
OAUTH_CLIENT_ID = "local.test.app"
OAUTH_CLIENT_SECRET = "test-client-secret"

GENEROUS = {"rate": 1_000_000.0, "burst": 1_000_000.0, "operating_budget": 1_000_000_000.0}


@pytest.fixture(autouse=True)
def _secrets_registered_by_this_test_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with the secrets registered before the suite began plus its own, never another
    test's: a test that registers a plain word as a secret (say "secret") must not mask that word in
    the messages later tests assert on."""
    monkeypatch.setattr(redact, "_known", set(redact._known))


@pytest.fixture(scope="session")
def seeded_portal(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``seeded_portal(seed, deals=None, tz="+03:00")`` -> a fresh copy of a seeded portal (built once per session)."""
    files: dict[tuple[int, int | None, str], Path] = {}

    def build(seed: int, deals: int | None = None, tz: str = "+03:00") -> Portal:
        key = (seed, deals, tz)
        if key not in files:
            path = tmp_path_factory.mktemp("seeded") / f"portal-{seed}-{deals}.state"
            new_portal(tz, seed=seed, deals=deals).save(path)
            files[key] = path
        return Portal.load(files[key])

    return build


@pytest.fixture
def portal() -> Portal:
    """A fresh portal with default pipelines, dictionaries and users, no records."""
    return new_portal()


@pytest.fixture
def make_emulator(seeded_portal: Any) -> Any:
    """Factory of emulators with custom options; every server it starts is stopped after the test."""
    started: list[EmulatorServer] = []

    def factory(
        portal: Portal | None = None,
        *,
        seed: int | None = None,
        deals: int | None = None,
        oauth: bool = False,
        http: bool = True,
        secret: str = WEBHOOK_CODE,
        **options: Any,
    ) -> Any:
        if portal is None:
            portal = seeded_portal(seed, deals) if seed is not None else new_portal()
        app = EmulatorApp(portal, secret=secret, **{**GENEROUS, **options})
        tokens = None
        if oauth:
            tokens = app.add_oauth_client(OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET)
            tokens.update(client_id=OAUTH_CLIENT_ID, client_secret=OAUTH_CLIENT_SECRET)
        if not http:
            app.oauth = tokens  # type: ignore[attr-defined]
            return app
        server = EmulatorServer(app, secret=secret).start()
        started.append(server)
        if tokens is not None:
            tokens["client_endpoint"] = tokens["server_endpoint"] = server.oauth_url
            tokens["token_url"] = f"{server.base_url}/oauth/token/"
        server.oauth = tokens
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def emulator(make_emulator: Any, portal: Portal) -> EmulatorServer:
    """The ``portal`` served over HTTP on 127.0.0.1 with generous limits."""
    return make_emulator(portal)


@pytest.fixture
def emulator_app(portal: Portal) -> EmulatorApp:
    """The ``portal`` behind an in-process app (no socket) with generous limits."""
    return EmulatorApp(portal, secret=WEBHOOK_CODE, **GENEROUS)


@pytest.fixture
def register_method() -> Any:
    """``register_method(name, handler, **spec)``: a test-only method, removed again after the test."""
    from connector.emulator import registry

    added: list[str] = []

    def register(name: str, handler: Any, **spec: Any) -> Any:
        registry.load_methods()
        registry.method(name, **spec)(handler)
        added.append(name.lower())
        return handler

    yield register
    for name in added:
        registry.METHODS.pop(name, None)


# ---------------------------------------------------------------- one fake clock for the whole suite


class FakeClock:
    """Time that only moves when told: ``clock()`` is the time, ``sleep(s)`` records and advances it.

    One class for every fake time source: the emulator's clock (limits, token expiry) and the
    client's clock and sleep (pacer, ledger, backoff, deadlines), so nothing really waits.
    """

    def __init__(self, start: float = 1_780_000_000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Advance time instead of waiting, and remember the wait."""
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep."""
        with self._lock:
            self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock, e.g. ``make_emulator(clock=clock)``; the same object as ``fake_time``."""
    return FakeClock()


@pytest.fixture
def fake_time(clock: FakeClock) -> FakeClock:
    """The test's fake clock under the name the client tests use (one clock shared by client and emulator)."""
    return clock


# ---------------------------------------------------------------- clients on fake time

FAST_RETRY = RetryPolicy(attempts=4, max_elapsed=900.0, base=0.01, cap=0.05)


def make_client(
    transport: Any,
    auth: Any,
    clock: FakeClock,
    *,
    burst: float = 1_000_000,
    rate: float = 1_000_000,
    retry: RetryPolicy = FAST_RETRY,
    **options: Any,
) -> Bitrix24Client:
    """A client whose pacer, ledger, backoff and deadline all run on ``clock`` (nothing really sleeps).

    HTTP reads still take real time; they are bounded by ``retry.max_elapsed`` as measured on ``clock``.
    """
    return Bitrix24Client(
        transport,
        auth,
        bucket=RequestPacer(burst=burst, rate=rate, clock=clock, sleep=clock.sleep),
        ledger=OperatingLedger(clock=clock),
        retry=retry,
        clock=clock,
        sleep=clock.sleep,
        **options,
    )


@pytest.fixture
def client_for(fake_time: FakeClock) -> Any:
    """``client_for(server_or_url, **options)``: an HTTP client on fake time for an emulator or a webhook URL.

    Options: ``transport=`` (default ``HttpTransport(read_timeout=10)``), ``read_timeout=``,
    ``auth=`` (default the server's webhook), and any of ``make_client``'s. Closed after the test.
    """
    made: list[Bitrix24Client] = []

    def build(target: Any, **options: Any) -> Bitrix24Client:
        url = target if isinstance(target, str) else target.url
        transport = options.pop("transport", None) or HttpTransport(read_timeout=options.pop("read_timeout", 10.0))
        client = make_client(transport, options.pop("auth", None) or WebhookAuth(url), fake_time, **options)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


MOCK_WEBHOOK = "https://portal.example.ru/rest/1/mockwebhook0code/"


@pytest.fixture
def mock_client(fake_time: FakeClock) -> Any:
    """``mock_client(handler, **options)``: a client on fake time whose transport is ``MockTransport(handler)``.

    ``handler(request) -> reply`` (see ``connector.transport.MockTransport``); the client's
    ``transport.requests`` lists what was sent. Options as for ``make_client`` (``auth=`` too).
    """

    def build(handler: Any, **options: Any) -> Bitrix24Client:
        auth = options.pop("auth", None) or WebhookAuth(MOCK_WEBHOOK)
        return make_client(MockTransport(handler), auth, fake_time, **options)

    return build
