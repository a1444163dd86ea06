"""A patient's own images through Supabase Storage: row-level security on storage.objects
(supabase/migrations/20261201000400_storage_rls.sql) against the real Storage API server, with
real JWTs signed with the server's secret, on files the whole pipeline stored there.

Patient A and patient B each have a document run through docpipe with STORAGE_BACKEND=supabase
into the private `docpipe` bucket. Then, through the Storage API as a client app calls it:
A reads A's original and page JPEGs (200) and none of B's (400/404); anon nothing; the service
role everything. The same signed JWT, as PostgREST applies it, shows A's table rows only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from shared.adapters.postgres import MIGRATIONS_DIR
from shared.runtime.supervisor import Supervisor
from shared.submit import submit

pytest.importorskip("supabase")

BUCKET = "docpipe"
MIGRATION = MIGRATIONS_DIR / "20261201000400_storage_rls.sql"


@pytest.fixture(scope="module")
def storage_policies(supabase_storage, local_stack):
    """The migration applied once the server has made its schema, as on a Supabase project
    (where `storage` exists before any of ours run). It is idempotent: applied twice here."""
    from shared.adapters.postgres import PostgresDb

    db = PostgresDb(local_stack.database_url)
    db.migrate()  # ours, in order (auth.uid() comes from 20261129000200)
    db.close()
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        conn.execute(MIGRATION.read_text())
        conn.execute(MIGRATION.read_text())
    return supabase_storage


@pytest.fixture(scope="module")
def stored(storage_policies, local_stack, samples_dir, tmp_path_factory):
    """Two patients' documents through the pipeline into the Storage server's `docpipe` bucket."""
    from shared.bootstrap import build_deps, install
    from shared.settings import Settings
    from shared.submit import provision

    env = storage_policies.env
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        database_url=local_stack.database_url,
        aws_endpoint_url=local_stack.endpoint_url,
        storage_backend="supabase",
        supabase_url=env["SUPABASE_URL"],
        supabase_service_role_key=env["SUPABASE_SERVICE_ROLE_KEY"],
        storage_bucket=BUCKET,
        queue_prefix=f"t{tag}",
        visibility_timeout_s=30,
        max_receive_count=3,
        retry_delay_s=1,
        worker_tmp_dir=tmp_path_factory.mktemp("rls-worker"),
        fhir_output="storage",  # each file's FHIR Bundle beside its pages: the same policies cover it
    )
    deps = build_deps(settings)
    provision(deps)
    install(deps)
    try:
        a, b = uuid.uuid4(), uuid.uuid4()
        file_a = submit(deps, samples_dir / "two_visits.pdf", a)
        file_b = submit(deps, samples_dir / "two_visits.pdf", b)
        Supervisor(settings, deps.queue, concurrency=2).run(burst=True)
        keys = {}
        for patient, sfid in ((a, file_a), (b, file_b)):
            row = deps.db.get_shell_file(sfid)
            assert row.status.value == "completed"
            pages = deps.db.query("select storage_key from shell_file_pages where shell_file_id = %s", (sfid,))
            keys[patient] = {"original": row.storage_key, "pages": [p["storage_key"] for p in pages],
                             "bundle": f"processed/{patient}/{sfid}/bundle.json"}
            assert keys[patient]["pages"], "the pipeline stored page JPEGs"
        yield {"a": a, "b": b, "file_a": file_a, "file_b": file_b, "keys": keys, "server": storage_policies}
    finally:
        install(None)
        deps.db.close()


def _get(server, key: str, token: str | None) -> httpx.Response:
    """Download through the Storage API as a client app does: apikey + the user's bearer token."""
    headers = {"apikey": server.env["SUPABASE_ANON_KEY"]}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.get(f"{server.env['SUPABASE_URL']}/storage/v1/object/authenticated/{BUCKET}/{key}", headers=headers)


