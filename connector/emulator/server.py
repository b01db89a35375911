"""The emulator over real HTTP: a threaded HTTP/1.1 server around ``EmulatorApp`` with socket-level faults.

``EmulatorServer(app).start()`` serves on 127.0.0.1 in a background thread (tests, demo, benches);
``serve(...)`` is ``b24sync emulator serve``: one stdout line, runs until SIGINT/SIGTERM, exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from connector.emulator.app import REASONS, EmulatorApp, Request, reply_headers
from connector.emulator.state import Portal

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

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.send_error(400, "Bad Request")  # as the portal's nginx answers a malformed header
            return
        body = self.rfile.read(length) if length > 0 else b""
        path, _, query = self.path.partition("?")
        request = Request(
            method=self.command,
            path=path,
            query=query,
            body=body,
            content_type=self.headers.get("Content-Type", ""),
            host=self.headers.get("Host") or "%s:%s" % self.server.server_address[:2],
        )
        reply = self.server.app.handle(request)
        if reply.fault == "timeout":
            self.server.stopping.wait(self.server.app.faults.hang)
            self._drop(reset=False)
            return
        if reply.fault == "reset":
            self._drop(reset=True)
            return
        self.send_response(reply.status, REASONS.get(reply.status))
        for name, value in reply_headers(reply):
            self.send_header(name, value)
        if reply.fault == "cut":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()
        if reply.fault == "cut":
            self._drop(reset=False)

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
        """An error page with a status line even for an unparseable request line, as nginx answers."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        super().send_error(code, message, explain)

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


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hanging "timeout" fault must not keep the process alive
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: EmulatorApp):
        self.app = app
        self.stopping = threading.Event()
        super().__init__(address, _Handler)


class EmulatorServer:
    """A running emulator: ``url`` (webhook), ``base_url``, ``portal``, ``app``, ``stats()``, ``stop()``."""

    def __init__(self, app: EmulatorApp, host: str = "127.0.0.1", port: int = 0, *, secret: str | None = None):
        self.app = app
        self.portal = app.portal
        self._httpd = _HTTPServer((host, port), app)
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()
        self._stop_lock = threading.Lock()
        self.host, self.port = self._httpd.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}"
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
        """Serve in a background daemon thread; returns self."""
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


def fetch_stats(base_url: str) -> dict[str, Any]:
    """``GET /_emulator/stats`` of a running emulator over HTTP."""
    with urlopen(f"{base_url}/_emulator/stats", timeout=10) as reply:  # noqa: S310 (loopback only)
        return json.loads(reply.read())


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
    oauth_client_id: str | None = None,
    oauth_client_secret: str | None = None,
    oauth_tokens: str | None = None,
    access_ttl: float = 3600,
) -> int:
    """Run ``b24sync emulator serve`` until SIGINT/SIGTERM; print the webhook line; return the exit code."""
    from connector.emulator import new_portal

    if state and Path(state).exists():
        portal = Portal.load(state)
        log.info("loaded state from %s", state)
    else:
        portal = new_portal(timezone, seed=seed)
    code = secret or secrets.token_hex(8)
    app = EmulatorApp(
        portal, secret=code, rate=rate, burst=burst, operating_budget=operating_budget,
        faults=faults, latency=latency, access_ttl=access_ttl,
    )
    server = EmulatorServer(app, host, port)
    if oauth_client_id:
        tokens = app.add_oauth_client(oauth_client_id, oauth_client_secret or "")
        tokens["client_endpoint"] = tokens["server_endpoint"] = server.oauth_url
        tokens["domain"] = f"{server.host}:{server.port}"
        tokens.update(client_id=oauth_client_id, token_url=f"{server.base_url}/oauth/token/")
        if oauth_tokens:
            _write_private(Path(oauth_tokens), json.dumps(tokens, indent=2))
        print(f"oauth: app {oauth_client_id} installed; rest endpoint {server.oauth_url}"
              + (f", tokens in {oauth_tokens}" if oauth_tokens else ""), file=sys.stderr, flush=True)

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
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds tokens)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
