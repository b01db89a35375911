"""Database fixtures shared by the sync, report and worker tests: every mirror test runs on SQLite and PostgreSQL.

- ``mirror_url``: an empty mirror unique to the test, parametrized ``sqlite`` (a file in tmp_path)
  and ``postgresql`` (a fresh schema in a database made for this test session, named through the
  URL's ``options=-csearch_path=...`` so subprocesses get it too); dropped after the test.
  PostgreSQL runs when ``B24SYNC_TEST_PG_URL`` is set (CI and ``make test`` set it).
- ``mirror_engine``: an engine on ``mirror_url`` already upgraded to the newest revision.
- ``make_mirror()``: more empty mirrors of the same kind in one test -> ``(url, engine)``.
- ``pg_session_url``: the session database itself (PostgreSQL-only tests).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from mappings import db

PG_ENV = "B24SYNC_TEST_PG_URL"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get(PG_ENV) else [])
_schemas = itertools.count(1)


def pytest_report_header(config: Any) -> str:
    """Say which databases the mirror tests run on."""
    return f"mirror databases: {', '.join(BACKENDS)}" + ("" if os.environ.get(PG_ENV) else f" (set {PG_ENV} for PostgreSQL)")


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str | None]:
    """A PostgreSQL database made for this test session (None without ``B24SYNC_TEST_PG_URL``); dropped at the end."""
    base = os.environ.get(PG_ENV)
    if not base:
        yield None
        return
    url = sa.engine.make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    name = f"b24sync_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        _PG_SESSION[0] = url.set(database=name).render_as_string(hide_password=False)
        yield _PG_SESSION[0]
    finally:
        _TEMPLATES.pop("postgresql", None)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


class _Mirrors:
    """Makes empty mirrors of one backend for one test and removes them afterwards."""

    def __init__(self, backend: str, tmp_path: Any, pg_url: str | None):
        self.backend = backend
        self.tmp_path = tmp_path
        self.pg_url = pg_url
        self.engines: list[Any] = []
        self.schemas: list[str] = []
        self._files = itertools.count(1)

    def url(self) -> str:
        """The URL of a new empty mirror."""
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp_path / f'mirror-{next(self._files)}.sqlite3'}"
        assert self.pg_url is not None
        schema = f"t_{os.getpid()}_{next(_schemas)}"
        engine = sa.create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine.dispose()
        self.schemas.append(schema)
        sep = "&" if "?" in self.pg_url else "?"
        return f"{self.pg_url}{sep}options={quote(f'-csearch_path={schema}')}"

    def make(self, *, upgraded: bool = True) -> tuple[str, Any]:
        """A new mirror: ``(url, engine)``; ``upgraded`` ones start as a copy of one upgraded per session."""
        url = self.url()
        if upgraded:
            _template(self.backend, self.tmp_path).copy_to(url)
        engine = db.open_engine(url)
        self.engines.append(engine)
        return url, engine

    def close(self) -> None:
        """Dispose of every engine and drop every schema."""
        for engine in self.engines:
            engine.dispose()
        if self.schemas:
            engine = sa.create_engine(self.pg_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                for schema in self.schemas:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            engine.dispose()


class _Template:
    """The newest schema, made once per session by ``db.upgrade`` and copied into each test's mirror.

    SQLite: the upgraded file is copied. PostgreSQL: the statements the upgrade ran are recorded
    and run again in the new schema (the migrations themselves are tested in tests/mappings).
    """

    def __init__(self, backend: str, url: str):
        self.backend = backend
        self.statements: list[tuple[str, Any]] = []
        engine = db.open_engine(url)
        if backend == "postgresql":
            def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
                """Keep the statements that build the schema and set its revision."""
                text = statement.lstrip().upper()
                if text.startswith(("CREATE", "ALTER", "DROP")) or (text.startswith(("INSERT", "UPDATE")) and "ALEMBIC_VERSION" in text):
                    self.statements.append((statement, parameters))
            sa.event.listen(engine, "before_cursor_execute", record)
            db.upgrade(engine)
            sa.event.remove(engine, "before_cursor_execute", record)
        else:
            db.upgrade(engine)
        engine.dispose()
        self.file = sa.engine.make_url(url).database if backend == "sqlite" else None

    def copy_to(self, url: str) -> None:
        """Give the empty mirror at ``url`` the newest schema."""
        if self.backend == "sqlite":
            import shutil

            shutil.copyfile(self.file, sa.engine.make_url(url).database)
            return
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for statement, parameters in self.statements:
                conn.exec_driver_sql(statement, parameters or None)
        engine.dispose()


_TEMPLATES: dict[str, _Template] = {}


def _template(backend: str, tmp_path: Any) -> _Template:
    if backend not in _TEMPLATES:
        if backend == "sqlite":
            folder = tmp_path.parent / f"mirror-template-{uuid.uuid4().hex[:8]}"
            folder.mkdir()
            _TEMPLATES[backend] = _Template(backend, f"sqlite:///{folder / 'template.sqlite3'}")
        else:
            mirrors = _Mirrors(backend, tmp_path, _PG_SESSION[0])
            _TEMPLATES[backend] = _Template(backend, mirrors.url())
            mirrors.close()
    return _TEMPLATES[backend]


_PG_SESSION: list[str | None] = [None]


@pytest.fixture(params=BACKENDS)
def mirror_backend(request: Any) -> str:
    """``sqlite`` or ``postgresql``: the kind of database this test's mirrors are."""
    return str(request.param)


@pytest.fixture
def _mirrors(mirror_backend: str, tmp_path: Any, pg_session_url: str | None) -> Iterator[_Mirrors]:
    mirrors = _Mirrors(mirror_backend, tmp_path, pg_session_url)
    yield mirrors
    mirrors.close()


@pytest.fixture
def make_mirror(_mirrors: _Mirrors) -> Any:
    """``make_mirror(upgraded=True) -> (url, engine)``: another empty mirror of this test's kind."""
    return _mirrors.make


@pytest.fixture
def mirror_url(_mirrors: _Mirrors) -> str:
    """The URL of an empty mirror (no schema yet)."""
    return _mirrors.url()


@pytest.fixture
def mirror_engine(make_mirror: Any) -> Any:
    """An engine on an empty mirror at the newest revision."""
    return make_mirror()[1]
