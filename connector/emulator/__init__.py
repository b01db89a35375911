"""A Bitrix24-compatible REST server: state, method handlers, WSGI app, seeded-portal generator."""

from __future__ import annotations

from connector.emulator.state import Portal


def new_portal(
    tz: str = "+03:00", *, seed: int | None = None, deals: int | None = None, history: str = "current"
) -> Portal:
    """A fresh portal with the default dictionaries, pipelines and users; seeded when ``seed`` is given.

    ``deals`` is the approximate number of deals of a seeded portal (default: ``seed`` itself,
    as ``emulator serve --seed N`` builds a portal of about N deals). ``history`` picks the stage
    history writer: ``"current"`` (today's portals) or ``"legacy"`` (older portals, which delete a
    won/lost row when the record moves on; see ``connector/emulator/records/history.py``).
    """
    from connector.emulator import pipelines, seed as seeding
    from connector.emulator.methods import users
    from connector.emulator.records.history import check_mode

    portal = Portal(tz)
    portal.history_mode = check_mode(history)
    pipelines.install_defaults(portal)
    users.install_defaults(portal)
    if seed is not None:
        seeding.populate(portal, deals=deals if deals is not None else seed, seed=seed)
    return portal
