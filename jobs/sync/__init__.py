"""The mirror: Bitrix24 CRM records, stage history and dictionaries copied into SQL, incrementally and safely.

``run_sync(client, engine, ...)`` is the one entry point (the command line, the worker and the demo
call it); ``jobs.sync.command`` holds what ``b24sync sync`` and ``b24sync db`` do with plain arguments.
"""

from __future__ import annotations

from jobs.sync.errors import MirrorUnavailable, OtherPortal, PortalRefused, SyncError, SyncFailed, UnknownEntity
from jobs.sync.result import StreamResult, SyncResult
from jobs.sync.run import LEASE, LEASE_TTL, run_sync

__all__ = [
    "LEASE", "LEASE_TTL", "MirrorUnavailable", "OtherPortal", "PortalRefused", "StreamResult", "SyncError",
    "SyncFailed", "SyncResult", "UnknownEntity", "run_sync",
]
