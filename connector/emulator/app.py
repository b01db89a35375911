"""The emulator's protocol core: routing, auth (webhook and OAuth), limits, faults, latency, stats, batch.

``EmulatorApp`` speaks Bitrix24 REST for one ``Portal``. It is a WSGI callable, and it has one
plain seam without sockets, for the client's in-process transport:

    reply = app.request("POST", "/rest/1/CODE/crm.deal.list", body=b'{"start": -1}',
                        content_type="application/json")
    reply.status, reply.headers, reply.body      # int, list[(name, value)], bytes

``app.handle(Request) -> Response`` is the same with a ``Request`` object. ``Response.fault`` is
``None`` for a normal reply; for an injected transport fault it is ``"timeout"`` (no reply: the
client should see its read timeout), ``"reset"`` (connection dropped, no reply) or ``"cut"``
(``Content-Length`` announces ``Response.length`` bytes but ``body`` is shorter). The threaded
HTTP server in ``server.py`` turns those into real socket behaviour; an in-process transport
should raise its transport errors for them. 5xx and HTML faults are ordinary replies.

Routes:

- ``/rest/{USER_ID}/{CODE}/{method}[.json][/]``: incoming webhook.
- ``/rest/{method}[.json][/]`` with ``auth=TOKEN`` in the query, form or JSON body: OAuth app.
- ``GET|POST /oauth/token/``: token endpoint (``grant_type=refresh_token|authorization_code``).
- ``GET /_emulator/stats``: counters as JSON, no auth; ``POST /_emulator/reset-stats`` zeroes them.

A request it cannot read (a JSON or multipart body that does not parse, an unknown charset,
parameters nested deeper than ``connector.encoding.MAX_DEPTH`` in the query, the body or a batch
command, a body over ``MAX_BODY``) gets the error envelope ``INVALID_REQUEST`` with HTTP 400.

Order of work for a ``/rest/`` request: count it, draw a fault, the leaky bucket (503), parse the
parameters, authenticate (401/403), then per command: the operating budget (429), the handler under
the portal lock, the charge. The latency sleep (``latency`` x modelled cost + a 20 ms round trip)
happens last and outside every lock, so concurrent requests are served concurrently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import unquote

from connector import envelope
from connector.catalog import canonical, is_write
from connector.emulator import costs
from connector.emulator.faults import FaultPlan, html_page
from connector.emulator.limits import Blocked, LeakyBucket, OperatingBudget, Usage
from connector.emulator.methods.batch import Outcome, refuse_unbatchable, run_batch
from connector.emulator.registry import ApiError, Call, Result, by_name, dispatch, lookup
from connector.emulator.state import Portal
from connector.encoding import MAX_DEPTH, MAX_PAIRS, decode_query, parse_pairs

log = logging.getLogger(__name__)

ROUND_TRIP = 0.02  # seconds of modelled network round trip added to every reply when latency is on
ACCESS_TTL = 3600  # seconds an OAuth access token lives
REFRESH_TTL = 180 * 86400  # seconds a refresh token lives
CODE_TTL = 30  # seconds an authorization code lives
DEFAULT_SCOPE = "crm,user,basic"

JSON_TYPE = "application/json; charset=utf-8"
MAX_BODY = 32 * 1024 * 1024  # bytes of a request body; a longer one is refused unread

REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable",
}


@dataclass
class Request:
    """One HTTP request as the app sees it."""

    method: str
    path: str
    query: str = ""
    body: bytes = b""
    content_type: str = ""
    host: str = "127.0.0.1"
    scheme: str = "http"  # "https" behind TLS: the base of the URLs the app hands out


@dataclass
class Response:
    """One reply; ``fault`` asks the transport to misbehave (see the module docstring)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    fault: str | None = None
    length: int | None = None  # Content-Length to announce when it differs from len(body) ("cut")

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class BlockedError(ApiError):
    """429 OPERATION_TIME_LIMIT, carrying the usage that says when the method unblocks."""

    def __init__(self, usage: Usage):
        super().__init__("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)
        self.usage = usage


@dataclass(frozen=True)
class Identity:
    """Who is calling: the user, the kind of auth, and the owner of the operating budget."""

    user_id: int
    auth: str  # "webhook" or "oauth"
    app: str  # "webhook:1:<digest>" or "app:<client_id>"; never the secret itself


@dataclass
class Stats:
    """Counters served at ``/_emulator/stats``."""

    requests_total: int = 0
    by_method: Counter[str] = field(default_factory=Counter)
    rejected_503: int = 0
    rejected_429: int = 0
    writes_total: int = 0
    errors_total: int = 0
    batch_commands_total: int = 0
    operating_total: float = 0.0
    operating_by_method: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    token_refreshes: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "requests_total": self.requests_total,
            "by_method": dict(self.by_method),
            "rejected_503": self.rejected_503,
            "rejected_429": self.rejected_429,
            "writes_total": self.writes_total,
            "errors_total": self.errors_total,
            "batch_commands_total": self.batch_commands_total,
            "operating_total": round(self.operating_total, 6),
            "operating_by_method": {k: round(v, 6) for k, v in self.operating_by_method.items()},
            "faults": dict(self.faults),
            "token_refreshes": self.token_refreshes,
        }


