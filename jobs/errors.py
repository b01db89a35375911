"""The base of every error a job reports to a person, and the one translation of any error into what a person sees.

A job raises ``UserError`` (or a subclass) instead of printing and exiting; the command line's boundary
turns it, the connector's and the config's errors, and the operating system's into ``failure_of(exc)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Exit codes of every command (the README's "Exit codes and errors" table lists them per command).
EXIT_OK = 0
EXIT_ERROR = 1  # something was wrong: a file, the config, the portal, a refused plan
EXIT_USAGE = 2  # the command line itself was wrong (an unknown option, a bad value, an empty --webhook)
EXIT_INTERRUPTED = 130  # Ctrl-C


class UserError(Exception):
    """A failure the user can act on; ``str(error)`` names what was wrong and never holds a secret."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


@dataclass(frozen=True)
class Failure:
    """What the user sees of an error: ``message`` (first line says what was wrong, further lines are
    indented details), the exit code, and the same as data for ``--format json`` (``errors``)."""

    message: str
    exit_code: int = EXIT_ERROR
    errors: list[dict[str, Any]] = field(default_factory=list)

    def json_errors(self) -> list[dict[str, Any]]:
        """The ``errors`` list of a JSON error document: the structured problems, else the message."""
        return self.errors or [{"message": self.message}]


def failure_of(exc: BaseException, *, portal: str | None = None) -> Failure:
    """The one translation of an exception into a ``Failure``; every message passes ``redact``.

    ``portal`` is the address of the portal the command talked to (``https://host``); it names the
    portal in the message of a Bitrix24 error that does not already name it.
    """
    import click

    from connector.errors import B24Error
    from connector.redact import redact
    from mappings.config import ConfigError

    if isinstance(exc, UserError):
        return Failure(redact(exc), exc.exit_code)
    if isinstance(exc, ConfigError):
        source = next((p.source for p in exc.problems if p.source), "the config file")
        lines = [f"{source} has {len(exc.problems)} problem(s):"] + [f"  {p}" for p in exc.problems]
        problems = [
            {"location": p.location, "message": redact(p.message), "line": p.line, "column": p.column,
             "source": p.source, "text": redact(p)}
            for p in exc.problems
        ]
        return Failure(redact("\n".join(lines)), EXIT_ERROR, problems)
    if isinstance(exc, B24Error):
        text = redact(exc)
        if portal and _host(portal) not in text:
            text = f"portal {redact(portal)}: {text}"
        return Failure(text, EXIT_ERROR)
    if isinstance(exc, click.UsageError):
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return Failure(redact(exc.format_message()) + hint, EXIT_USAGE)
    if isinstance(exc, click.ClickException):
        return Failure(redact(exc.format_message()), exc.exit_code)
    if isinstance(exc, click.Abort):
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return Failure("interrupted", EXIT_INTERRUPTED)
        return Failure("cancelled (no input)", EXIT_ERROR)
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", EXIT_INTERRUPTED)
    if isinstance(exc, UnicodeError):
        reason = getattr(exc, "reason", str(exc))
        return Failure(redact(f"not UTF-8 text ({reason})"), EXIT_ERROR)
    if isinstance(exc, OSError):
        return Failure(redact(os_message(exc)), EXIT_ERROR)
    if isinstance(exc, RecursionError):
        return Failure("the input is nested too deeply", EXIT_ERROR)
    if isinstance(exc, MemoryError):
        return Failure("out of memory", EXIT_ERROR)
    text = f"unexpected {type(exc).__name__}: {exc}" if str(exc) else f"unexpected {type(exc).__name__}"
    return Failure(redact(text) + " (run with -vv to see where)", EXIT_ERROR)


def os_message(exc: OSError, what: str = "") -> str:
    """``OSError`` as ``what PATH: reason`` (``cannot read b24sync.toml: Permission denied``)."""
    reason = exc.strerror or type(exc).__name__
    name = exc.filename if exc.filename is not None else ""
    where = " ".join(part for part in (what, str(name)) if part)
    return f"{where}: {reason}" if where else reason


def _host(origin: str) -> str:
    return origin.split("://", 1)[-1].rstrip("/")
