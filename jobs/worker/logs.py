"""The worker's log lines on stderr: text for people or JSON lines for log collectors, never a secret.

Every record is masked where it is made (``connector.redact``); the structured fields of a job line
(``extra={"b24sync": {...}}``) are masked here as well, since they are attached after that.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from connector.redact import redact

FORMATS = ("text", "json")
FIELDS = "b24sync"  # the record attribute holding a job line's structured fields


def _moment(created: float) -> str:
    return datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2026-12-01T08:10:35.120Z info jobs.worker: acme sync ok: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        """One line (a traceback, when there is one, on the lines after it)."""
        text = f"{_moment(record.created)} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return redact(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then a job line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {"time": _moment(record.created), "level": record.levelname.lower(), "logger": record.name,
                                "message": record.getMessage()}
        data.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            data["traceback"] = record.exc_text or self.formatException(record.exc_info)
        return redact(json.dumps(data, ensure_ascii=False, default=str))


def setup(fmt: str = "text", *, verbose: int = 0, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in ``fmt``; the worker's own lines at INFO and up,
    everything else at WARNING and up (``-v`` info, ``-vv`` debug, the scheduler's own lines included)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING - 10 * min(verbose, 2))
    logging.getLogger("jobs.worker").setLevel(logging.INFO if verbose < 2 else logging.DEBUG)
    # the scheduler's "Running job ..." lines only with -v; its "skipped: maximum number of running
    # instances" warning is said by the worker itself, as a skipped run
    logging.getLogger("apscheduler").setLevel(logging.ERROR if verbose == 0 else logging.DEBUG if verbose > 1 else logging.INFO)
