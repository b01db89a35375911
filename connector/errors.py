"""The error tree of b24sync: every failure of a Bitrix24 call is classified here, once.

    B24Error                        code, description, HTTP status, method
    ├── RetriableError              back off and try again
    │   ├── QueryLimitExceeded      503 QUERY_LIMIT_EXCEEDED (leaky bucket overflow)
    │   ├── OperationTimeLimit      429 OPERATION_TIME_LIMIT: no call to *that method* before retry_at
    │   ├── ServerError             5xx, INTERNAL_SERVER_ERROR, ERROR_UNEXPECTED_ANSWER
    │   ├── TransportError          timeout, refused or dropped connection (no reply at all)
    │   │   └── ConnectFailed       the connection was never opened: the request certainly did not arrive
    │   ├── BadReplyError           not a Bitrix24 reply: HTML, a truncated body, JSON of another shape
    │   └── RefreshFailed           the token endpoint failed while refreshing: the call itself never ran
    ├── AuthError
    │   ├── ExpiredToken            401 expired_token: refresh the OAuth token once, then repeat
    │   └── AuthFailed              wrong webhook code or token, scope, app not installed (fatal)
    └── FatalError                  the request itself is wrong; repeating it cannot help
        ├── BadRequest              400: bad parameters, invalid filter, rule violations
        ├── NotFound                record or entity not found
        ├── AccessDenied            403 ACCESS_DENIED and friends
        ├── MethodNotFound          404 ERROR_METHOD_NOT_FOUND
        └── BatchCommandError       a command inside batch failed; wraps its own classified error

The retry policy looks only at these types (``NOT_SENT`` lists those after which even a write may
be repeated, because the portal certainly did not run it). ``HTTP_STATUS`` is the same table read
the other way: the emulator takes the HTTP status of each error code from it, so client and server
cannot drift.
"""

from __future__ import annotations

from typing import Any


class B24Error(Exception):
    """Base of every Bitrix24 error; carries the portal's code, description and HTTP status."""

    def __init__(self, code: str | int = "", description: str = "", status: int = 0, method: str = ""):
        self.code = code
        self.description = description
        self.status = status
        self.method = method
        super().__init__(self._message())

    def _message(self) -> str:
        """``crm.deal.get: NOT_FOUND: Not found (HTTP 400)``; legacy empty codes are left out."""
        parts = [part for part in (self.method, str(self.code) if self.code not in ("", None) else "") if part]
        text = self.description or "no description"
        status = f" (HTTP {self.status})" if self.status else ""
        return ": ".join([*parts, text]) + status


class RetriableError(B24Error):
    """A failure that may pass when the same call is made again later."""


class QueryLimitExceeded(RetriableError):
    """The portal's leaky bucket overflowed (HTTP 503)."""


class OperationTimeLimit(RetriableError):
    """The method spent its operating-time budget; it is blocked until ``retry_at`` (unix time)."""

    def __init__(self, *args: Any, retry_at: float | None = None, **kwargs: Any):
        self.retry_at = retry_at
        super().__init__(*args, **kwargs)


class ServerError(RetriableError):
    """A 5xx reply from the portal or a proxy in front of it."""


class TransportError(RetriableError):
    """No reply at all: timeout, connection refused or reset."""


class ConnectFailed(TransportError):
    """The connection could not be opened (refused, DNS, connect timeout): nothing reached the portal.

    The one transport failure after which repeating a write cannot apply it twice.
    """


class BadReplyError(RetriableError):
    """A reply that is not a Bitrix24 reply: an HTML error page, a truncated body, JSON of another shape.

    A proxy or a wrong URL answers like this; the message says so: ``not a Bitrix24 reply from METHOD``.
    """

    def _message(self) -> str:
        text = f"not a Bitrix24 reply from {self.method or 'the portal'}"
        if self.description:
            text += f": {self.description}"
        return text + (f" (HTTP {self.status})" if self.status else "")


class RefreshFailed(RetriableError):
    """The call got ``expired_token`` and the token endpoint then failed (timeout, dropped, 5xx).

    The portal refused the call at auth, so it never ran: repeating it is safe even for a write.
    ``cause`` is the token endpoint's own error.
    """

    def __init__(self, cause: B24Error):
        self.cause = cause
        super().__init__(cause.code, cause.description, cause.status, cause.method or "oauth/token")

    def _message(self) -> str:
        return f"refreshing the OAuth token failed, the call was not sent: {self.cause}"


class AuthError(B24Error):
    """Authorization problems."""


class ExpiredToken(AuthError):
    """The OAuth access token expired; refresh it and repeat the call."""


class AuthFailed(AuthError):
    """Credentials are wrong or insufficient; no retry can fix it."""


class FatalError(B24Error):
    """The request is wrong; repeating it cannot help."""


class BadRequest(FatalError):
    """Bad parameters or a rule of the portal refused the change."""


class NotFound(FatalError):
    """The record, entity or pipeline does not exist."""


