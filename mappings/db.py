"""Where the mirror lives and how to talk to it: URL resolution, engines, migrations, bulk upserts.

SQLite runs in WAL mode with a busy timeout and takes its write lock up front (``BEGIN IMMEDIATE``)
for write transactions; PostgreSQL goes through psycopg 3, optionally in one schema per portal.
Every message shows the URL with its password masked.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

DEFAULT_URL = "sqlite:///b24sync.sqlite3"
ENV_DB = "B24SYNC_DB"
MIGRATIONS = Path(__file__).resolve().with_name("migrations")
SQLITE_BUSY_MS = 30_000
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


_TARGETS: "weakref.WeakKeyDictionary[Engine, Target]" = weakref.WeakKeyDictionary()  # what each engine was opened for


class MirrorDatabaseError(Exception):
    """The mirror database cannot be used: a bad URL, unreachable, or the wrong kind; safe to print."""


@dataclass(frozen=True)
class Target:
    """A resolved mirror: its URL (secret: may hold a password), optional schema, and where it came from."""

    url: str
    schema: str | None = None
    source: str = "default"

    @property
    def shown(self) -> str:
        """The URL with its password masked (and the schema, when there is one)."""
        text = mask_url(self.url)
        return f"{text} (schema {self.schema})" if self.schema else text

    def __repr__(self) -> str:
        return f"Target({self.shown!r}, source={self.source!r})"


def resolve(db: str | None = None, database: Any = None, environ: Mapping[str, str] | None = None) -> Target:
    """The mirror's URL: ``--db`` > ``B24SYNC_DB`` > the config's ``[database]`` (url_env, url) > the default.

    ``database`` is the config's ``[database]`` model (``mappings.config.DatabaseConfig``) or None;
    its ``schema`` (when the model has one) applies whichever way the URL was given.
    """
    environ = os.environ if environ is None else environ
    schema = _config_schema(database)
    if schema is not None:
        schema = check_schema(schema)
    if db:
        return Target(db, schema, "--db")
    if environ.get(ENV_DB):
        return Target(environ[ENV_DB], schema, ENV_DB)
    if database is not None:
        env_name = getattr(database, "url_env", None)
        if env_name and environ.get(env_name):
            return Target(environ[env_name], schema, f"${env_name} ([database] url_env)")
        url = getattr(database, "url", None)
        if url is not None:
            text = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
            if text:
                return Target(text, schema, "[database] url")
    return Target(DEFAULT_URL, schema, "default")


def _config_schema(database: Any) -> str | None:
    """``[database] schema`` of the config (``DatabaseConfig.schema_name``), if any."""
    value = getattr(database, "schema_name", None)
    return value if isinstance(value, str) and value else None


def check_schema(name: str) -> str:
    """A PostgreSQL schema name b24sync accepts (lower-case letters, digits, ``_``), or MirrorDatabaseError."""
    if not _SCHEMA_RE.match(name):
        raise MirrorDatabaseError(f"schema {name!r}: use lower-case latin letters, digits and _ (at most 63)")
    return name


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (never raises, never shows the password)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is masked by hand
        return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", str(url))


def _redact(text: str, url: Any) -> str:
    password = getattr(url, "password", None)
    return text.replace(str(password), "***") if password else text


# ---------------------------------------------------------------- engines


def open_engine(target: Target | str, *, pool_size: int = 5) -> Engine:
    """An engine for the mirror (no connection is made yet); MirrorDatabaseError for a bad URL."""
    if isinstance(target, str):
        target = Target(target)
    try:
        url = make_url(target.url)
    except ArgumentError:
        raise MirrorDatabaseError(f"not a database URL: {mask_url(target.url)} (e.g. sqlite:///b24sync.sqlite3 or "
                                  "postgresql+psycopg://user@host/db)") from None
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            if target.schema:
                raise MirrorDatabaseError("[database] schema is for PostgreSQL; SQLite keeps one mirror per file")
            engine = _sqlite_engine(url)
        elif backend == "postgresql":
            if url.drivername in ("postgresql", "postgres"):
                url = url.set(drivername="postgresql+psycopg")
            connect_args: dict[str, Any] = {}
            if target.schema:
                connect_args["options"] = f"-csearch_path={target.schema}"
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
                                      connect_args=connect_args)
        else:
            raise MirrorDatabaseError(f"{mask_url(target.url)}: the mirror runs on SQLite or PostgreSQL, not {backend}")
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise MirrorDatabaseError(f"{mask_url(target.url)}: {_redact(str(exc), url)}") from None
    _TARGETS[engine] = target
    return engine


def _sqlite_engine(url: Any) -> Engine:
    memory = url.database in (None, "", ":memory:")
    options: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False}}
    if memory:
        options["poolclass"] = sa.pool.StaticPool
    engine = sa.create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("b24sync_write") else "BEGIN")

    return engine


def target_of(engine: Engine) -> Target:
    """The target an engine was opened for (a plain URL target for engines made elsewhere)."""
    found = _TARGETS.get(engine)
    return found or Target(engine.url.render_as_string(hide_password=False))


def shown(engine: Engine) -> str:
    """The engine's URL with the password masked."""
    return target_of(engine).shown