def _list(server, prefix: str, token: str) -> list[str]:
    response = httpx.post(
        f"{server.env['SUPABASE_URL']}/storage/v1/object/list/{BUCKET}",
        headers={"apikey": server.env["SUPABASE_ANON_KEY"], "authorization": f"Bearer {token}"},
        json={"prefix": prefix, "limit": 100},
    )
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()]


def _all_keys(keys: dict) -> list[str]:
    return [keys["original"], *keys["pages"], keys["bundle"]]


def test_the_bucket_is_private(stored):
    server = stored["server"]
    page = stored["keys"][stored["a"]]["pages"][0]
    public = httpx.get(f"{server.env['SUPABASE_URL']}/storage/v1/object/public/{BUCKET}/{page}")
    assert public.status_code in (400, 404), public.status_code
    bucket = httpx.get(
        f"{server.env['SUPABASE_URL']}/storage/v1/bucket/{BUCKET}",
        headers={"apikey": server.env["SUPABASE_SERVICE_ROLE_KEY"],
                 "authorization": f"Bearer {server.env['SUPABASE_SERVICE_ROLE_KEY']}"},
    )
    assert bucket.status_code == 200 and bucket.json()["public"] is False


def test_a_patient_reads_their_own_original_and_page_jpegs(stored):
    server, a = stored["server"], stored["a"]
    token = server.jwt("authenticated", a)
    for key in _all_keys(stored["keys"][a]):
        response = _get(server, key, token)
        assert response.status_code == 200, (key.split("/")[0], response.status_code, response.text)
        if key.endswith(".jpg"):
            assert response.content[:3] == b"\xff\xd8\xff" and response.headers["content-type"] == "image/jpeg"
        elif key.endswith("bundle.json"):
            assert response.json()["resourceType"] == "Bundle"
            assert response.headers["content-type"].startswith("application/fhir+json")
        else:
            assert response.content[:5] == b"%PDF-"
    # Listing their own folder shows their pages.
    listed = _list(server, f"processed/{a}/{stored['file_a']}/", token)
    assert len([n for n in listed if n.endswith(".jpg")]) == len(stored["keys"][a]["pages"])
    assert "bundle.json" in listed


