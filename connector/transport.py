"""The one I/O seam of the connector: ``send(method, params, auth, *, timeout=None) -> Reply``.

``HttpTransport`` speaks to a portal over ``requests`` (JSON POST, pooled connections, timeouts, no
automatic redirects); ``WsgiTransport`` drives a WSGI app such as the emulator in-process, no socket;
``MockTransport`` answers through a handler function, for unit tests. All turn every failure into the
classified errors of ``connector.errors`` with secrets masked.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import requests
from requests import exceptions as rex

from connector import errors, redact
from connector.auth import Auth
from connector.encoding import to_json_text
from connector.envelope import Reply, decode_body, parse_reply

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 65.0  # the portal cuts a call at 60 s; wait a little longer than that for its reply
USER_AGENT = "b24sync/0.1 (+https://github.com/b24sync)"
_REDIRECTS = (301, 302, 303, 307, 308)


class Transport(Protocol):
    """What the client needs from a transport.

    ``timeout`` is what is left of the operation's deadline: no wait for the reply may be longer
    (None: the transport's own timeouts). A wrapper around a transport passes it on.
    """

    def send(self, method: str, params: Mapping[str, Any] | None, auth: Auth, *, timeout: float | None = None) -> Reply:
        """Make one REST call and return the parsed reply, or raise a classified error."""
        ...

    def fetch_token(self, url: str, query: Mapping[str, str], *, timeout: float | None = None) -> Mapping[str, Any]:
        """GET the OAuth token endpoint and return its decoded JSON reply."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _headers(content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def _token_reply(status: int, body: bytes, url: str) -> Mapping[str, Any]:
    """The OAuth server's JSON reply, or the classified error it stands for."""
    data = decode_body(body)
    if not isinstance(data, dict):
        raise errors.classify(status, None, "oauth/token")
    if "error" in data or status >= 400:
        raise errors.classify(status if status >= 400 else 401, data, "oauth/token")
    return data


class HttpTransport:
    """Bitrix24 over HTTP(S) with one pooled ``requests.Session``.

    Calls are JSON POSTs; a 3xx answer means the portal moved to another address, so the call is
    repeated once at the new host and the auth object is told to use it from now on.
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        pool_size: int = 10,
    ):
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self.timeout = (connect_timeout, read_timeout)

    def send(self, method: str, params: Mapping[str, Any] | None, auth: Auth, *, timeout: float | None = None) -> Reply:
        """POST ``params`` as JSON to the method URL the auth object gives; parse or classify the reply.

        No wait (connecting, reading) is longer than ``timeout`` when it is given.
        """
        target = auth.target(method, params or {})
        body = to_json_text(target.params).encode("utf-8")
        limits = self._limits(timeout)
        response = self._post(method, target.url, body, limits)
        if response.status_code in _REDIRECTS:
            moved = self._moved_origin(target.url, response.headers.get("Location", ""))
            if moved is None:
                raise errors.BadReplyError("", "redirect without a usable Location", response.status_code, method)
            log.warning("%s: the portal moved from %s to %s; repeating the call there", method, _origin(target.url), moved)
            auth.rehost(moved)
            target = auth.target(method, params or {})
            response = self._post(method, target.url, body, limits)
            if response.status_code in _REDIRECTS:
                raise errors.BadReplyError("", "redirected twice", response.status_code, method)
        return parse_reply(response.status_code, self._content(method, target.url, response, limits), method)

    def fetch_token(self, url: str, query: Mapping[str, str], *, timeout: float | None = None) -> Mapping[str, Any]:
        """GET the OAuth token endpoint (the real server takes GET) and return its JSON reply."""
        failure: errors.B24Error | None = None
        limits = self._limits(timeout)
        try:
            response = self.session.get(url, params=dict(query), headers=_headers(None), timeout=limits, allow_redirects=False)
            return _token_reply(response.status_code, response.content, url)
        except rex.RequestException as exc:
            failure = _transport_error("oauth/token", exc, url, limits[1])
        raise failure  # outside the except block: no __context__ holding the URL and its query

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def _limits(self, timeout: float | None) -> tuple[float, float]:
        """(connect, read) timeouts of one attempt: the configured ones, never beyond ``timeout``."""
        connect, read = self.timeout
        if timeout is None:
            return connect, read
        bound = max(0.001, float(timeout))
        return min(connect, bound), min(read, bound)

    def _post(self, method: str, url: str, body: bytes, limits: tuple[float, float]) -> requests.Response:
        failure: errors.B24Error | None = None
        try:
            return self.session.post(url, data=body, headers=_headers(), timeout=limits, allow_redirects=False)
        except rex.RequestException as exc:
            failure = _transport_error(method, exc, url, limits[1])
        raise failure  # outside the except block: the requests exception (with the URL) is not chained

    @staticmethod
    def _content(method: str, url: str, response: requests.Response, limits: tuple[float, float]) -> bytes:
        failure: errors.B24Error | None = None
        try:
            return response.content
        except rex.RequestException as exc:
            failure = _transport_error(method, exc, url, limits[1])
        raise failure

    @staticmethod
    def _moved_origin(url: str, location: str) -> str | None:
        """The new ``scheme://host`` when Location points at the same path on another host."""
        if not location:
            return None
        new, old = urlsplit(location), urlsplit(url)
        if not new.netloc or new.netloc == old.netloc and new.scheme == old.scheme:
            return None
        return f"{new.scheme or old.scheme}://{new.netloc}"

    def __repr__(self) -> str:
        return f"HttpTransport(timeout={self.timeout})"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _host(url: str) -> str:
    """``portal.bitrix24.ru`` (with a port when there is one): the part of a URL that is safe to print."""
    try:
        return urlsplit(url).netloc.rpartition("@")[2] or "the portal"
    except ValueError:
        return "the portal"


def _transport_error(method: str, exc: Exception, url: str = "", read: float | None = None) -> errors.B24Error:
    """Map a requests exception to the error tree; the message never carries the URL (a read
    timeout names the host, the only part of it that is not secret)."""
    kind = type(exc).__name__
    if isinstance(exc, rex.ConnectTimeout):
        return errors.ConnectFailed("", "connect timeout", 0, method)
    if isinstance(exc, (rex.ChunkedEncodingError, rex.ContentDecodingError)):
        return errors.BadReplyError("", f"truncated or undecodable reply ({kind})", 0, method)
    if isinstance(exc, rex.ReadTimeout):
        within = f" within {read:.1f} s" if read is not None else " in time"
        return errors.TransportError("", f"read timeout: no reply from {_host(url)}{within} (the call may have run)", 0, method)
    if isinstance(exc, rex.ConnectionError) and _never_connected(exc):
        return errors.ConnectFailed("", f"cannot connect ({_reason(exc)})", 0, method)
    if isinstance(exc, (rex.InvalidURL, rex.MissingSchema, rex.InvalidSchema)):
        return errors.AuthFailed("", "the portal URL is not valid", 0, method)
    return errors.TransportError("", f"connection failed ({_reason(exc)})", 0, method)


def _never_connected(exc: Exception) -> bool:
    """True when the socket was never opened (refused, DNS): the request did not leave this machine."""
    from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

    node: Any = exc.args[0] if exc.args else None
    if isinstance(node, MaxRetryError):
        node = node.reason
    return isinstance(node, (NewConnectionError, NameResolutionError, ConnectionRefusedError))


def _reason(exc: Exception) -> str:
    """A short, URL-free cause: the innermost exception's class name."""
    node: Any = exc
    seen = 0
    while seen < 6:
        seen += 1
        inner = getattr(node, "reason", None) or (node.args[0] if getattr(node, "args", None) else None)
        if isinstance(inner, BaseException):
            node = inner
            continue
        break
    return type(node).__name__


# ---------------------------------------------------------------- in-process WSGI

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WsgiTransport:
    """Calls a WSGI app (the emulator) in-process through the same HTTP protocol, without a socket.

    The app's transport faults surface as the same errors ``HttpTransport`` would raise: an
    exception from the app is a dropped connection, a body shorter than its Content-Length is a
    truncated reply.
    """

    def __init__(self, app: WsgiApp):
        self.app = app

    def send(self, method: str, params: Mapping[str, Any] | None, auth: Auth, *, timeout: float | None = None) -> Reply:
        """POST ``params`` as JSON to the app at the path of the method URL (in-process: ``timeout`` is moot)."""
        target = auth.target(method, params or {})
        body = to_json_text(target.params).encode("utf-8")
        status, headers, content = self._call(method, "POST", target.url, body, "application/json")
        if status in _REDIRECTS:
            raise errors.BadReplyError("", "redirect from an in-process app", status, method)
        return parse_reply(status, content, method)

    def fetch_token(self, url: str, query: Mapping[str, str], *, timeout: float | None = None) -> Mapping[str, Any]:
        """GET the app's token endpoint."""
        full = f"{url}?{urlencode(dict(query))}"
        status, _, content = self._call("oauth/token", "GET", full, b"", "")
        return _token_reply(status, content, url)

    def close(self) -> None:
        """Nothing to release."""

    def _call(self, method: str, verb: str, url: str, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        environ = {
            "REQUEST_METHOD": verb,
            "SCRIPT_NAME": "",
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": parts.netloc or host,
            "HTTP_ACCEPT": "application/json",
            "HTTP_USER_AGENT": USER_AGENT,
            "CONTENT_TYPE": content_type,
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": parts.scheme or "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"] = status
            captured["headers"] = {k.lower(): v for k, v in headers}
            return lambda chunk: None

        try:
            chunks = self.app(environ, start_response)
            try:
                content = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        except (ConnectionError, OSError) as exc:
            raise errors.TransportError("", f"connection dropped ({type(exc).__name__})", 0, method) from None  # no URL in it
        status = int(str(captured.get("status", "500")).split(" ", 1)[0])
        headers = captured.get("headers", {})
        announced = headers.get("content-length")
        if announced is not None and announced.isdigit() and int(announced) > len(content):
            raise errors.BadReplyError("", "truncated reply (shorter than its Content-Length)", status, method)
        return status, headers, content

    def __repr__(self) -> str:
        return f"WsgiTransport({type(self.app).__name__})"



# ---------------------------------------------------------------- a handler function, for unit tests


@dataclass(frozen=True)
class Request:
    """One call as a ``MockTransport`` handler sees it: the method, the parameters as the portal would
    decode them (credential included: ``auth`` under OAuth), the full URL, and the attempt's timeout."""

    method: str
    params: dict[str, Any]
    url: str
    timeout: float | None = None

    def __repr__(self) -> str:
        return f"Request({self.method!r}, url={redact.mask_url(self.url)!r})"


# handler(request) -> a Reply, a JSON body (mapping: HTTP 200), or (status, body); or raises a B24Error
Handler = Callable[[Request], Any]


def _encoded(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class MockTransport:
    """A transport that answers every call through ``handler(request)``, as httpx's ``MockTransport`` does.

    The handler returns a ``Reply`` (taken as is), a decoded JSON body (a mapping or list: HTTP
    200), or ``(status, body)`` with the body as data, text or bytes; or it raises a ``B24Error``
    (a timeout, a dropped connection). Bodies go through ``parse_reply``, so the client meets
    exactly the envelope checks it meets over HTTP. Token requests arrive as
    ``method="oauth/token"`` with the query as ``params``. ``requests`` lists what was sent.
    """

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def _record(self, request: Request) -> Request:
        with self._lock:
            self.requests.append(request)
        return request

    def send(self, method: str, params: Mapping[str, Any] | None, auth: Auth, *, timeout: float | None = None) -> Reply:
        """Hand the call to the handler; parse what it answers as the HTTP transport would."""
        target = auth.target(method, params or {})
        decoded = json.loads(to_json_text(target.params))  # what the portal would see (and the same encoder errors)
        answer = self.handler(self._record(Request(method, decoded, target.url, timeout)))
        if isinstance(answer, Reply):
            return answer
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return parse_reply(status, _encoded(body), method)

    def fetch_token(self, url: str, query: Mapping[str, str], *, timeout: float | None = None) -> Mapping[str, Any]:
        """Hand the token request to the handler (``method="oauth/token"``)."""
        answer = self.handler(self._record(Request("oauth/token", dict(query), url, timeout)))
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        return _token_reply(status, _encoded(body), url)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MockTransport({len(self.requests)} request(s))"