def sqlite_path(engine: Engine) -> Path | None:
    """The file of a SQLite mirror (None for PostgreSQL and in-memory SQLite)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(engine.url.database)


def check(engine: Engine) -> None:
    """Make sure the database can be reached, or raise MirrorDatabaseError (one clear line).

    A SQLite file that does not exist yet is not created here (its folder must exist).
    """
    path = sqlite_path(engine)
    if path is not None and not path.exists():
        folder = path.resolve().parent
        if not folder.is_dir():
            raise MirrorDatabaseError(f"cannot create the mirror {shown(engine)}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise MirrorDatabaseError(f"cannot create the mirror {shown(engine)}: folder {folder} is not writable")
        return
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        raise unreachable(engine, exc) from None


def unreachable(engine: Engine, exc: BaseException) -> MirrorDatabaseError:
    """A MirrorDatabaseError for a failure to use ``engine`` (the driver's reason, password masked)."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = _redact(reason[0] if reason else type(exc).__name__, engine.url)
    return MirrorDatabaseError(f"cannot use the mirror database {shown(engine)}: {text}")


def exists(engine: Engine) -> bool:
    """True when the database holds b24sync tables (any revision); never creates a SQLite file."""
    path = sqlite_path(engine)
    if path is not None and not path.exists():
        return False
    with engine.connect() as conn:
        return sa.inspect(conn).has_table("alembic_version")


_WRITERS: "weakref.WeakKeyDictionary[Engine, threading.Lock]" = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def _writer_lock(engine: Engine) -> threading.Lock:
    with _WRITERS_LOCK:
        lock = _WRITERS.get(engine)
        if lock is None:
            lock = _WRITERS[engine] = threading.Lock()
        return lock


@contextlib.contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed on success, rolled back on error; SQLite takes its lock first.

    SQLite has one writer at a time: the threads of this process queue on a lock of their own
    (woken at once, where SQLite's busy handler would poll with growing sleeps); other processes
    still meet SQLite's own lock (``BEGIN IMMEDIATE`` with the busy timeout).
    """
    local = _writer_lock(engine) if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    with local, engine.connect() as conn:
        conn.execution_options(b24sync_write=True)
        with conn.begin():
            yield conn


def current_schema(engine: Engine) -> str | None:
    """The PostgreSQL schema the engine writes to (None on SQLite)."""
    if engine.dialect.name != "postgresql":
        return None
    target = target_of(engine)
    if target.schema:
        return target.schema
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT current_schema()").scalar()


# ---------------------------------------------------------------- migrations


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def head() -> str:
    """The newest revision shipped with this version of b24sync."""
    from alembic.script import ScriptDirectory

    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    found = ScriptDirectory.from_config(config).get_current_head()
    assert found is not None
    return found


def revisions() -> list[str]:
    """Every shipped revision, oldest first."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return [s.revision for s in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]


def current(engine: Engine) -> str | None:
    """The revision the mirror is at (None for an empty database); never creates a SQLite file."""
    from alembic.runtime.migration import MigrationContext

    path = sqlite_path(engine)
    if path is not None and not path.exists():
        return None
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise unreachable(engine, exc) from None


_MIGRATING = threading.Lock()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the mirror to ``revision`` in one transaction; returns (revision before, revision after).

    Known revisions only: a mirror written by a newer b24sync is refused, not touched. Safe to call
    from several threads and processes at once: one upgrades, the others then find it done.
    """
    from alembic import command

    before = current(engine)
    known = revisions()
    if before is not None and before not in known:
        raise MirrorDatabaseError(
            f"the mirror {shown(engine)} is at revision {before}, which this b24sync does not know (newer version?)"
        )
    try:
        schema = target_of(engine).schema
        if schema and engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        with _MIGRATING, begin_write(engine) as conn:  # Alembic's context is one per process
            if conn.dialect.name == "postgresql":  # concurrent upgrades of one database wait for each other
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240519871)")
            command.upgrade(_alembic_config(conn), revision)
    except SQLAlchemyError as exc:
        raise unreachable(engine, exc) from None
    return before, current(engine) or ""


def is_current(engine: Engine) -> bool:
    """True when the mirror is at the newest revision."""
    return current(engine) == head()


# ---------------------------------------------------------------- bulk upserts


IN_LIST = 500  # keys per IN (...) list


def chunks(items: Sequence[Any], size: int = IN_LIST) -> Iterator[Sequence[Any]]:
    """``items`` in slices of ``size``: keys for one ``IN (...)`` list each, within every database's limits."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def upsert(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of many rows (all with the same columns) in one executemany.

    ``keys`` defaults to the primary key; ``update`` to every other column given (an empty list
    means ``DO NOTHING``: insert new rows, keep existing ones as they are). The statement is
    compiled once per table and column set; each value goes through its column type's own bind
    processing (the same conversion SQLAlchemy applies), then straight to the driver.
    """
    if not rows:
        return
    names = tuple(rows[0].keys())
    keys = tuple(keys or (c.name for c in table.primary_key))
    changing = tuple(n for n in names if n not in keys) if update is None else tuple(update)
    sql, positional, order, plan = _upsert_plan(conn, table, names, keys, changing)
    if positional:
        params: list[Any] = [tuple(value if proc is None else proc(value) for proc, value in zip(plan, map(row.__getitem__, order)))
                             for row in rows]
    else:
        params = [{name: (row[name] if proc is None else proc(row[name])) for name, proc in zip(order, plan)} for row in rows]
    conn.exec_driver_sql(sql, params)


def insert_new(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows the mirror does not have (all with the same columns): ``COPY`` on PostgreSQL, else ``upsert``.

    ``COPY`` costs the server and the driver about half of what an ``INSERT`` per row does, which
    is most of an initial load's writing. Should a row exist after all (the caller looked before
    and holds the lease, so it should not), the copy is undone to a savepoint and the rows are
    upserted instead: never an error, never a duplicate.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        upsert(conn, table, rows)
        return
    from psycopg import errors as pg_errors

    names = tuple(rows[0].keys())
    keys = tuple(c.name for c in table.primary_key)
    _, _, order, plan = _upsert_plan(conn, table, names, keys, tuple(n for n in names if n not in keys))
    by_name = dict(zip(order, plan))  # each value through its column type's bind processing, as upsert does
    processors = [by_name[name] for name in names]
    preparer = conn.dialect.identifier_preparer
    sql = f"COPY {preparer.format_table(table)} ({', '.join(preparer.quote(n) for n in names)}) FROM STDIN"
    try:
        with conn.begin_nested():
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row([value if proc is None else proc(value) for proc, value in zip(processors, map(row.__getitem__, names))])
    except pg_errors.UniqueViolation:
        upsert(conn, table, rows)


_UPSERTS: dict[tuple[Any, ...], tuple[sa.Table, str, bool, list[str], list[Any]]] = {}
_UPSERTS_LOCK = threading.Lock()


def _upsert_plan(conn: Connection, table: sa.Table, names: tuple[str, ...], keys: tuple[str, ...],
                 changing: tuple[str, ...]) -> tuple[str, bool, list[str], list[Any]]:
    """The compiled upsert of a table and column set: SQL text, paramstyle, parameter order, a bind processor each."""
    dialect = conn.dialect
    key = (dialect.name, table.name, id(table), names, keys, changing)
    with _UPSERTS_LOCK:
        found = _UPSERTS.get(key)
    if found is not None and found[0] is table:
        return found[1], found[2], found[3], found[4]
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - open_engine refuses other databases
        raise MirrorDatabaseError(f"no upsert for {dialect.name}")
    stmt = insert(table).values({name: sa.bindparam(name, type_=table.c[name].type) for name in names})
    if changing:
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={n: stmt.excluded[n] for n in changing})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    compiled = stmt.compile(dialect=dialect)
    sql = str(compiled)
    positional = bool(compiled.positional)
    order = list(compiled.positiontup or ()) if positional else list(names)
    if not positional and dialect.paramstyle == "pyformat":  # tuples bind faster than dicts: %(name)s -> %s
        order = re.findall(r"%\((\w+)\)s", sql)
        sql = re.sub(r"%\((\w+)\)s", "%s", sql)
        positional = True
    if sorted(order) != sorted(names):  # pragma: no cover - every parameter is one of the columns given
        raise MirrorDatabaseError(f"upsert of {table.name}: unexpected parameters {order}")
    # the dialect's own processors, as a statement executed by SQLAlchemy gets them (a TypeDecorator's
    # alone would hand SQLite a datetime, which the driver writes in a second text format)
    plan = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order]
    with _UPSERTS_LOCK:
        if len(_UPSERTS) > 512:
            _UPSERTS.clear()
        _UPSERTS[key] = (table, sql, positional, order, plan)
    return sql, positional, order, plan
