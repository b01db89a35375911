"""The emulator over real HTTP(S): a threaded HTTP/1.1 server around ``EmulatorApp`` with socket-level faults.

``EmulatorServer(app).start()`` serves on 127.0.0.1 in a background thread (tests, demo, benches);
``EmulatorServer(app, tls=context)`` serves HTTPS (``tls.server_context``). ``serve(...)`` is
``b24sync emulator serve``: one stdout line, runs until SIGINT/SIGTERM, exits 0; an option it
cannot use is a ``ServeError`` naming the option.

The server reads what it can and answers the rest with the error envelope: a Content-Length that
is not a number or over ``MAX_BODY`` gets 400 unread, a body that stops before its Content-Length
gets 400 after ``read_timeout`` seconds, a request line or header block that cannot be parsed gets
400; the connection is then closed and the server keeps serving. The listen backlog holds
``BACKLOG`` connections, so a burst of hundreds of clients waits for its turn instead of being refused.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from connector import envelope
from connector.envelope import parse_offset
from connector.emulator.app import MAX_BODY, REASONS, EmulatorApp, Request, Response, content_length, reply_headers, unreadable
from connector.emulator.state import Portal
from connector.emulator.statefile import StateFileError

BACKLOG = 1024  # pending connections the kernel keeps for us (Linux caps it at net.core.somaxconn)
READ_TIMEOUT = 60.0  # seconds a connection may sit silent: idle keep-alive, a stalled body, a TLS handshake

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, lets the app answer, and misbehaves on the socket when a fault says so."""

    protocol_version = "HTTP/1.1"  # keep-alive, as clients with connection pools expect
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall
    server: "_HTTPServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        """Serve a GET."""
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        """Serve a POST."""
        self._serve()

    def setup(self) -> None:
        """Apply the server's read timeout, then finish the TLS handshake (in this thread, not the acceptor's)."""
        self.timeout = self.server.read_timeout
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._chunked_body()
            if body is None:
                self._reply(unreadable("The chunked request body cannot be read"), close=True)
                return
        else:
            length = content_length(self.headers.get("Content-Length"))
            if length is None:
                self._reply(unreadable("Content-Length is not a byte count the portal accepts"), close=True)
                return
            body = self._body(length)
            if body is None:
                self._reply(unreadable("The request body is shorter than its Content-Length"), close=True)
                return
        path, _, query = self.path.partition("?")
        request = Request(
            method=self.command,
            path=path,
            query=query,
            body=body,
            content_type=self.headers.get("Content-Type", ""),
            host=self.headers.get("Host") or "%s:%s" % self.server.server_address[:2],
            scheme=self.server.scheme,
        )
        reply = self.server.app.handle(request)
        if reply.fault == "timeout":
            self.server.stopping.wait(self.server.app.faults.hang)
            self._drop(reset=False)
            return
        if reply.fault == "reset":
            self._drop(reset=True)
            return
        self._reply(reply, close=reply.fault == "cut")
        if reply.fault == "cut":
            self._drop(reset=False)

    def _body(self, length: int) -> bytes | None:
        """The body, or None when it ends (or stalls for ``read_timeout``) before ``length`` bytes."""
        if length <= 0:
            return b""
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError):
            return None
        return body if len(body) == length else None

    def _chunked_body(self) -> bytes | None:
        """A ``Transfer-Encoding: chunked`` body, or None when it is malformed, over ``MAX_BODY`` or stalls."""
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                line = self.rfile.readline(1024)
                head = line.split(b";", 1)[0].strip()
                if not line.endswith(b"\n") or not head or any(c not in b"0123456789abcdefABCDEF" for c in head):
                    return None
                length = int(head, 16)
                if length == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):  # trailer fields
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY:
                    return None
                chunk = self.rfile.read(length)
                if len(chunk) != length or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    return None
                chunks.append(chunk)
        except (TimeoutError, OSError):
            return None

    def _reply(self, reply: Response, *, close: bool) -> None:
        """Send a reply; ``close`` ends the connection after it."""
        self.send_response(reply.status, REASONS.get(reply.status))
        for name, value in reply_headers(reply):
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()

    def _drop(self, *, reset: bool) -> None:
        """Close the connection without (the rest of) a reply; ``reset`` sends a TCP RST."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The error envelope for a request http.server cannot parse (request line, headers): 400, then close.

        An unknown HTTP method keeps its 501. The description never repeats the request.
        """
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        status = 501 if code == 501 else 400
        description = _UNPARSED.get(code, "The request line or its headers cannot be parsed")
        reply = Response(status, [("Content-Type", "application/json; charset=utf-8")],
                         envelope.dumps(envelope.error_body("INVALID_REQUEST", description)))
        try:
            self._reply(reply, close=True)
        except OSError:
            self.close_connection = True

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Log the route with the webhook code masked: the path holds it, the query may hold a token."""
        log.debug("%s %s -> %s", getattr(self, "command", "-"), _loggable(getattr(self, "path", "")), code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        """http.server's own messages (malformed requests): the template only, never the request line."""
        log.debug("http: %s", format.replace("%r", "...").replace("%s", "...").replace("%d", "..."))


def _loggable(path: str) -> str:
    """A request path safe to log: ``/rest/*/*/crm.deal.list`` for a webhook call, no query string."""
    parts = [part for part in path.split("?", 1)[0].split("/") if part]
    if parts[:1] == ["rest"]:
        if len(parts) == 2:
            return f"/rest/{parts[1]}"  # OAuth: the token travels in the query or body
        if len(parts) == 4:
            return f"/rest/*/*/{parts[3]}"
        return "/rest/(unrouted path)"
    if parts[:1] in (["_emulator"], ["oauth"]):
        return "/" + "/".join(parts)
    return "(unrouted path)"


# what http.server could not parse, by the status it wanted to send
_UNPARSED = {414: "The request line is too long", 431: "Too many or too long request headers",
             501: "Unsupported HTTP method"}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hanging "timeout" fault must not keep the process alive
    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], app: EmulatorApp, tls: ssl.SSLContext | None, read_timeout: float):
        self.app = app
        self.tls = tls
        self.scheme = "https" if tls is not None else "http"
        self.read_timeout = read_timeout
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection; with TLS, wrap it now and shake hands later, in its own thread."""
        connection, address = super().get_request()
        if self.tls is not None:
            connection = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke (a client that went away, a failed TLS handshake): a debug line, no traceback."""
        error = sys.exc_info()[1]
        log.debug("connection dropped: %s", type(error).__name__ if error is not None else "unknown")


