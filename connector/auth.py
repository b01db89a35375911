"""Who we are to the portal: an incoming webhook URL, or OAuth 2 tokens refreshed on ``expired_token``.

An auth object decides the URL of each method and the parameters that carry the credential; the
transport asks it through ``target``. OAuth refreshes exactly once however many threads hit
``expired_token`` together, and persists the new tokens (``TokenStore``) before anyone uses them;
processes sharing one token file refresh under a file lock and adopt each other's new tokens.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from connector import errors, redact
from connector.catalog import check_method

log = logging.getLogger(__name__)

DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info"
TOKEN_PATH = "/oauth/token/"

# fetch(url, query) -> decoded JSON reply of the OAuth server (the transport provides it)
TokenFetcher = Callable[[str, Mapping[str, str]], Mapping[str, Any]]


@dataclass(frozen=True)
class Target:
    """Where one call goes: the full method URL and the parameters including the credential."""

    url: str
    params: dict[str, Any]

    def __repr__(self) -> str:
        return f"Target({redact.mask_url(self.url)!r})"


class Auth(Protocol):
    """What the transport and the client need from an auth object."""

    generation: int

    def target(self, method: str, params: Mapping[str, Any]) -> Target:
        """The URL and parameters (credential included) of one call."""
        ...

    def refresh(self, seen_generation: int, fetch: TokenFetcher) -> None:
        """React to ``expired_token`` seen with credentials of ``seen_generation``."""
        ...

    def rehost(self, origin: str) -> None:
        """The portal moved to ``origin`` (``https://new.bitrix24.ru``): send further calls there."""
        ...


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _with_origin(url: str, origin: str) -> str:
    parts = urlsplit(url)
    return origin.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


# ---------------------------------------------------------------- webhook


class WebhookAuth:
    """An incoming webhook: ``https://portal.bitrix24.ru/rest/1/CODE/``; the code is the secret."""

    generation = 0

    def __init__(self, url: str):
        parts = urlsplit(url.strip())
        segments = [s for s in parts.path.split("/") if s]
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or len(segments) < 3
            or segments[0] != "rest"
            or not segments[1].isdigit()
        ):
            shown = f"{parts.scheme}://{parts.netloc}/..." if parts.netloc else "something else"
            # placeholders with spaces: redact's /rest/<id>/<code> pattern must not mask the hint itself
            raise ValueError(f"a webhook URL looks like https://PORTAL/rest/<user id>/<webhook code>/ (got {shown})")
        self.user_id = int(segments[1])
        self._code = segments[2]
        redact.register(self._code)
        self._origin = f"{parts.scheme}://{parts.netloc}"

    @property
    def base_url(self) -> str:
        """The webhook URL with its secret code, ending in ``/`` (never print it)."""
        return f"{self._origin}/rest/{self.user_id}/{self._code}/"

    @property
    def origin(self) -> str:
        """``https://portal.bitrix24.ru``: safe to print."""
        return self._origin

    def target(self, method: str, params: Mapping[str, Any]) -> Target:
        """``<webhook>/<method>`` with the parameters unchanged (``InvalidMethodName`` for anything but a method name)."""
        return Target(self.base_url + check_method(method), dict(params))

    def refresh(self, seen_generation: int, fetch: TokenFetcher) -> None:
        """Webhooks have no token to refresh: an ``expired_token`` here is a configuration error."""
        raise errors.AuthFailed("expired_token", "a webhook cannot be refreshed", 401)

    def rehost(self, origin: str) -> None:
        """Send further calls to the portal's new address."""
        self._origin = origin.rstrip("/")

    def __repr__(self) -> str:
        return f"WebhookAuth({self._origin}/rest/{self.user_id}/{redact.MASK}/)"

    __str__ = __repr__


# ---------------------------------------------------------------- OAuth tokens and their storage


