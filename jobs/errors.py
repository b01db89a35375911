"""The base of every error a job reports to a person: a message safe to print and the exit code it means.

The command line turns these (and the connector's and the config's errors, and the operating system's)
into one ``error: ...`` line and that exit code; a job raises them instead of printing and exiting.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on; ``str(error)`` names what was wrong and never holds a secret."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