class EmulatorServer:
    """A running emulator: ``url`` (webhook), ``base_url``, ``portal``, ``app``, ``stats()``, ``stop()``."""

    def __init__(
        self,
        app: EmulatorApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        secret: str | None = None,
        tls: ssl.SSLContext | None = None,
        read_timeout: float = READ_TIMEOUT,
    ):
        self.app = app
        self.portal = app.portal
        self._httpd = _HTTPServer((host, port), app, tls, read_timeout)
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()
        self._stop_lock = threading.Lock()
        self.host, self.port = self._httpd.server_address[:2]
        self.base_url = f"{self._httpd.scheme}://{_url_host(self.host)}:{self.port}"
        code = secret if secret is not None else next(iter(app.webhooks))
        self.url = f"{self.base_url}/rest/{app.webhooks[code]}/{code}/"
        self.oauth: dict[str, Any] | None = None  # first token reply when an OAuth app was installed

    def __repr__(self) -> str:
        return f"EmulatorServer({self.base_url})"  # never the webhook code

    @property
    def oauth_url(self) -> str:
        """Base URL of OAuth calls (``{base}/rest/``)."""
        return f"{self.base_url}/rest/"

    def start(self) -> "EmulatorServer":
        """Serve in a background daemon thread; returns self. Starting a running server changes nothing
        (``with EmulatorServer(app).start() as server:`` starts it once)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._thread = threading.Thread(target=self.serve_forever, name="b24-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop`` is called from another thread."""
        self._serving.set()
        self._httpd.serve_forever(poll_interval=0.05)

    def stats(self) -> dict[str, Any]:
        """The app's counters (same JSON as ``GET /_emulator/stats``)."""
        return self.app.stats()

    def stop(self) -> None:
        """Stop accepting, cut hanging faults short, close the socket (idempotent)."""
        with self._stop_lock:
            self._httpd.stopping.set()
            if self._serving.is_set():
                self._httpd.shutdown()
                self._serving.clear()
            self._httpd.server_close()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=5)

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _url_host(host: str) -> str:
    """A host as it goes into a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def fetch_stats(base_url: str, *, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """``GET /_emulator/stats`` of a running emulator over HTTP(S) (``context`` trusts its certificate)."""
    with urlopen(f"{base_url}/_emulator/stats", timeout=10, context=context) as reply:  # noqa: S310 (loopback only)
        return json.loads(reply.read())


class ServeError(Exception):
    """An option of ``emulator serve`` that cannot be used; ``option`` names it (``--port``, ``--state``...)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option
        self.message = message


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    secret: str | None = None,
    seed: int | None = None,
    rate: float = 2.0,
    burst: float = 50.0,
    operating_budget: float = 480.0,
    faults: str | None = None,
    latency: float = 0.0,
    state: str | None = None,
    timezone: str = "+03:00",
    history: str = "current",
    oauth_client_id: str | None = None,
    oauth_client_secret: str | None = None,
    oauth_tokens: str | None = None,
    access_ttl: float = 3600,
    tls: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> int:
    """Run ``b24sync emulator serve`` until SIGINT/SIGTERM; print the webhook line; return the exit code.

    ``tls`` serves HTTPS with a self-signed certificate made now (its path goes to stderr);
    ``tls_cert``/``tls_key`` serve HTTPS with an existing pair. Unusable options raise ``ServeError``.
    """
    portal = _portal(state, timezone, seed, history)
    code = secret or secrets.token_hex(8)
    app = EmulatorApp(
        portal, secret=code, rate=rate, burst=burst, operating_budget=operating_budget,
        faults=faults, latency=latency, access_ttl=access_ttl,
    )
    certificates: str | None = None
    try:
        context, certificates = _tls_context(tls, tls_cert, tls_key, host)
        server = _bind(app, host, port, context)
        if oauth_client_id:
            tokens = app.add_oauth_client(oauth_client_id, oauth_client_secret or "")
            tokens["client_endpoint"] = tokens["server_endpoint"] = server.oauth_url
            tokens["domain"] = f"{_url_host(server.host)}:{server.port}"
            tokens.update(client_id=oauth_client_id, token_url=f"{server.base_url}/oauth/token/")
            if oauth_tokens:
                try:
                    _write_private(Path(oauth_tokens), json.dumps(tokens, indent=2))
                except OSError as exc:
                    server.stop()
                    raise ServeError("--oauth-tokens", f"cannot write {oauth_tokens}: {exc.strerror or exc}") from None
            print(f"oauth: app {oauth_client_id} installed; rest endpoint {server.oauth_url}"
                  + (f", tokens in {oauth_tokens}" if oauth_tokens else ""), file=sys.stderr, flush=True)
        if certificates is not None:
            cert = Path(certificates) / "cert.pem"
            print(f"tls: self-signed certificate for 127.0.0.1, ::1 and localhost in {cert}; trust it with "
                  f"REQUESTS_CA_BUNDLE={cert} (requests) or SSL_CERT_FILE={cert}", file=sys.stderr, flush=True)

        def stop(signum: int, frame: Any) -> None:
            log.info("signal %s: stopping", signum)
            threading.Thread(target=server.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"webhook: {server.url}", flush=True)
        try:
            server.serve_forever()
        finally:
            server.stop()
            if state:
                portal.save(state)
                log.info("state saved to %s", state)
    finally:
        if certificates is not None:
            shutil.rmtree(certificates, ignore_errors=True)
    return 0