def test_a_patients_bundle_links_to_what_their_own_token_can_fetch(stored):
    # The attachments' URLs are Storage's authenticated download URLs: a patient app fetches the
    # original and each page image with the patient's own JWT, and gets the pages of another no more
    server, a, b = stored["server"], stored["a"], stored["b"]
    token = server.jwt("authenticated", a)
    bundle = _get(server, stored["keys"][a]["bundle"], token).json()
    urls = [e["resource"]["content"][0]["attachment"]["url"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "DocumentReference"]
    assert len(urls) == 1 + len(stored["keys"][a]["pages"])
    headers = {"apikey": server.env["SUPABASE_ANON_KEY"], "authorization": f"Bearer {token}"}
    assert all(httpx.get(url, headers=headers).status_code == 200 for url in urls)
    other = _get(server, stored["keys"][b]["bundle"], server.jwt("authenticated", b)).json()
    other_urls = [e["resource"]["content"][0]["attachment"]["url"] for e in other["entry"]
                  if e["resource"]["resourceType"] == "DocumentReference"]
    assert all(httpx.get(url, headers=headers).status_code in (400, 404) for url in other_urls)


def test_a_patient_reads_nothing_of_another_patients(stored):
    server, a, b = stored["server"], stored["a"], stored["b"]
    token = server.jwt("authenticated", a)
    for key in _all_keys(stored["keys"][b]):
        response = _get(server, key, token)
        assert response.status_code in (400, 404), (response.status_code, response.text)
        assert b"\xff\xd8" not in response.content and b"%PDF" not in response.content
    # Nor a listing of B's folders (empty, not refused: nothing tells A that B has files).
    assert _list(server, f"processed/{b}/{stored['file_b']}/", token) == []
    assert _list(server, f"originals/{b}/", token) == []
    # And B, the other way round.
    token_b = server.jwt("authenticated", b)
    assert _get(server, stored["keys"][b]["pages"][0], token_b).status_code == 200
    assert _get(server, stored["keys"][a]["pages"][0], token_b).status_code in (400, 404)


def test_a_patient_cannot_write_overwrite_or_delete_even_their_own(stored):
    server, a = stored["server"], stored["a"]
    token = server.jwt("authenticated", a)
    headers = {"apikey": server.env["SUPABASE_ANON_KEY"], "authorization": f"Bearer {token}"}
    base = f"{server.env['SUPABASE_URL']}/storage/v1/object/{BUCKET}"
    own_page = stored["keys"][a]["pages"][0]
    new = httpx.post(f"{base}/processed/{a}/{uuid.uuid4()}/page-0001.jpg", headers={**headers, "content-type": "image/jpeg"}, content=b"\xff\xd8")
    assert new.status_code in (400, 403), new.text
    over = httpx.put(f"{base}/{own_page}", headers={**headers, "content-type": "image/jpeg", "x-upsert": "true"}, content=b"\xff\xd8")
    assert over.status_code in (400, 403), over.text
    httpx.request("DELETE", f"{base}", headers=headers, json={"prefixes": [own_page]})
    # Still there, unchanged, for the service role.
    assert _get(server, own_page, server.env["SUPABASE_SERVICE_ROLE_KEY"]).content[:3] == b"\xff\xd8\xff"


def test_anon_and_a_token_without_sub_read_nothing(stored):
    server = stored["server"]
    no_sub = server.jwt("authenticated")
    for patient in (stored["a"], stored["b"]):
        for key in _all_keys(stored["keys"][patient]):
            assert _get(server, key, server.env["SUPABASE_ANON_KEY"]).status_code in (400, 404)
            assert _get(server, key, None).status_code in (400, 401, 403, 404)
            assert _get(server, key, no_sub).status_code in (400, 404)
    assert _list(server, f"processed/{stored['a']}/{stored['file_a']}/", server.env["SUPABASE_ANON_KEY"]) == []


def test_a_forged_or_expired_token_is_refused(stored):
    server, b = stored["server"], stored["b"]
    from tests.servers import sign_hs256

    forged = sign_hs256({"role": "authenticated", "sub": str(b)}, "not-the-secret-" + "x" * 32)
    expired = server.jwt("authenticated", b, expires_in_s=-60)
    for token in (forged, expired):
        response = _get(server, stored["keys"][b]["pages"][0], token)
        assert response.status_code in (400, 401, 403), response.status_code
        assert b"\xff\xd8" not in response.content


def test_the_service_role_reads_everything(stored):
    server = stored["server"]
    key = server.env["SUPABASE_SERVICE_ROLE_KEY"]
    for patient in (stored["a"], stored["b"]):
        for object_key in _all_keys(stored["keys"][patient]):
            assert _get(server, object_key, key).status_code == 200


def _verified_claims(token: str, secret: str) -> dict:
    """What PostgREST does with a bearer token before a query: check the HS256 signature, then
    take the claims (the role to SET, and request.jwt.claims)."""
    head, body, signature = token.split(".")
    want = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(base64.urlsafe_b64decode(signature + "=="), want)
    return json.loads(base64.urlsafe_b64decode(body + "=="))


def test_the_same_signed_jwt_shows_only_the_patients_table_rows(stored, local_stack):
    server, a = stored["server"], stored["a"]
    secret = server.env["SUPABASE_JWT_SECRET"]
    files = [stored["file_a"], stored["file_b"]]
    for token, expect in (
        (server.jwt("authenticated", a), {stored["file_a"]}),
        (server.jwt("authenticated", stored["b"]), {stored["file_b"]}),
        (server.jwt("authenticated"), set()),
    ):
        claims = _verified_claims(token, secret)
        with psycopg.connect(local_stack.database_url) as conn:
            conn.execute(f"set local role {claims['role']}")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
            seen = {r[0] for r in conn.execute("select id from shell_files where id = any(%s)", (files,))}
            pages = {r[0] for r in conn.execute(
                "select distinct shell_file_id from shell_file_pages where shell_file_id = any(%s)", (files,))}
            conn.rollback()
        assert seen == expect and pages == expect
    # anon's key (a real token the server issued) reaches no table at all.
    claims = _verified_claims(server.env["SUPABASE_ANON_KEY"], secret)
    with psycopg.connect(local_stack.database_url) as conn:
        conn.execute(f"set local role {claims['role']}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select count(*) from shell_files")


@pytest.fixture
def plain_database(local_stack):
    """A fresh database without the `storage` schema, in the session's server."""
    from urllib.parse import urlparse

    name = f"plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    parts = urlparse(local_stack.database_url)
    yield parts._replace(path=f"/{name}").geturl()
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)")


