"""Keeps secrets (webhook codes, OAuth tokens, client secrets) out of logs, messages and reprs.

Two layers: patterns that recognise secrets by where they sit (``/rest/1/CODE/``, ``auth=``,
``refresh_token=``...), and a registry of the exact secret values the auth objects hold.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "***"

# /rest/<user id>/<webhook code>/  (also /rest/api/<user id>/<code>/ for REST 3); the user id is
# matched loosely so that a malformed webhook URL is masked too
_WEBHOOK_PATH = re.compile(r"(/rest/(?:api/)?[^/\s?#'\"]+/)([^/\s?#'\"]+)")
# key=value in query strings and form bodies, "key": "value" in JSON text, key='value' in reprs
_SECRET_KEYS = r"auth|access_token|refresh_token|client_secret|code|application_token|password"
_QUERY_PARAM = re.compile(rf"(?i)([?&;\s]|^)({_SECRET_KEYS})=([^&\s'\"#]+)")
_JSON_PARAM = re.compile(rf"(?i)([\"']({_SECRET_KEYS})[\"']\s*:\s*[\"'])([^\"']+)")

_known: set[str] = set()
_known_lock = threading.Lock()
_MIN_SECRET = 4  # shorter strings would mask ordinary words


def register(*secrets: str | None) -> None:
    """Remember exact secret values (webhook code, tokens, client secret) so ``redact`` masks them anywhere."""
    with _known_lock:
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET:
                _known.add(secret)


def redact(text: object) -> str:
    """``text`` as a string with every known or recognisable secret replaced by ``***``."""
    value = str(text)
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in value:
            value = value.replace(secret, MASK)
    value = _WEBHOOK_PATH.sub(lambda m: m.group(1) + MASK, value)
    value = _QUERY_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}", value)
    value = _JSON_PARAM.sub(lambda m: m.group(1) + MASK, value)
    return value


def mask_url(url: str) -> str:
    """A URL safe to print: the webhook code and any secret query parameter masked."""
    return redact(url)


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redact it, and drop the args so nothing re-renders the raw values."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the record as it is
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


# loggers that print request URLs or bodies (urllib3 logs "POST /rest/1/CODE/method" at DEBUG)
NOISY_LOGGERS: tuple[str, ...] = (
    "urllib3.connectionpool",
    "urllib3.util.retry",
    "urllib3.connection",
    "requests",
    "connector.transport",
    "connector.auth",
    "connector.client",
    "connector.ratelimit",
    "jobs.portal",
    "jobs.cli",
)

_installed: set[str] = set()


def install(loggers: Iterable[str] = NOISY_LOGGERS) -> None:
    """Attach a ``RedactingFilter`` to each named logger (idempotent).

    Logger filters only see records created on that very logger, so the list names the exact
    loggers that print URLs, including our own modules' loggers (which redact at the call
    site as well).
    """
    for name in loggers:
        if name in _installed:
            continue
        logging.getLogger(name).addFilter(RedactingFilter())
        _installed.add(name)
