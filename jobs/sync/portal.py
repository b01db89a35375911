"""The mirror knows its portal: the address it was first synced from (scheme, host, port; never a secret).

A run against another portal is refused before anything is written, naming both portals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from jobs.sync.errors import OtherPortal
from mappings import db
from mappings.tables import b24sync_portal

_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Identity:
    """Who the client talks to: ``https://example.bitrix24.ru:443`` and, with OAuth, the portal's member_id."""

    address: str
    member_id: str | None = None


def normalize(url: str) -> str:
    """``https://Portal.bitrix24.ru/rest/1/x/`` -> ``https://portal.bitrix24.ru:443`` (scheme, host, port only)."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 443)
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def identity_of(client: Any) -> Identity:
    """The portal a client talks to, from its auth (webhook origin, or OAuth client_endpoint)."""
    auth = client.auth
    origin = getattr(auth, "origin", None)
    if not origin:
        origin = getattr(auth, "client_endpoint", None)
    if not origin:
        raise OtherPortal("cannot tell which portal this client talks to (no webhook origin, no OAuth client_endpoint)")
    tokens = getattr(auth, "tokens", None)
    member = getattr(tokens, "member_id", None) if tokens is not None else None
    return Identity(normalize(str(origin)), str(member) if member else None)


def read(source: Engine | Connection) -> dict[str, Any] | None:
    """The portal row of a mirror (None for a new mirror)."""
    if isinstance(source, Engine):
        with source.connect() as conn:
            return read(conn)
    if not sa.inspect(source).has_table(b24sync_portal.name):
        return None
    row = source.execute(sa.select(b24sync_portal).where(b24sync_portal.c.id == 1)).mappings().first()
    return dict(row) if row is not None else None


def check(known: dict[str, Any] | None, identity: Identity, mirror: str) -> None:
    """Raise ``OtherPortal`` when the mirror belongs to another portal."""
    if known is None:
        return
    same_member = identity.member_id and known.get("member_id") and identity.member_id == known["member_id"]
    if known["address"] != identity.address and not same_member:
        raise OtherPortal(
            f"the mirror {mirror} belongs to the portal {known['address']}, not {identity.address}; "
            "nothing was written. Use another database (--db) for this portal."
        )


def record(conn: Connection, identity: Identity, timezone_text: str | None, mirror: str) -> None:
    """Check the portal again inside the run's transaction and record it (first run) or its last sync."""
    known = read(conn)
    check(known, identity, mirror)
    now = datetime.now(timezone.utc)
    if known is None:
        conn.execute(b24sync_portal.insert().values(id=1, address=identity.address, member_id=identity.member_id,
                                                    timezone=timezone_text, first_synced_at=now, last_synced_at=None))
        return
    values: dict[str, Any] = {}
    if timezone_text and known.get("timezone") != timezone_text:
        values["timezone"] = timezone_text
    if identity.member_id and not known.get("member_id"):
        values["member_id"] = identity.member_id
    if identity.address != known["address"]:  # same member_id: the portal moved to a new address
        values["address"] = identity.address
    if values:
        conn.execute(b24sync_portal.update().where(b24sync_portal.c.id == 1).values(**values))


def finished(conn: Connection) -> None:
    """Stamp the portal row with the end of a successful run."""
    conn.execute(b24sync_portal.update().where(b24sync_portal.c.id == 1).values(last_synced_at=datetime.now(timezone.utc)))


def shown(engine: Engine) -> str:
    """The mirror as people may see it (password masked)."""
    return db.shown(engine)
