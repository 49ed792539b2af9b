"""Database URLs, SQLAlchemy engines and schema versions: open a database or fail in one line.

``resolve_url`` picks the URL (argument, ``OPSEARCH_DB``, or the user's SQLite file);
``create_engine`` sets SQLite up for several processes (WAL, busy timeout, ``BEGIN IMMEDIATE``
for writers) and rewrites ``postgresql://`` to psycopg 3; ``ensure_schema`` creates a new
database at the head revision and refuses one that is behind, naming ``opsearch db upgrade``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ..errors import DatabaseError
from .models import HEAD_REVISION, VERSION_TABLE

ENV_VAR = "OPSEARCH_DB"
BUSY_TIMEOUT_MS = 60_000


def default_url() -> str:
    """The embedded SQLite database under the user data directory."""
    import platformdirs

    path = Path(platformdirs.user_data_dir("opsearch")) / "opsearch.db"
    return f"sqlite:///{path}"


def resolve_url(url: str | None = None) -> str:
    """The URL to open: ``url``, else ``$OPSEARCH_DB``, else :func:`default_url`.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``.
    """
    url = url or os.environ.get(ENV_VAR) or default_url()
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def safe_url(url: str | Engine) -> str:
    """The URL with its password masked, for messages."""
    u = url.url if isinstance(url, Engine) else make_url(url) if isinstance(url, str) else url
    try:
        return u.render_as_string(hide_password=True)
    except AttributeError:  # pragma: no cover
        return str(u)


def one_line(exc: BaseException) -> str:
    """The driver's first message line, without SQLAlchemy's background links."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def create_engine(url: str) -> Engine:
    """An engine for ``url``; raises :class:`DatabaseError` for a malformed URL or driver."""
    try:
        if "://" not in url:
            raise ArgumentError(url)
        u = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseError(f"malformed database URL '{url}': expected e.g. sqlite:///path/opsearch.db "
                            "or postgresql://user@host/db") from None
    backend = u.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseError(f"unsupported database '{backend}' in {safe_url(u)}: use sqlite or postgresql")
    try:
        if backend == "sqlite":
            return _sqlite_engine(u)
        return sa.create_engine(u, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except (ArgumentError, ImportError, SQLAlchemyError) as e:
        raise DatabaseError(f"cannot open database {safe_url(u)}: {one_line(e)}") from None


def _sqlite_engine(u) -> Engine:
    db = u.database
    if db and db != ":memory:" and not db.startswith("file:"):
        try:
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot open database file {safe_url(u)}: {e.strerror}") from None
    engine = sa.create_engine(u, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event (below) emit BEGIN: pysqlite's own is always DEFERRED.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front: a deferred transaction that later upgrades to a
        # writer can deadlock with another writer and fail at once, busy timeout or not.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def writer(engine: Engine) -> Engine:
    """The same engine (and pool) with SQLite transactions opened as ``BEGIN IMMEDIATE``."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return engine


# ----------------------------------------------------------------------------- schema version
def database_dir() -> Path:
    """The Alembic directory: ``opsearch/_data/database`` installed, ``database/`` in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_data" / "database", here.parent / "database"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError("opsearch's database migrations are missing (no database/env.py): reinstall opsearch")


def alembic_config(engine: Engine, connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(database_dir()))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["engine"] = engine
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def current_revision(conn) -> str | None:
    """The stamped revision, or None for a database without opsearch's version table."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def ensure_schema(engine: Engine) -> str:
    """Check the schema revision; create a brand-new database at head. Returns the revision."""
    url = safe_url(engine)
    try:
        with engine.connect() as conn:
            rev = current_revision(conn)
            tables = set(sa.inspect(conn).get_table_names())
    except SQLAlchemyError as e:
        raise connect_error(engine, e) from None
    if rev is None:
        if tables - {VERSION_TABLE}:
            raise DatabaseError(f"{url} is not an opsearch database (it has tables but no {VERSION_TABLE})")
        upgrade(engine)
        return HEAD_REVISION
    if rev == HEAD_REVISION:
        return rev
    if _known_revision(rev):
        raise DatabaseError(f"database {url} has schema {rev}, this opsearch needs {HEAD_REVISION}: "
                            f"run `opsearch db upgrade --db {url}`")
    raise DatabaseError(f"database {url} has schema {rev}, newer than this opsearch ({HEAD_REVISION}): "
                        "upgrade opsearch")


def _known_revision(rev: str) -> bool:
    return any((database_dir() / "versions").glob(f"{rev}_*.py"))


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Run the Alembic migrations up to ``revision``; safe to call from several processes."""
    from alembic import command

    try:
        with writer(engine).begin() as conn:
            if engine.dialect.name == "postgresql":
                # Serialise concurrent first opens/upgrades of one PostgreSQL database.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7274051)"))
            command.upgrade(alembic_config(engine, conn), revision)
            return current_revision(conn) or ""
    except SQLAlchemyError as e:
        if "already exists" in str(e):  # another process created the schema first (SQLite)
            with engine.connect() as conn:
                rev = current_revision(conn)
            if rev:
                return rev
        raise connect_error(engine, e) from None


def connect_error(engine: Engine, e: BaseException) -> DatabaseError:
    """Map a driver failure at open time to one line."""
    url, msg = safe_url(engine), one_line(e)
    low = msg.lower()
    if "file is not a database" in low or "file is encrypted" in low:
        return DatabaseError(f"{url} is not a database file")
    if "unable to open database file" in low:
        return DatabaseError(f"cannot open database file {url}: check the path and permissions")
    if "connection refused" in low:
        return DatabaseError(f"cannot reach database {url}: connection refused")
    if "could not translate host name" in low or "name or service not known" in low:
        return DatabaseError(f"cannot reach database {url}: unknown host")
    if "does not exist" in low and "database" in low:
        return DatabaseError(f"cannot open database {url}: {msg}")
    return DatabaseError(f"cannot open database {url}: {msg}")
