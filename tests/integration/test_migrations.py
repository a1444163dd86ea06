"""`docpipe migrate`'s runner on a fresh embedded Postgres database: a migration that declares a
precondition is applied only once that precondition holds, and is never recorded as done
before; the migrations after it are applied meanwhile. A migration an older runner recorded
without checking its precondition is checked again (it may have done nothing).

The same with Supabase's real Storage server, whose `storage` schema is the precondition of
20261201000400_storage_rls.sql: tests/integration/test_storage_rls.py."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest

from shared.adapters.postgres import PostgresDb

# Guarded as 20261201000400_storage_rls.sql is: without the schema it does nothing, and says so.
NEEDS_SCHEMA = """\
-- docpipe-precondition: the schema `other` exists (another service creates it when it starts)
-- docpipe-precondition-check: select to_regnamespace('other') is not null
do $$
begin
    if to_regnamespace('other') is null then
        raise notice 'skipped: no schema other';
        return;
    end if;
    create table if not exists other.made_by_us (id int);
end
$$;
"""


@pytest.fixture
def fresh_database(local_stack):
    name = f"mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    yield urlparse(local_stack.database_url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


@pytest.fixture
def migrations(tmp_path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_first.sql").write_text("create table if not exists first_table (id int);\n")
    (folder / "002_needs_other.sql").write_text(NEEDS_SCHEMA)
    (folder / "003_after.sql").write_text("create table if not exists after_table (id int);\n")
    return folder


def _made(db: PostgresDb) -> bool:
    return db.query("select to_regclass('other.made_by_us') is not null as made")[0]["made"]


def test_a_migration_waits_for_its_precondition_and_runs_once_it_holds(fresh_database, migrations):
    db = PostgresDb(fresh_database)
    try:
        # Given a database without the schema the second migration needs
        # When it is migrated, then the others are applied and the second is not recorded
        assert db.migrate(migrations) == ["001_first.sql", "003_after.sql"]
        assert db.migrate(migrations) == []
        assert not _made(db)
        # When the other service has made its schema, the next migrate applies it, once
        db.execute("create schema other")
        assert db.migrate(migrations) == ["002_needs_other.sql"]
        assert _made(db)
        assert db.migrate(migrations) == []
    finally:
        db.close()


def test_a_migration_recorded_unchecked_by_an_older_runner_is_checked_again(fresh_database, migrations):
    db = PostgresDb(fresh_database)
    try:
        db.migrate(migrations)
        # Given the record an older `docpipe migrate` left: the guarded file ran as a no-op and
        # was recorded as applied
        db.execute("insert into docpipe_migrations (name) values ('002_needs_other.sql') on conflict do nothing")
        # When the schema exists and `docpipe migrate` runs, the file runs for real
        db.execute("create schema other")
        assert db.migrate(migrations) == ["002_needs_other.sql"]
        assert _made(db)
        assert db.migrate(migrations) == []
    finally:
        db.close()