class AccessDenied(FatalError):
    """The caller lacks the rights (or the plan lacks REST)."""


class MethodNotFound(FatalError):
    """The method does not exist."""


class BatchCommandError(FatalError):
    """A command inside a batch failed; ``command`` names it and ``error`` is its classified error."""

    def __init__(self, command: str, error: B24Error):
        self.command = command
        self.error = error
        super().__init__(error.code, error.description, error.status, error.method)

    def _message(self) -> str:
        return f"batch command {self.command!r}: {super()._message()}"


# failures after which the portal certainly did not run the call: refused before its handler
# (503, 429), never connected, or refused at auth while only the token refresh failed
NOT_SENT: tuple[type[B24Error], ...] = (QueryLimitExceeded, OperationTimeLimit, ConnectFailed, RefreshFailed)


def may_repeat(exc: BaseException, write: bool) -> bool:
    """True when repeating the call that failed with ``exc`` is safe: any retriable error of a read,
    and for a write only the ``NOT_SENT`` kinds (a lost reply to ``crm.deal.add`` may hide a new deal)."""
    if isinstance(exc, NOT_SENT):
        return True
    return not write and isinstance(exc, RetriableError)


# code -> (HTTP status the portal answers with, class the client raises)
ERROR_TABLE: dict[str, tuple[int, type[B24Error]]] = {
    "QUERY_LIMIT_EXCEEDED": (503, QueryLimitExceeded),
    "OVERLOAD_LIMIT": (503, AccessDenied),
    "OPERATION_TIME_LIMIT": (429, OperationTimeLimit),
    "INTERNAL_SERVER_ERROR": (500, ServerError),
    "ERROR_UNEXPECTED_ANSWER": (500, ServerError),
    "PORTAL_DELETED": (500, AccessDenied),
    "expired_token": (401, ExpiredToken),
    "NO_AUTH_FOUND": (401, AuthFailed),
    "invalid_token": (401, AuthFailed),
    "authorization_error": (401, AuthFailed),
    "ERROR_OAUTH": (401, AuthFailed),
    "APPLICATION_NOT_FOUND": (401, AuthFailed),
    "METHOD_CONFIRM_WAITING": (401, AuthFailed),
    "invalid_grant": (400, AuthFailed),
    "invalid_client": (400, AuthFailed),
    "insufficient_scope": (403, AuthFailed),
    "INVALID_CREDENTIALS": (403, AuthFailed),
    "user_access_error": (403, AuthFailed),
    "WRONG_AUTH_TYPE": (403, AuthFailed),
    "ACCESS_DENIED": (403, AccessDenied),
    "allowed_only_intranet_user": (403, AccessDenied),
    "ERROR_METHOD_NOT_FOUND": (404, MethodNotFound),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (404, MethodNotFound),
    "NOT_FOUND": (400, NotFound),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, BadRequest),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, BadRequest),
    "INVALID_REQUEST": (400, BadRequest),
    "INVALID_ARG_VALUE": (400, BadRequest),
    "ENTITY_TYPE_NOT_SUPPORTED": (400, BadRequest),
    "ERROR_CORE": (400, BadRequest),
    "ERROR_EVENT_NOT_FOUND": (400, BadRequest),
    "BX_ERROR": (400, BadRequest),
    "REMOVING_DISABLED": (400, BadRequest),
}

HTTP_STATUS: dict[str, int] = {code: status for code, (status, _) in ERROR_TABLE.items()}

_BY_STATUS: list[tuple[range, type[B24Error]]] = [
    (range(503, 504), QueryLimitExceeded),
    (range(429, 430), OperationTimeLimit),
    (range(500, 600), ServerError),
    (range(401, 402), AuthFailed),
    (range(403, 404), AccessDenied),
    (range(404, 405), NotFound),
    (range(400, 500), BadRequest),
]


def classify(
    status: int,
    error: dict[str, Any] | None,
    method: str = "",
    *,
    retry_at: float | None = None,
) -> B24Error:
    """Turn an HTTP status and a decoded error body (``{"error", "error_description"}``) into a typed error.

    ``error`` is None when the body was not the JSON envelope (HTML, truncated); such replies
    are retriable. Legacy methods answer with an empty or numeric code, so the description and
    the status decide there.
    """
    if error is None:
        if status >= 500:
            return ServerError("", "the reply is not a Bitrix24 JSON envelope", status, method)
        return BadReplyError("", "not the JSON envelope", status, method)
    code = error.get("error", "")
    description = str(error.get("error_description") or "")
    entry = ERROR_TABLE.get(code) if isinstance(code, str) else None
    if entry is not None:
        cls = entry[1]
    elif description.strip().rstrip(".").lower() == "not found":
        cls = NotFound
    else:
        cls = next((c for r, c in _BY_STATUS if status in r), BadRequest)
    if cls is OperationTimeLimit:
        return OperationTimeLimit(code, description, status, method, retry_at=retry_at)
    return cls(code, description, status, method)
