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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.emulator import new_portal
from connector.emulator.app import EmulatorApp
from connector.emulator.server import EmulatorServer
from connector.emulator.state import Portal

WEBHOOK_CODE = "test-webhook-code"
OAUTH_CLIENT_ID = "local.test.app"
OAUTH_CLIENT_SECRET = "test-client-secret"

GENEROUS = {"rate": 1_000_000.0, "burst": 1_000_000.0, "operating_budget": 1_000_000_000.0}


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


class FakeClock:
    """A settable unix-time source for limits and token expiry: ``clock()``, ``clock.advance(s)``."""

    def __init__(self, start: float = 1_780_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock to pass as ``make_emulator(clock=clock)``."""
    return FakeClock()