def _portal(state: str | None, timezone: str, seed: int | None, history: str) -> Portal:
    """The portal ``serve`` starts with: loaded from ``state`` when that file exists, else new (seeded)."""
    from connector.emulator import new_portal
    from connector.emulator.records.history import check_mode

    try:
        check_mode(history)
    except ValueError as exc:
        raise ServeError("--history", str(exc)) from None
    if state:
        path = Path(state)
        if path.is_dir():
            raise ServeError("--state", f"{state} is a directory, not a state file")
        if not path.parent.is_dir():
            raise ServeError("--state", f"the directory of {state} does not exist (the state is saved there on exit)")
        if path.exists():
            try:
                portal = Portal.load(path)
            except StateFileError as exc:
                raise ServeError("--state", str(exc)) from None
            except OSError as exc:
                raise ServeError("--state", f"cannot read {state}: {exc.strerror or exc}") from None
            log.info("loaded state from %s", state)
            return portal
    try:
        parse_offset(timezone)
    except ValueError:
        raise ServeError("--timezone", f"{timezone!r} is not a UTC offset such as +03:00") from None
    return new_portal(timezone, seed=seed, history=history)


def _tls_context(tls: bool, cert: str | None, key: str | None, host: str) -> tuple[ssl.SSLContext | None, str | None]:
    """The TLS context to serve with (None: plain HTTP) and the directory of a certificate made now."""
    from connector.emulator.tls import self_signed, server_context

    if (cert is None) != (key is None):
        raise ServeError("--tls-cert" if cert is None else "--tls-key", "--tls-cert and --tls-key go together")
    if cert is not None and key is not None:
        try:
            return server_context(cert, key), None
        except (ssl.SSLError, OSError) as exc:
            raise ServeError("--tls-cert", f"cannot use {cert} with {key}: {exc}") from None
    if not tls:
        return None, None
    directory = tempfile.mkdtemp(prefix="b24sync-emulator-tls-")
    made_cert, made_key = self_signed(directory, [host])
    return server_context(made_cert, made_key), directory


def _bind(app: EmulatorApp, host: str, port: int, context: ssl.SSLContext | None) -> EmulatorServer:
    """The server listening on ``host:port``, or a ``ServeError`` saying why it cannot."""
    try:
        return EmulatorServer(app, host, port, tls=context)
    except OverflowError:
        raise ServeError("--port", f"{port} is not a port number (0-65535)") from None
    except socket.gaierror:
        raise ServeError("--host", f"{host!r} is not an address of this machine") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeError("--port", f"port {port} on {host} is already in use") from None
        raise ServeError("--host", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds tokens)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
