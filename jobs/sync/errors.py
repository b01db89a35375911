"""What a sync reports to a person: bad input, the wrong portal, an unusable mirror, a failed run.

Each is a ``jobs.errors.UserError`` (one clear line, an exit code); the command line prints them.
"""

from __future__ import annotations

from jobs.errors import UserError


class SyncError(UserError):
    """Base of the sync's errors."""


class UnknownEntity(SyncError):
    """``--entity`` named something that is not mirrored."""


class OtherPortal(SyncError):
    """The mirror belongs to another portal; nothing was written."""


class MirrorUnavailable(SyncError):
    """The mirror database cannot be used (bad URL, unreachable, newer schema)."""


class PortalRefused(SyncError):
    """The portal refused the credentials (wrong webhook code, token, scope) before anything was written."""


class SyncFailed(SyncError):
    """The run failed part-way; everything committed before the failure stays, the next run resumes."""