def test_docpipe_migrate_on_a_plain_postgres_applies_everything_and_the_storage_policies_wait(plain_database):
    from shared.adapters.postgres import PostgresDb

    db = PostgresDb(plain_database)
    try:
        report = db.migrate_report()
        assert report.applied == sorted(p.name for p in Path(MIGRATIONS_DIR).glob("*.sql") if p != MIGRATION)
        # The Storage policies wait for Storage's schema, unrecorded; nothing of Storage's was made.
        assert [name for name, _ in report.waiting] == [MIGRATION.name]
        assert "storage" in report.waiting[0][1].lower()
        assert db.query("select count(*) as n from docpipe_migrations where name = %s", (MIGRATION.name,))[0]["n"] == 0
        assert db.query("select to_regclass('storage.objects') as t")[0]["t"] is None
        assert db.query("select count(*) as n from pg_namespace where nspname = 'storage'")[0]["n"] == 0
        again = db.migrate_report()
        assert again.applied == [] and [name for name, _ in again.waiting] == [MIGRATION.name]
        assert len(again.already) == len(report.applied)
    finally:
        db.close()


def test_storage_policies_apply_once_storage_starts_after_docpipe_migrated(plain_database, tmp_path):
    """The README's local path, and any self-hosted Supabase whose Storage starts late:
    `docpipe migrate` ran before Storage made its schema. The Storage policies wait (not
    recorded as done) and the next `docpipe migrate` applies them."""
    from shared.adapters.supabase_storage import SupabaseStorage
    from tests.e2e.test_cli import docpipe
    from tests.servers import SupabaseStorageServer

    if not SupabaseStorageServer.available():
        pytest.skip("../shared/tools/supabase-storage (and npm) are needed for the Supabase Storage server")
    env = {"DATABASE_URL": plain_database}
    # Given `docpipe migrate` (or `docpipe local up`) on a database Storage has not started on
    first = docpipe("migrate", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    # When the Storage server starts on it, then `docpipe migrate` runs again
    server = SupabaseStorageServer(plain_database, tmp_path / "storage").start()
    try:
        second = docpipe("migrate", env=env)
        assert second.returncode == 0, second.stderr[-2000:]
        # Then a signed-in patient reads their own page JPEG through the Storage API, and only theirs
        patient, other = uuid.uuid4(), uuid.uuid4()
        key = f"processed/{patient}/{uuid.uuid4()}/page-0001.jpg"
        storage = SupabaseStorage(server.env["SUPABASE_URL"], server.env["SUPABASE_SERVICE_ROLE_KEY"], BUCKET)
        storage.put_bytes(key, b"\xff\xd8\xff\xe0" + b"\0" * 64, "image/jpeg")
        assert _get(server, key, server.jwt("authenticated", patient)).status_code == 200
        assert _get(server, key, server.jwt("authenticated", other)).status_code in (400, 404)
        # And each run said what it did: the policies waited on Storage's schema, then applied
        assert re.search(rf"^waiting\s+{MIGRATION.name}\b", first.stderr, re.M), first.stderr
        assert re.search(rf"^applied\s+{MIGRATION.name}\b", second.stderr, re.M), second.stderr
        third = docpipe("migrate", env=env)
        assert third.returncode == 0 and "waiting" not in third.stderr, third.stderr
    finally:
        server.stop()
