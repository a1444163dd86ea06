"""Migrations through PgBouncer in transaction mode (Supabase's pooler on 6543): every file of
supabase/migrations applied from nothing on a fresh database, then again as a no-op, with the
same schema as a direct `docpipe migrate` gives. The other Postgres tests run through the
pooler by parametrization (tests/conftest.py: `database_url`)."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest

from shared.adapters.postgres import MIGRATIONS_DIR, PostgresDb


@pytest.fixture
def fresh_database(local_stack):
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    yield urlparse(local_stack.database_url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


def _schema(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select c.relname, c.relkind::text, c.relrowsecurity,"
            " (select count(*) from pg_policy p where p.polrelid = c.oid) as policies,"
            " (select count(*) from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)"
            " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname in ('public', 'auth') and c.relname not like 'pg_%' order by 1"
        ).fetchall()


def test_every_migration_applies_through_the_pooler(fresh_database, local_stack, tmp_path):
    from shared.runtime import pgbouncer as pgb

    if not pgb.available():
        pytest.skip("pgbouncer is not installed")
    bouncer = pgb.PgBouncer(fresh_database, tmp_path / "pgbouncer").start()
    try:
        db = PostgresDb(bouncer.url)
        # Given a database with nothing in it, when `docpipe migrate` runs through the pooler,
        # then every file applies in one transaction (the Storage policies wait for Storage's
        # schema, which a plain Postgres lacks: their precondition is checked through it too),
        # and again nothing.
        report = db.migrate_report()
        storage = "20261201000400_storage_rls.sql"
        assert report.applied == sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql") if p.name != storage)
        assert [name for name, _ in report.waiting] == [storage]
        assert db.migrate() == []
        # The server really was reached through PgBouncer in transaction mode.
        with psycopg.connect(bouncer.url.rsplit("/", 1)[0] + "/pgbouncer", autocommit=True,
                             prepare_threshold=None) as admin:
            config = {row[0]: row[1] for row in admin.execute("show config").fetchall()}
            assert config["pool_mode"] == "transaction"
            served = {row[0] for row in admin.execute("show databases").fetchall()}
            assert urlparse(fresh_database).path.lstrip("/") in served
        db.close()
    finally:
        bouncer.stop()
    # The schema is the one a direct migrate gives.
    direct = PostgresDb(local_stack.database_url)
    direct.migrate()
    direct.close()
    assert _schema(fresh_database) == _schema(local_stack.database_url)


def test_a_server_that_refused_the_poolers_login_once_lets_clients_in_within_their_connect_timeout(
    local_stack, tmp_path
):
    from bench._chaos import TcpProxy
    from shared.runtime import pgbouncer as pgb

    if not pgb.available():
        pytest.skip("pgbouncer is not installed")
    # Given the pooler in front of a Postgres that turns away its first connection (a restart,
    # a moment at max_connections)
    url = urlparse(local_stack.database_url)
    socket_path = f"{parse_qs(url.query)['host'][0]}/.s.PGSQL.{url.port or 5432}"
    server = TcpProxy(socket_path, "postgres", refuse_next=1).start()
    bouncer = pgb.PgBouncer(f"postgresql://postgres@127.0.0.1:{server.port}/postgres", tmp_path / "pgb").start()
    try:
        # When `docpipe lambda` migrates through it, with the adapter's connect timeout (10 s)
        db = PostgresDb(bouncer.url)
        try:
            # Then it is let in once the pooler has asked the server again (it raised "database
            # unreachable": PgBouncer's default is 15 s between logins, which every client
            # waiting meanwhile outlasts)
            db.migrate()
            assert db.get_shell_file(uuid.uuid4()) is None
        finally:
            db.close()
        assert server.refused == 1
    finally:
        bouncer.stop()
        server.stop()