class EmulatorApp:
    """A Bitrix24 REST server for one portal, usable as WSGI app or in-process (see module docstring)."""

    def __init__(
        self,
        portal: Portal,
        *,
        secret: str = "b24sync",
        user_id: int = 1,
        rate: float = 2.0,
        burst: float = 50.0,
        operating_budget: float = 480.0,
        faults: FaultPlan | str | None = None,
        latency: float = 0.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        access_ttl: float = ACCESS_TTL,
    ):
        self.portal = portal
        self.clock = clock or time.time
        self.sleep = sleep
        self.latency = float(latency)
        self.access_ttl = access_ttl
        self.webhooks: dict[str, int] = {secret: user_id}
        self.bucket = LeakyBucket(rate=rate, burst=burst, clock=self._now)
        self.budget = OperatingBudget(operating_budget, clock=self._now)
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan.parse(faults)
        self._stats = Stats()
        self._stats_lock = threading.Lock()
        with portal.lock:
            portal.oauth.setdefault("member_id", secrets.token_hex(16))
            for key in ("clients", "access", "refresh", "codes"):
                portal.oauth.setdefault(key, {})

    def _now(self) -> float:
        return self.clock()

    # ---------------------------------------------------------------- seams

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """WSGI entry point. Transport faults: "cut" sends a short body, "timeout"/"reset" abort."""
        length = content_length(environ.get("CONTENT_LENGTH"))
        if length is None:
            reply = unreadable("Content-Length is not a byte count the portal accepts")
        else:
            request = Request(
                method=environ.get("REQUEST_METHOD", "GET"),
                path=environ.get("PATH_INFO", "/"),
                query=environ.get("QUERY_STRING", ""),
                body=environ["wsgi.input"].read(length) if length > 0 else b"",
                content_type=environ.get("CONTENT_TYPE", ""),
                host=environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '127.0.0.1')}:{environ.get('SERVER_PORT', '80')}",
                scheme=environ.get("wsgi.url_scheme", "http"),
            )
            reply = self.handle(request)
        if reply.fault in ("timeout", "reset"):
            raise ConnectionAbortedError(f"emulator fault: {reply.fault}")
        start_response(f"{reply.status} {REASONS.get(reply.status, '')}", reply_headers(reply))
        return [reply.body]

    def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes | str = b"",
        content_type: str = "",
        host: str = "127.0.0.1",
    ) -> Response:
        """In-process request without a socket; ``path`` may carry ``?query`` itself."""
        if "?" in path:
            path, _, inline = path.partition("?")
            query = f"{inline}&{query}" if query else inline
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.handle(Request(method.upper(), path, query, data, content_type, host))

    def handle(self, request: Request) -> Response:
        """Answer one request (the core every seam goes through)."""
        path = unquote(request.path)
        if path.rstrip("/") == "/_emulator/stats":
            return json_response(200, self.stats())
        if path.rstrip("/") == "/_emulator/reset-stats":
            self.reset_stats()
            return json_response(200, {"result": True})
        if path.rstrip("/") == "/oauth/token":
            return self._token_endpoint(request)
        if path.startswith("/rest/"):
            return self._rest(request, path)
        return json_response(404, envelope.error_body("NOT_FOUND", "Not found"))

    # ---------------------------------------------------------------- stats

    def stats(self) -> dict[str, Any]:
        """Counters of requests, methods, rejections, writes and operating time (JSON-ready)."""
        with self._stats_lock:
            data = self._stats.as_dict()
        data["faults"] = dict(self.faults.injected)
        return data

    def reset_stats(self) -> None:
        """Zero every counter (the limits keep their state)."""
        with self._stats_lock:
            self._stats = Stats()
        self.faults.injected.clear()

    def _count(self, **increments: Any) -> None:
        with self._stats_lock:
            for name, value in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + value)

    def _count_method(self, name: str) -> None:
        with self._stats_lock:
            self._stats.by_method[name] += 1

    # ---------------------------------------------------------------- /rest/

    def _rest(self, request: Request, path: str) -> Response:
        started = self._now()
        route = path[len("/rest/"):].strip("/").split("/")
        if len(route) == 3 and route[0].isdigit():
            user, code, name = int(route[0]), route[1], route[2]
        elif len(route) == 1 and route[0]:
            user, code, name = None, None, route[0]
        else:
            return json_response(404, envelope.error_body("ERROR_METHOD_NOT_FOUND", "Method not found!"))
        name = canonical(name)
        self._count(requests_total=1)
        self._count_method(name)

        fault = self.faults.draw()
        if fault in ("5xx", "html", "timeout", "reset"):
            return self._fault_reply(fault)
        reply, cost = self._answer(request, user, code, name, started)
        if fault == "cut":  # error replies are cut too: the fault is in the network, not the method
            reply = cut(reply)
        self._delay(cost)
        return reply

    def _answer(self, request: Request, user: int | None, code: str | None, name: str, started: float) -> tuple[Response, float]:
        """The portal's reply to one /rest/ call (rate limit, auth, method or batch) and its modelled cost."""
        if not self.bucket.admit():
            self._count(rejected_503=1)
            return self._error_reply(ApiError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)), 0.0
        try:
            params = request_params(request)
            token = params.pop("auth", None)
            identity = self._authenticate(user, code, token)
            if name == "batch":
                body, cost = self._batch(identity, params, started)
            else:
                outcome = self._execute(identity, name, params)
                if outcome.error is not None:
                    raise outcome.error
                assert outcome.result is not None and outcome.time is not None
                body = envelope.success_body(
                    outcome.result.result, total=outcome.result.total, next=outcome.result.next, time=outcome.time
                )
                cost = outcome.cost
        except ApiError as exc:
            return self._error_reply(exc), 0.0
        return json_response(200, body), cost

    def _delay(self, cost: float) -> None:
        if self.latency > 0:
            self.sleep(self.latency * cost + ROUND_TRIP)

    def _error_reply(self, exc: ApiError) -> Response:
        self._count(errors_total=1)
        body = envelope.error_body(exc.code, exc.description)
        if isinstance(exc, BlockedError):
            usage = exc.usage  # a 429 tells when the method unblocks, as a success reply would
            now = self._now()
            body["time"] = envelope.time_block(
                now, now, self.portal.tz, operating=usage.operating, operating_reset_at=usage.reset_at
            )
        self._delay(0.0)
        return json_response(exc.status, body)

    def _fault_reply(self, kind: str) -> Response:
        if kind == "5xx":
            if self.faults.variant(kind) == 0:
                body = envelope.error_body("INTERNAL_SERVER_ERROR", "Internal server error")
                return json_response(500, body)
            return Response(502, [("Content-Type", "text/plain; charset=utf-8")], b"Bad Gateway")
        if kind == "html":
            status = 502 if self.faults.variant(kind) == 0 else 503
            return Response(status, [("Content-Type", "text/html")], html_page(status, REASONS[status]))
        return Response(0, [], b"", fault=kind)

    # ---------------------------------------------------------------- auth

    def add_webhook(self, code: str, user_id: int = 1) -> None:
        """Accept another incoming webhook (its own operating budget)."""
        self.webhooks[code] = user_id

    def _authenticate(self, user: int | None, code: str | None, token: Any) -> Identity:
        if code is not None:
            owner = next((uid for known, uid in self.webhooks.items() if hmac.compare_digest(known, code)), None)
            if owner is None or owner != user:
                raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
            digest = hashlib.sha256(code.encode()).hexdigest()[:10]
            return Identity(user, "webhook", f"webhook:{user}:{digest}")
        if not isinstance(token, str) or not token:
            raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        with self.portal.lock:
            entry = self.portal.oauth["access"].get(token)
            if entry is None:
                raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
            if entry["client_id"] not in self.portal.oauth["clients"]:
                raise ApiError("invalid_token", "Unable to get application by token", 401)
            if entry["expires"] <= self._now():
                raise ApiError("expired_token", "The access token provided has expired.", 401)
            return Identity(int(entry["user_id"]), "oauth", f"app:{entry['client_id']}")

    # ---------------------------------------------------------------- one command

    def _execute(self, identity: Identity, name: str, params: dict[str, Any], *, inner: bool = False) -> Outcome:
        """Run one method (a top-level call or a batch command) with budget, lock, charge and stats."""
        if inner:
            self._count(batch_commands_total=1)
            self._count_method(name)
            refused = refuse_unbatchable(name)
            if refused is not None:
                return Outcome(error=refused)
        spec = lookup(name)
        if spec is None:
            return Outcome(error=ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404))
        if spec.oauth_only and identity.auth != "oauth":
            return Outcome(error=ApiError("WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403))
        key = (identity.app, spec.name.lower())
        try:
            self.budget.check(key)
        except Blocked as blocked:
            self._count(rejected_429=1)
            return Outcome(error=BlockedError(blocked.usage))
        started = self._now()
        writes = is_write(spec.name, params)  # before the handler sees the parameters
        call = Call(self.portal, spec.name, params, user_id=identity.user_id, auth=identity.auth, app=identity.app)
        error: ApiError | None = None
        result: Result | None = None
        try:
            with self.portal.lock:
                result = dispatch(call)
        except ApiError as exc:
            error = exc
        except Exception:  # a bug in a handler must look like the portal's 500, and be logged
            log.exception("handler of %s failed", spec.name)
            error = ApiError("INTERNAL_SERVER_ERROR", "Internal server error", 500)
        cost = call.cost if call.cost > 0 else costs.CALL
        usage = self.budget.charge(key, cost)
        with self._stats_lock:
            self._stats.operating_total += cost
            self._stats.operating_by_method[spec.name] += cost
            if writes and error is None:
                self._stats.writes_total += 1
        if error is not None:
            return Outcome(error=error, cost=cost)
        finished = self._now()
        block = envelope.time_block(
            started, finished, self.portal.tz, operating=usage.operating, operating_reset_at=usage.reset_at
        )
        return Outcome(result=result, time=block, cost=cost)

    # ---------------------------------------------------------------- batch

    def _batch(self, identity: Identity, params: dict[str, Any], started: float) -> tuple[dict[str, Any], float]:
        spent = 0.0

        def execute(name: str, command_params: dict[str, Any]) -> Outcome:
            nonlocal spent
            outcome = self._execute(identity, canonical(name), command_params, inner=True)
            if outcome.error is not None and outcome.error.code == "INTERNAL_SERVER_ERROR":
                self._count(errors_total=1)
            spent += outcome.cost
            return outcome

        result = run_batch(params, execute)
        # Docs: the outer batch is not billed, its commands are billed to their own methods. The JS SDK
        # team measured the opposite (batch billed as "batch", commands at 0); see bitrix24-rest.md 6.3.
        block = envelope.time_block(started, self._now(), self.portal.tz, operating=0)
        return envelope.success_body(result, time=block), spent

    # ---------------------------------------------------------------- OAuth

    def add_oauth_client(
        self, client_id: str, client_secret: str, *, user_id: int = 1, scope: str = DEFAULT_SCOPE
    ) -> dict[str, Any]:
        """Install an OAuth application and return its first token reply (access + refresh token)."""
        with self.portal.lock:
            self.portal.oauth["clients"][client_id] = {"secret": client_secret, "user_id": user_id, "scope": scope}
            return self._issue_tokens(client_id, user_id, "127.0.0.1", "http")

    def remove_oauth_client(self, client_id: str) -> None:
        """Uninstall an application: its tokens stop working (``invalid_token``)."""
        with self.portal.lock:
            self.portal.oauth["clients"].pop(client_id, None)

    def authorization_code(self, client_id: str, user_id: int = 1) -> str:
        """A one-time authorization code (30 s) as the portal hands it to the app's redirect URL."""
        code = secrets.token_hex(16)
        with self.portal.lock:
            self.portal.oauth["codes"][code] = {
                "client_id": client_id, "user_id": user_id, "expires": self._now() + CODE_TTL
            }
        return code

    def expire_tokens(self) -> None:
        """Make every access token expired (tests of the refresh path)."""
        with self.portal.lock:
            for entry in self.portal.oauth["access"].values():
                entry["expires"] = self._now() - 1

    def _issue_tokens(self, client_id: str, user_id: int, host: str, scheme: str) -> dict[str, Any]:
        now = self._now()
        client = self.portal.oauth["clients"][client_id]
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        self.portal.oauth["access"][access] = {"client_id": client_id, "user_id": user_id, "expires": now + self.access_ttl}
        self.portal.oauth["refresh"][refresh] = {"client_id": client_id, "user_id": user_id, "expires": now + REFRESH_TTL}
        base = f"{scheme}://{host}"
        return {
            "access_token": access,
            "client_endpoint": f"{base}/rest/",
            "domain": host,
            "expires": int(now + self.access_ttl),
            "expires_in": int(self.access_ttl),
            "member_id": self.portal.oauth["member_id"],
            "refresh_token": refresh,
            "scope": client.get("scope", DEFAULT_SCOPE),
            "server_endpoint": f"{base}/rest/",
            "status": "L",
            "user_id": user_id,
        }

    def _token_endpoint(self, request: Request) -> Response:
        try:
            params = request_params(request)
        except ApiError as exc:
            return json_response(400, envelope.error_body("invalid_request", exc.description))
        grant = str(params.get("grant_type", ""))
        client_id = str(params.get("client_id", ""))
        with self.portal.lock:
            client = self.portal.oauth["clients"].get(client_id)
            if client is None or not hmac.compare_digest(client["secret"], str(params.get("client_secret", ""))):
                return json_response(400, envelope.error_body("invalid_client", "Invalid client"))
            if grant == "refresh_token":
                store, presented = self.portal.oauth["refresh"], str(params.get("refresh_token", ""))
            elif grant == "authorization_code":
                store, presented = self.portal.oauth["codes"], str(params.get("code", ""))
            else:
                return json_response(400, envelope.error_body("invalid_request", "Invalid grant_type"))
            entry = store.pop(presented, None)  # one use only: a refresh reply carries a NEW refresh token
            if entry is None or entry["client_id"] != client_id or entry["expires"] <= self._now():
                return json_response(400, envelope.error_body("invalid_grant", "Invalid grant"))
            reply = self._issue_tokens(client_id, int(entry["user_id"]), request.host, request.scheme)
        self._count(token_refreshes=1)
        return json_response(200, reply)


# -------------------------------------------------------------------- helpers


def json_response(status: int, body: Any) -> Response:
    """A JSON reply."""
    return Response(status, [("Content-Type", JSON_TYPE)], envelope.dumps(body))


def cut(reply: Response) -> Response:
    """The same reply with only half of its body sent (``Content-Length`` still says all of it)."""
    return Response(reply.status, reply.headers, reply.body[: len(reply.body) // 2], fault="cut", length=len(reply.body))


def reply_headers(reply: Response) -> list[tuple[str, str]]:
    """Headers to send, with Content-Length (the announced one for a cut body)."""
    length = reply.length if reply.length is not None else len(reply.body)
    return [*reply.headers, ("Content-Length", str(length))]


def content_length(header: str | None) -> int | None:
    """A Content-Length header as a byte count up to ``MAX_BODY`` (0 when absent); None when unusable."""
    text = (header or "").strip()
    if not text:
        return 0
    if not text.isascii() or not text.isdigit():
        return None
    length = int(text)
    return length if length <= MAX_BODY else None


def unreadable(description: str) -> Response:
    """The reply to a request the portal cannot read: 400 ``INVALID_REQUEST``."""
    return json_response(400, envelope.error_body("INVALID_REQUEST", description))


def request_params(request: Request) -> dict[str, Any]:
    """Parameters of a request: the query string, then the body (form, multipart or JSON) over it.

    Anything that cannot be read is ``ApiError("INVALID_REQUEST", ..., 400)``; nothing else escapes.
    """
    try:
        return _request_params(request)
    except ApiError:
        raise
    except LookupError:  # an unknown or non-text charset
        raise ApiError("INVALID_REQUEST", "Unsupported charset in the request body", 400) from None
    except RecursionError:
        raise ApiError("INVALID_REQUEST", f"Parameters nested deeper than {MAX_DEPTH} levels", 400) from None
    except ValueError as exc:  # the encoder's limits (nested too deep, too many pairs), undecodable text
        raise ApiError("INVALID_REQUEST", _readable(exc), 400) from None


def _readable(exc: Exception) -> str:
    """Why parameters could not be read, echoing none of them."""
    if isinstance(exc, UnicodeError):
        return "The request body is not valid text in its charset"
    return f"Parameters cannot be read: nested deeper than {MAX_DEPTH} levels, more than {MAX_PAIRS} of them, or malformed"


def _request_params(request: Request) -> dict[str, Any]:
    params = by_name(decode_query(request.query)) if request.query else {}
    if not request.body:
        return params
    ctype = request.content_type.split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError("INVALID_REQUEST", "Invalid JSON body", 400) from None
        if not nested_within(data, MAX_DEPTH):
            raise ApiError("INVALID_REQUEST", f"Parameters nested deeper than {MAX_DEPTH} levels", 400)
        if isinstance(data, dict):
            params.update(data)
    elif ctype == "multipart/form-data":
        params.update(by_name(parse_multipart(request.content_type, request.body)))
    else:
        params.update(by_name(decode_query(request.body.decode("utf-8", "replace"))))
    return params



def nested_within(data: Any, limit: int) -> bool:
    """True when no list or object in ``data`` sits deeper than ``limit`` levels (checked without recursion)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Fields of a ``multipart/form-data`` body with nested keys; files become ``[name, base64]``.

    A part's charset that Python does not know, or that is not a text encoding, is a ``LookupError``.
    """
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    pairs: list[tuple[str, Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename:
            pairs.append((str(name), [filename, base64.b64encode(payload).decode("ascii")]))
        else:
            charset = part.get_content_charset() or "utf-8"
            pairs.append((str(name), payload.decode(charset, "replace")))
    return parse_pairs(pairs)
