"""Patient isolation in the database: row-level security with real Postgres roles and the JWT
claims PostgREST sets (`request.jwt.claims`), on the embedded Postgres the pipeline wrote to.

Each check runs in a transaction that is rolled back, as PostgREST runs each request:
`SET LOCAL ROLE <role>` plus `set_config('request.jwt.claims', ..., true)`."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import psycopg
import pytest

from shared.runtime.supervisor import Supervisor
from shared.submit import submit

# Every table with patient data, and how its rows are tied to a file.
TABLES = {
    "shell_files": "id",
    "shell_file_pages": "shell_file_id",
    "ocr_text_extractions": "shell_file_id",
    "healthcare_encounters": "shell_file_id",
    "shell_file_manifests": "shell_file_id",
    "pipeline_runs": "shell_file_id",
    "discovery_cache": "shell_file_id",
}


class _Rollback(Exception):
    pass


@contextmanager
def as_role(url: str, role: str, sub: uuid.UUID | None = None):
    """A connection inside one transaction as ``role`` with a Supabase-shaped JWT; rolled back."""
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            with conn.transaction():
                conn.execute(f"set local role {role}")
                claims = {"role": role} | ({"sub": str(sub)} if sub else {})
                conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
                yield conn
                raise _Rollback
        except _Rollback:
            pass


def visible(conn, files: list[uuid.UUID]) -> dict[str, dict[uuid.UUID, int]]:
    """Per table, how many rows of each of ``files`` this connection can read."""
    out = {}
    for table, key in TABLES.items():
        rows = conn.execute(
            f"select {key} as sfid, count(*) as n from {table} where {key} = any(%s) group by {key}", (files,)
        ).fetchall()
        out[table] = {sfid: n for sfid, n in rows}
    return out


@pytest.fixture
def two_patients(stack_deps, samples_dir, tmp_path):
    """Patients A and B, each with a document run through the whole pipeline."""
    a, b = uuid.uuid4(), uuid.uuid4()
    file_a = submit(stack_deps, samples_dir / "two_visits.pdf", a)
    file_b = submit(stack_deps, samples_dir / "two_visits.pdf", b)
    settings = stack_deps.settings.model_copy(update={"worker_tmp_dir": tmp_path})
    Supervisor(settings, stack_deps.queue, concurrency=2).run(burst=True)
    for sfid in (file_a, file_b):
        assert stack_deps.db.get_shell_file(sfid).status.value == "completed"
    return a, b, file_a, file_b


def test_rls_is_enabled_on_every_patient_table(stack_deps):
    rows = stack_deps.db.query(
        "select relname, relrowsecurity from pg_class where relname = any(%s) and relkind = 'r'", (list(TABLES),)
    )
    assert {r["relname"]: r["relrowsecurity"] for r in rows} == {t: True for t in TABLES}


def test_a_patient_reads_only_their_own_rows(stack_deps, two_patients):
    a, b, file_a, file_b = two_patients
    url = stack_deps.settings.database_url.get_secret_value()
    # Given the owner's view (the worker's): both files have rows in every table.
    with psycopg.connect(url) as conn:
        everything = visible(conn, [file_a, file_b])
    for table in TABLES:
        assert everything[table].get(file_a, 0) > 0 and everything[table].get(file_b, 0) > 0, table

    # When A asks, then every table shows all of A's rows and none of B's; and the other way.
    for me, other, mine in ((a, b, file_a), (b, a, file_b)):
        with as_role(url, "authenticated", me) as conn:
            assert conn.execute("select auth.uid()").fetchone()[0] == me
            seen = visible(conn, [file_a, file_b])
            # Not even a count leaks through a filter on the other patient's ids.
            assert conn.execute("select count(*) from shell_files where patient_id = %s", (other,)).fetchone()[0] == 0
        for table in TABLES:
            assert seen[table] == {mine: everything[table][mine]}, table


def test_a_patient_cannot_write_or_truncate(stack_deps, two_patients):
    a, b, file_a, file_b = two_patients
    url = stack_deps.settings.database_url.get_secret_value()
    for sql in (
        "update shell_files set status = 'failed' where id = '%s'" % file_b,
        "delete from healthcare_encounters where shell_file_id = '%s'" % file_a,
        "insert into shell_files (id, patient_id, storage_key) values (gen_random_uuid(), '%s', 'x')" % a,
        "truncate ocr_text_extractions",
    ):
        with as_role(url, "authenticated", a) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    assert stack_deps.db.get_shell_file(file_b).status.value == "completed"


def test_no_sub_and_anon_read_nothing(stack_deps, two_patients):
    a, b, file_a, file_b = two_patients
    url = stack_deps.settings.database_url.get_secret_value()
    # An authenticated role without a `sub` claim: auth.uid() is null, no row matches.
    with as_role(url, "authenticated") as conn:
        assert all(v == {} for v in visible(conn, [file_a, file_b]).values())
    # anon has no privilege on the tables at all ...
    for table in TABLES:
        with as_role(url, "anon") as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select count(*) from {table}")
    # ... and had someone granted it SELECT, RLS would still show it nothing (no anon policy).
    with as_role(url, "anon") as conn:
        conn.execute("reset role")
        for table in TABLES:
            conn.execute(f"grant select on {table} to anon")  # rolled back with the transaction
        conn.execute("set local role anon")
        assert all(v == {} for v in visible(conn, [file_a, file_b]).values())


def test_service_role_reads_and_writes_everything(stack_deps, two_patients):
    a, b, file_a, file_b = two_patients
    url = stack_deps.settings.database_url.get_secret_value()
    with psycopg.connect(url) as conn:
        everything = visible(conn, [file_a, file_b])
    with as_role(url, "service_role") as conn:
        assert visible(conn, [file_a, file_b]) == everything
        # It can write as the worker does (the change is rolled back).
        assert conn.execute("update shell_files set status = 'failed' where id = %s", (file_b,)).rowcount == 1
        conn.execute(
            "insert into pipeline_runs (shell_file_id, stage, outcome, started_at, duration_ms)"
            " values (%s, 'discover', 'skipped', now(), 1)", (file_a,)
        )