@dataclass(frozen=True)
class Tokens:
    """The OAuth state of one portal installation, as the token endpoint returns it."""

    access_token: str
    refresh_token: str
    client_endpoint: str  # https://portal.bitrix24.ru/rest/
    server_endpoint: str | None = None  # https://oauth.bitrix.info/rest/
    expires: float | None = None
    member_id: str | None = None
    domain: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_reply(cls, data: Mapping[str, Any], previous: "Tokens | None" = None) -> "Tokens":
        """Tokens from an OAuth server reply (or a stored file); missing endpoints come from ``previous``."""
        known = {"access_token", "refresh_token", "client_endpoint", "server_endpoint", "expires", "member_id", "domain"}
        if not isinstance(data, Mapping):
            raise errors.AuthFailed("invalid_grant", f"token reply is a JSON {type(data).__name__}, not an object")
        access, refresh_token = _text(data, "access_token"), _text(data, "refresh_token")
        if access is None or refresh_token is None:
            raise errors.AuthFailed("invalid_grant", f"token reply without {'access_token' if access is None else 'refresh_token'}")
        endpoint = _text(data, "client_endpoint") or (previous.client_endpoint if previous else None)
        if not endpoint:
            raise errors.AuthFailed("invalid_grant", "token reply without client_endpoint")
        expires = data.get("expires")
        try:
            expiry = float(expires) if expires not in (None, "") else None
        except (TypeError, ValueError, OverflowError):
            raise errors.AuthFailed("invalid_grant", "token reply with an expires that is not a number") from None
        return cls(
            access_token=access,
            refresh_token=refresh_token,
            client_endpoint=endpoint,
            server_endpoint=_text(data, "server_endpoint") or (previous.server_endpoint if previous else None),
            expires=expiry,
            member_id=_text(data, "member_id") or (previous.member_id if previous else None),
            domain=_text(data, "domain") or (previous.domain if previous else None),
            extra={k: v for k, v in data.items() if k not in known and k != "extra"},
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for storage."""
        return asdict(self)

    def __repr__(self) -> str:
        return f"Tokens(client_endpoint={self.client_endpoint!r}, access_token={redact.MASK}, refresh_token={redact.MASK})"

    __str__ = __repr__


def _text(data: Mapping[str, Any], key: str) -> str | None:
    """``data[key]`` as non-empty text (numbers are taken as their text), else None."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value) or None


class TokenStore(Protocol):
    """Where OAuth tokens live between runs (a JSON file here; a database table can implement it too)."""

    def load(self) -> Tokens | None:
        """The stored tokens, or None when nothing is stored yet."""
        ...

    def save(self, tokens: Tokens) -> None:
        """Persist tokens durably; must be complete before it returns."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """Exclusive access for a refresh (load, refresh, save) among every user of this store."""
        ...


class MemoryTokenStore:
    """Keeps tokens in memory (tests, one-off runs)."""

    def __init__(self, tokens: Tokens | None = None):
        self.tokens = tokens
        self.saves = 0
        self._lock = threading.Lock()

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """A lock shared by every auth object using this store."""
        return self._lock

    def load(self) -> Tokens | None:
        """The tokens held."""
        return self.tokens

    def save(self, tokens: Tokens) -> None:
        """Replace the tokens held."""
        self.tokens = tokens
        self.saves += 1

    def __repr__(self) -> str:
        return f"MemoryTokenStore(saves={self.saves})"


class JsonFileTokenStore:
    """Tokens in a JSON file, mode 0600, replaced atomically (temp file, fsync, rename, fsync dir)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def load(self) -> Tokens | None:
        """The tokens in the file, or None when the file does not exist."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError(f"token file {self.path} is not JSON") from None
        return Tokens.from_reply(data)

    def save(self, tokens: Tokens) -> None:
        """Write the tokens to a temp file next to the target, fsync it, and rename it over the target."""
        directory = self.path.parent if str(self.path.parent) else Path(".")
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(tokens.to_dict(), fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock between processes: ``flock`` on ``<token file>.lock``, held for a whole refresh.

        Bitrix24 accepts a refresh token once, so two processes refreshing with the same one
        leave the second with ``invalid_grant``; under this lock the second sees the first's new
        tokens in the file instead.
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"JsonFileTokenStore({str(self.path)!r})"


# ---------------------------------------------------------------- OAuth


class OAuthAuth:
    """OAuth 2 application credentials: calls go to ``client_endpoint`` with ``auth=<access token>``.

    On ``expired_token`` the client calls ``refresh(seen_generation, fetch)``: under a lock, only
    the first thread whose token generation is still current asks the token endpoint; the new
    tokens are saved to the store before the generation advances, and every other thread simply
    repeats its call with the new token. Other processes (or auth objects) sharing the store are
    coordinated through the store's lock: the store is re-read under it, and tokens someone else
    saved meanwhile are adopted instead of spending our (already used) refresh token.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        tokens: Tokens | None = None,
        *,
        store: TokenStore | None = None,
        oauth_server: str | None = None,
        client_endpoint: str | None = None,
    ):
        self.client_id = client_id
        self._client_secret = client_secret
        self.store = store
        self._explicit_server = oauth_server.rstrip("/") if oauth_server else None
        if tokens is None and store is not None:
            tokens = store.load()
        if tokens is None:
            raise ValueError("OAuth needs tokens: pass them or a token store that holds them")
        self._client_endpoint = client_endpoint
        if client_endpoint:
            tokens = replace(tokens, client_endpoint=client_endpoint)
        self._tokens = tokens
        self._lock = threading.Lock()
        self.generation = 0
        self.refreshes = 0
        redact.register(client_secret, tokens.access_token, tokens.refresh_token)

    @property
    def tokens(self) -> Tokens:
        """The current tokens."""
        return self._tokens

    @property
    def client_endpoint(self) -> str:
        """``https://portal.bitrix24.ru/rest/``, always ending in ``/``."""
        endpoint = self._tokens.client_endpoint
        return endpoint if endpoint.endswith("/") else endpoint + "/"

    @property
    def token_url(self) -> str:
        """The token endpoint: the configured server, else the host of ``server_endpoint``, else oauth.bitrix.info."""
        if self._explicit_server:
            server = self._explicit_server
        elif self._tokens.server_endpoint:
            server = _origin(self._tokens.server_endpoint)
        else:
            server = DEFAULT_OAUTH_SERVER
        return server + TOKEN_PATH

    def target(self, method: str, params: Mapping[str, Any]) -> Target:
        """``<client_endpoint><method>`` with ``auth`` added to the parameters (``InvalidMethodName`` as for webhooks)."""
        tokens = self._tokens
        endpoint = tokens.client_endpoint if tokens.client_endpoint.endswith("/") else tokens.client_endpoint + "/"
        return Target(endpoint + check_method(method), {**params, "auth": tokens.access_token})

    def refresh(self, seen_generation: int, fetch: TokenFetcher) -> None:
        """Refresh once per generation: a caller holding an outdated generation just returns.

        Under the thread lock and the store's lock: when the store holds other tokens than ours,
        another process refreshed; adopt them (the caller repeats its call) instead of refreshing.
        """
        with self._lock:
            if self.generation != seen_generation:
                return
            with self._store_lock():
                stored = self._stored()
                if stored is not None and (stored.access_token, stored.refresh_token) != (
                    self._tokens.access_token,
                    self._tokens.refresh_token,
                ):
                    log.info("the OAuth tokens for %s were refreshed elsewhere; using those", _origin(self.client_endpoint))
                    self._adopt(stored)
                    return
                self._refresh(fetch)

    def _store_lock(self) -> contextlib.AbstractContextManager[Any]:
        lock = getattr(self.store, "lock", None)
        return lock() if callable(lock) else contextlib.nullcontext()

    def _stored(self) -> Tokens | None:
        """The store's tokens now, or None (no store, nothing stored, or an unreadable file)."""
        if self.store is None:
            return None
        try:
            return self.store.load()
        except (OSError, ValueError, errors.AuthError) as exc:
            log.warning("cannot re-read the OAuth token store (%s); refreshing with the tokens in memory", type(exc).__name__)
            return None

    def _adopt(self, tokens: Tokens) -> None:
        if self._client_endpoint:
            tokens = replace(tokens, client_endpoint=self._client_endpoint)
        redact.register(tokens.access_token, tokens.refresh_token)
        self._tokens = tokens
        self.generation += 1

    def _refresh(self, fetch: TokenFetcher) -> None:
        """Ask the token endpoint with our refresh token and persist the reply before anyone uses it."""
        query = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "refresh_token": self._tokens.refresh_token,
        }
        log.info("refreshing the OAuth access token for %s", _origin(self.client_endpoint))
        reply = fetch(self.token_url, query)
        if "error" in reply:
            raise errors.classify(401, dict(reply), "oauth/token")
        tokens = Tokens.from_reply(reply, previous=self._tokens)
        redact.register(tokens.access_token, tokens.refresh_token)
        if self.store is not None:
            self.store.save(tokens)  # persisted before anyone uses it: a crash cannot lose the new refresh token
        self._tokens = tokens
        self.generation += 1
        self.refreshes += 1

    def rehost(self, origin: str) -> None:
        """Send further calls to the portal's new address (and remember it in the store)."""
        with self._lock:
            self._tokens = replace(self._tokens, client_endpoint=_with_origin(self.client_endpoint, origin))
            if self.store is not None:
                with self._store_lock():
                    self.store.save(self._tokens)

    def __repr__(self) -> str:
        return (
            f"OAuthAuth(client_id={self.client_id!r}, client_endpoint={self.client_endpoint!r}, "
            f"access_token={redact.MASK}, refresh_token={redact.MASK}, client_secret={redact.MASK})"
        )

    __str__ = __repr__
