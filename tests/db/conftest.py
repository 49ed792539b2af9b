"""Backends for the storage suite: SQLite always, PostgreSQL when ``OPSEARCH_TEST_PG`` is set.

With ``OPSEARCH_TEST_PG`` set, an unreachable server fails the PostgreSQL tests; unset, they
skip. Each session creates its own PostgreSQL database (dropped at the end) and each test a
fresh schema in it, selected through the URL (``options=-csearch_path=...``).
"""

from __future__ import annotations

import os
import uuid

import pytest

import opsearch.db
import opsearch.ops

PG_ENV = "OPSEARCH_TEST_PG"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _pg_admin_engine(url: str):
    import sqlalchemy as sa

    from opsearch.db.engine import resolve_url

    return sa.create_engine(resolve_url(url), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


@pytest.fixture(scope="session")
def pg_database():
    """URL of a fresh PostgreSQL database for this session (or skip when OPSEARCH_TEST_PG is unset)."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL backend not tested "
                    f"(e.g. {PG_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from opsearch.db.engine import resolve_url

    name = f"opsearch_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine(url)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        pytest.fail(f"{PG_ENV}={url} is set but unreachable: {str(e.orig).splitlines()[0]}")
    yield make_url(resolve_url(url)).set(database=name)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(backend, tmp_path, request) -> str:
    """A URL of an empty database on the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'opsearch.db'}"
    base = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine(base.render_as_string(hide_password=False))
    with admin.connect() as conn:
        import sqlalchemy as sa

        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    return base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture
def db(db_url):
    store = opsearch.db.connect(db_url)
    yield store
    store.close()


@pytest.fixture
def wl():
    return opsearch.ops.get("dilated_conv1d").workload(x=[1, 8, 32], weight=[8, 8, 3])


@pytest.fixture
def wl2():
    return opsearch.ops.get("dilated_conv2d").workload(x=[1, 4, 8, 8], weight=[4, 4, 3, 3], padding=1)
