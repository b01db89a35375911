"""Alembic revisions of the mirror's schema (``mappings.db.upgrade`` runs them; no alembic.ini needed).

Revision files live in ``versions/`` as modules of this package, so every install ships them.
"""
