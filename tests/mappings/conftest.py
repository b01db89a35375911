"""The mirror database fixtures (SQLite and PostgreSQL) for the tests of the tables, migrations and upserts.

They live in ``tests/jobs/conftest.py`` (shared with the sync, report and worker tests) and are
only made visible here.
"""

from tests.jobs.conftest import _mirrors, make_mirror, mirror_backend, mirror_engine, mirror_url, pg_session_url  # noqa: F401
