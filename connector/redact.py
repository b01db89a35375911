"""Keeps secrets (webhook codes, OAuth tokens, client secrets) out of logs, messages and reprs.

Two layers: patterns that recognise secrets by where they sit (``/rest/1/CODE/``, ``auth=``,
``refresh_token=``...), and a registry of the exact secret values the auth objects hold. Importing
the module masks every log record of the process (``install``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

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


def clean_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render a record's message once with secrets masked and drop its args, so nothing re-renders
    the raw values; a traceback is rendered and masked too. A broken format string is left alone."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: keep the record as it is
        return record
    cleaned = redact(message)
    if cleaned != message or record.args:
        record.msg = cleaned
        record.args = ()
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message with secrets masked (for a handler of one's own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place and let it through."""
        clean_record(record)
        return True


def _redacting_factory(inner: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return clean_record(inner(*args, **kwargs))

    factory.redacting = True  # type: ignore[attr-defined]
    return factory


def install() -> None:
    """Mask secrets in every log record of every logger, present or future (idempotent).

    The mask is applied where records are made: the logging module's record factory is wrapped
    once, so a logger that does not exist yet (``jobs.sync``, a library's) is covered as well,
    whatever handler later prints the record.
    """
    with _known_lock:
        current = logging.getLogRecordFactory()
        if not getattr(current, "redacting", False):
            logging.setLogRecordFactory(_redacting_factory(current))


install()
