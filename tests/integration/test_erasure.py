"""Erasure (issue 27) on the real local servers: deleting a document deletes all of it, whatever
stage it is at, through `docpipe delete` or a plain DELETE of its shell_files row, on moto's S3
and on the real Supabase Storage server.

Five documents go through the real handlers at once, each deleted at another point: before
preprocess, while preprocess stores its pages (half of them stored), while OCR reads it, while
Pass 0.5 looks at it, and after it completed. Afterwards: no object under the file's prefixes
(asked of the storage server itself, not through docpipe's adapter), no row of any table that
holds a file's content, no message of it crashed, was retried or dead-lettered, and an erasures
row that says what was removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg
import pymupdf
import pytest

from shared.runtime.worker import Worker
from shared.submit import submit
from tests.conftest import needs_tesseract

REPO = Path(__file__).resolve().parents[2]
DLQS = ("preprocess-dlq", "ocr-dlq", "discover-dlq", "purge-dlq")
QUIET = {"succeeded", "skipped", "deleted"}  # what a run of a deleted file's message may end as
_STORAGE_FILES: list[Path] = []  # where the Supabase Storage server keeps objects' bytes (its file backend)


# --- the two storages, each with its own bucket and queues ---------------------------------


def _settings(local_stack, backend: str, request, **overrides):
    from shared.settings import Settings

    tag = uuid.uuid4().hex[:10]
    storage = {}
    if backend == "supabase":
        pytest.importorskip("supabase")
        server = request.getfixturevalue("supabase_storage")
        _STORAGE_FILES[:] = [server.data_dir / "objects"]
        storage = {
            "storage_backend": "supabase",
            "supabase_url": server.env["SUPABASE_URL"],
            "supabase_service_role_key": server.env["SUPABASE_SERVICE_ROLE_KEY"],
        }
    return Settings(**{
        "database_url": local_stack.database_url,
        "aws_endpoint_url": local_stack.endpoint_url,
        "storage_backend": "s3",
        "storage_bucket": f"erase-{tag}",
        "queue_prefix": f"e{tag}",
        "visibility_timeout_s": 30,
        "max_receive_count": 3,
        "retry_delay_s": 1,
        "erasure_final_sweep_s": 0,  # no stage is left running when a test checks
        **storage,
        **overrides,
    })


def _deps(settings):
    from shared.bootstrap import build_deps, install
    from shared.submit import provision

    deps = build_deps(settings)
    provision(deps)
    if hasattr(deps.storage, "ensure_bucket"):
        deps.storage.ensure_bucket()
    install(deps)
    return deps


@pytest.fixture(params=["s3", "supabase"])
def erase_deps(request, local_stack):
    # FHIR_OUTPUT=storage: a completed file has a bundle.json beside its pages, which the purge
    # removes without knowing of it
    deps = _deps(_settings(local_stack, request.param, request, fhir_output="storage"))
    yield deps
    from shared.bootstrap import install

    install(None)
    deps.db.close()


def stored_objects(deps, patient_id, shell_file_id=None) -> list[str]:
    """Every object under the file's (or the patient's) prefixes, asked of the storage server
    itself: S3's own listing, or Supabase Storage's table of objects."""
    tail = f"{shell_file_id}/" if shell_file_id else ""
    prefixes = [f"originals/{patient_id}/{tail}", f"processed/{patient_id}/{tail}"]
    bucket = deps.settings.storage_bucket
    if deps.settings.storage_backend == "supabase":
        with psycopg.connect(deps.settings.database_url.get_secret_value(), autocommit=True) as conn:
            listed = [
                r[0]
                for p in prefixes
                for r in conn.execute(
                    "select name from storage.objects where bucket_id = %s and starts_with(name, %s)", (bucket, p)
                )
            ]
        # ... and the bytes themselves, on the server's disk
        on_disk = [str(f) for root in _STORAGE_FILES for f in root.rglob("*")
                   if f.is_file() and any(p.rstrip("/") in f.as_posix() for p in prefixes)]
        return listed + on_disk
    client = deps.storage._client
    return [o["Key"] for p in prefixes for o in client.list_objects_v2(Bucket=bucket, Prefix=p).get("Contents", [])]


def content_rows(db, shell_file_id) -> dict[str, int]:
    """Rows about the file in every table that has a shell_file_id, except the two that keep
    only ids and figures by design (pipeline_runs, erasures): any table added later is in."""
    tables = [
        r["table_name"]
        for r in db.query(
            "select table_name from information_schema.columns where table_schema = 'public'"
            " and column_name = 'shell_file_id' and table_name not in ('pipeline_runs', 'erasures')"
        )
    ]
    counts = {t: db.query(f"select count(*) as n from {t} where shell_file_id = %s", (shell_file_id,))[0]["n"]
              for t in tables}
    counts["shell_files"] = db.query("select count(*) as n from shell_files where id = %s", (shell_file_id,))[0]["n"]
    return counts


def run_outcomes(db, shell_file_id) -> set[tuple[str, str]]:
    rows = db.query("select stage, outcome from pipeline_runs where shell_file_id = %s", (shell_file_id,))
    return {(r["stage"], r["outcome"]) for r in rows}


def erasure(db, shell_file_id) -> dict | None:
    rows = db.query("select * from erasures where shell_file_id = %s", (shell_file_id,))
    return rows[0] if rows else None


def plain_delete(deps, shell_file_id) -> None:
    """What a Supabase app does: DELETE the row, on a connection of its own."""
    with psycopg.connect(deps.settings.database_url.get_secret_value(), autocommit=True) as conn:
        assert conn.execute("delete from shell_files where id = %s", (shell_file_id,)).rowcount == 1


def docpipe_delete(deps, shell_file_id) -> dict:
    """`docpipe delete --file` as its own process would run it: deps of its own."""
    from shared import ops
    from shared.bootstrap import build_deps

    other = build_deps(deps.settings)
    try:
        return ops.delete_file(other, shell_file_id)
    finally:
        other.db.close()


def cli_env(settings) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url,
        "QUEUE_PREFIX": settings.queue_prefix,
        "STORAGE_BACKEND": settings.storage_backend,
        "STORAGE_BUCKET": settings.storage_bucket,
        "RETRY_DELAY_S": "1",
        "ERASURE_FINAL_SWEEP_S": "0",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }
    if settings.s3_endpoint_url:
        env["S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    if settings.storage_backend == "supabase":
        env["SUPABASE_URL"] = settings.supabase_url
        env["SUPABASE_SERVICE_ROLE_KEY"] = settings.supabase_service_role_key.get_secret_value()
    return env


def cli(settings, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shared.cli", *map(str, args)], cwd=REPO, env=cli_env(settings),
                          capture_output=True, text=True, timeout=timeout)


def serve_purge_once(settings) -> subprocess.CompletedProcess:
    """The container worker as deployed (serving, not --burst): it scans for erasures at start."""
    return cli(settings, "worker", "--stages", "purge", "--max-messages", "1", timeout=90)


def text_pdf(path: Path, pages: int, marker: str) -> Path:
    doc = pymupdf.open()
    for n in range(1, pages + 1):
        page = doc.new_page()
        page.insert_text((72, 100), f"Clinic Visit Note {marker} page {n}. Seen on 2024-03-05 by Dr Jane Smith.")
    doc.save(path)
    return path


# --- the five points of deletion, through `docpipe delete` or a plain DELETE ---------------


@needs_tesseract()
@pytest.mark.parametrize("way", ["docpipe delete", "plain DELETE"])
def test_a_file_deleted_at_any_stage_leaves_nothing(erase_deps, way, samples_dir, tmp_path, monkeypatch):
    deps = erase_deps
    delete = docpipe_delete if way == "docpipe delete" else plain_delete
    patient = uuid.uuid4()
    files = {
        "before preprocess": submit(deps, text_pdf(tmp_path / "a.pdf", 2, "AAA"), patient),
        "during preprocess": submit(deps, text_pdf(tmp_path / "b.pdf", 27, "BBB"), patient),
        "during ocr": submit(deps, samples_dir / "scanned_discharge.pdf", patient),
        "during discover": submit(deps, text_pdf(tmp_path / "d.pdf", 2, "DDD"), patient),
        "after completion": submit(deps, text_pdf(tmp_path / "e.pdf", 2, "EEE"), patient),
    }
    deleted: dict[str, str] = {}
    lock = threading.Lock()

    def delete_once(point: str) -> None:
        with lock:
            if point in deleted:
                return
            deleted[point] = "deleting"
        delete(deps, files[point])
        deleted[point] = "deleted"

    # Given: the first is deleted before any stage saw it
    delete_once("before preprocess")

    # ... the second while preprocess stores its pages: rows of pages 1-25 are written, the
    # JPEG of page 26 is being uploaded (a writer thread) when the row goes
    during_pre = files["during preprocess"]
    uploads = []
    real_put = deps.storage.put_bytes

    def put_bytes(key, data, content_type):
        if str(during_pre) in key:
            uploads.append(key)
            if key.endswith("page-0026.jpg"):
                assert deps.db.query("select count(*) as n from shell_file_pages where shell_file_id = %s",
                                     (during_pre,))[0]["n"] == 25  # half stored
                delete_once("during preprocess")
        return real_put(key, data, content_type)

    # ... the third while OCR reads its second page
    real_read = deps.ocr.read

    def read(image, page_number):
        if page_number == 2:  # only the scanned document needs OCR
            delete_once("during ocr")
        return real_read(image, page_number)

    # ... the fourth while the encounter provider looks at its pages
    real_discover = deps.encounters.discover

    def discover(pages, *args, **kwargs):
        found = real_discover(pages, *args, **kwargs)
        if any("DDD" in p.text for p in pages):
            delete_once("during discover")
        return found

    monkeypatch.setattr(deps.storage, "put_bytes", put_bytes)
    monkeypatch.setattr(deps.ocr, "read", read)
    monkeypatch.setattr(deps.encounters, "discover", discover)

    # When the worker drains the queues
    Worker(deps).run(burst=True, idle_sleep_s=0.2)

    # Then nothing is left of the four deleted on the way, and nothing of theirs crashed or was retried
    def nothing_left(point: str) -> None:
        sfid = files[point]
        assert stored_objects(deps, patient, sfid) == [], point
        assert set(content_rows(deps.db, sfid).values()) == {0}, (point, content_rows(deps.db, sfid))
        outcomes = run_outcomes(deps.db, sfid)
        assert {o for _, o in outcomes} <= QUIET, (point, outcomes)

    assert deleted == dict.fromkeys([p for p in files if p != "after completion"], "deleted")
    for point in files:
        if point != "after completion":
            nothing_left(point)
    # ... nor of the last, deleted after it completed (a plain DELETE: purged by the worker's scan)
    assert deps.db.get_shell_file(files["after completion"]).status.value == "completed"
    assert any(k.endswith("/bundle.json") for k in stored_objects(deps, patient, files["after completion"]))
    delete_once("after completion")
    if way == "plain DELETE":
        served = serve_purge_once(deps.settings)
        assert served.returncode == 0, served.stderr[-3000:]
    Worker(deps).run(burst=True, idle_sleep_s=0.2)
    nothing_left("after completion")
    for queue in DLQS:
        assert deps.queue.depth(queue) == (0, 0), queue
    # ... the stages that met a deleted file said so
    assert ("preprocess", "deleted") in run_outcomes(deps.db, files["before preprocess"])
    assert ("preprocess", "deleted") in run_outcomes(deps.db, files["during preprocess"])
    assert ("ocr", "deleted") in run_outcomes(deps.db, files["during ocr"])
    assert ("discover", "deleted") in run_outcomes(deps.db, files["during discover"])

    # And each deletion is recorded with what it removed: ids and counts, no content
    objects = {
        "before preprocess": 1,
        "during preprocess": 1 + len(uploads),  # the original and every page JPEG, late ones too
        "during ocr": 1 + 2,
        "during discover": 1 + 2,
        "after completion": 1 + 2 + 1,  # and its FHIR Bundle
    }
    for point, sfid in files.items():
        record = erasure(deps.db, sfid)
        assert record is not None, point
        assert (record["patient_id"], record["objects_removed"]) == (patient, objects[point]), (point, record)
        assert record["rows_removed"]["shell_files"] == 1 and record["purged_at"] and record["finished_at"], record
        assert record["last_error_code"] is None
        assert record["source"] == ("docpipe delete" if way == "docpipe delete" else "row delete")
        assert not {"original_name", "text", "storage_key"} & set(record)
    assert erasure(deps.db, files["during preprocess"])["rows_removed"]["shell_file_pages"] == 25
    assert erasure(deps.db, files["after completion"])["rows_removed"]["shell_file_manifests"] == 1
    assert erasure(deps.db, files["after completion"])["rows_removed"]["ocr_text_extractions"] == 2


def test_a_redelivered_purge_is_harmless(stack_deps, samples_dir):
    from handlers import purge
    from shared.runtime.events import LocalContext, queue_arn, sqs_event
    from shared.ports import QueueMessage

    deps = stack_deps
    patient = uuid.uuid4()
    sfid = submit(deps, samples_dir / "two_visits.pdf", patient)
    Worker(deps).run(burst=True, idle_sleep_s=0.2)
    first = docpipe_delete(deps, sfid)
    assert first["objects_removed"] == 4 and first["status"] in ("purged", "finished")

    body = json.dumps({"shell_file_id": str(sfid)})
    arn = queue_arn(deps.settings.aws_region, f"{deps.settings.queue_prefix}-purge")
    for attempt in (1, 2):
        message = QueueMessage("purge", str(uuid.uuid4()), "rh", body, attempt)
        assert purge.lambda_handler(sqs_event([message], arn, deps.settings.aws_region), LocalContext()) == {
            "batchItemFailures": []}
    record = erasure(deps.db, sfid)
    assert record["objects_removed"] == 4  # counted once
    assert stored_objects(deps, patient, sfid) == []
    assert {o for _, o in run_outcomes(deps.db, sfid)} <= QUIET


# --- a patient: every file, and what an upload left without a row ----------------------------


@pytest.mark.parametrize("backend", ["s3", "supabase"])
def test_deleting_a_patient_deletes_every_file_of_theirs_and_nobody_elses(
    backend, request, local_stack, samples_dir, tmp_path
):
    from shared.bootstrap import install
    from shared.keys import original_key

    deps = _deps(_settings(local_stack, backend, request))
    try:
        patient, other = uuid.uuid4(), uuid.uuid4()
        mine = [submit(deps, samples_dir / "two_visits.pdf", patient) for _ in range(2)]
        theirs = submit(deps, samples_dir / "two_visits.pdf", other)
        Worker(deps).run(burst=True, idle_sleep_s=0.2)
        mine.append(submit(deps, samples_dir / "two_visits.pdf", patient))  # the third: still queued
        # an upload whose row was never written (the uploader died between the two)
        orphan = uuid.uuid4()
        deps.storage.put_file(original_key(patient, orphan, "pdf"), samples_dir / "two_visits.pdf", "application/pdf")
        before_theirs = sorted(stored_objects(deps, other))

        # When the patient's erasure is asked for, as an operator does
        result = cli(deps.settings, "delete", "--patient", patient, "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        reports = {r["shell_file_id"]: r for r in map(json.loads, result.stdout.splitlines())}

        # Then every file of theirs is gone, the row-less upload too, and the other patient's file is whole
        assert set(reports) == {str(s) for s in [*mine, orphan]}
        assert stored_objects(deps, patient) == []
        for sfid in mine:
            assert set(content_rows(deps.db, sfid).values()) == {0}
        assert [reports[str(s)]["objects_removed"] for s in mine] == [4, 4, 1]
        assert reports[str(orphan)]["objects_removed"] == 1 and reports[str(orphan)]["rows_removed"] == {}
        assert all(r["status"] in ("purged", "finished") and r["patient_id"] == str(patient) for r in reports.values())
        assert sorted(stored_objects(deps, other)) == before_theirs and len(before_theirs) >= 4
        assert deps.db.get_shell_file(theirs).status.value == "completed"
        # ... the queued file's preprocess message ends quietly
        Worker(deps).run(burst=True, idle_sleep_s=0.2)
        assert ("preprocess", "deleted") in run_outcomes(deps.db, mine[2])
        assert {o for _, o in run_outcomes(deps.db, mine[2])} <= QUIET
        for queue in DLQS:
            assert deps.queue.depth(queue) == (0, 0), queue
        # ... and the output holds ids and counts only
        assert "two_visits" not in result.stdout + result.stderr
    finally:
        install(None)
        deps.db.close()


# --- Storage down: the deletion completes when it is back ---------------------------------


# On S3, one way: botocore spends ~15 s retrying a refused connection, each time it meets one.
@pytest.mark.parametrize(("backend", "way"), [("s3", "docpipe delete"), ("supabase", "docpipe delete"),
                                              ("supabase", "plain DELETE")])
def test_a_deletion_while_storage_is_down_completes_when_it_is_back(
    backend, way, request, local_stack, samples_dir
):
    from urllib.parse import urlparse

    from bench._chaos import TcpProxy
    from shared.bootstrap import install

    settings = _settings(local_stack, backend, request)
    # Storage (only) through a proxy that can refuse connections, as a server that is down does
    upstream = settings.supabase_url if backend == "supabase" else local_stack.endpoint_url
    proxy = TcpProxy(urlparse(upstream).port, "storage").start()
    through = {"supabase_url": proxy.url} if backend == "supabase" else {"s3_endpoint_url": proxy.url}
    settings = settings.model_copy(update=through)
    deps = _deps(settings)
    from shared.bootstrap import build_deps

    direct = build_deps(settings.model_copy(update={"supabase_url": upstream, "s3_endpoint_url": None}))
    try:
        patient = uuid.uuid4()
        sfid = submit(deps, samples_dir / "two_visits.pdf", patient)
        Worker(deps).run(burst=True, idle_sleep_s=0.2)
        stored = stored_objects(direct, patient, sfid)
        assert len(stored) >= 4  # the original and three pages (and, on Supabase, their bytes on disk)

        if way == "plain DELETE":
            # The session's database is shared: erasures other tests left due are purged first
            # (least recently tried first), so that this test's scans reach its own
            assert serve_purge_once(settings).returncode == 0

        # When storage goes down and the file is deleted
        proxy.down()
        if way == "docpipe delete":
            result = cli(settings, "delete", "--file", sfid, "--json")
            assert result.returncode == 1, result.stderr[-3000:]  # not done yet: it says so
            (report,) = map(json.loads, result.stdout.splitlines())
            assert (report["status"], report["error_code"]) == ("pending", "dependency_unavailable")
        else:
            plain_delete(deps, sfid)
            served = serve_purge_once(settings)
            assert served.returncode == 0, served.stderr[-3000:]
        # ... the rows are gone at once, the objects wait for storage, and the erasure says why
        assert set(content_rows(deps.db, sfid).values()) == {0}
        assert stored_objects(direct, patient, sfid) == stored
        pending = erasure(deps.db, sfid)
        assert pending["purged_at"] is None and pending["last_error_code"] == "dependency_unavailable"

        # Then once storage is back, the pipeline completes it
        proxy.up()
        if way == "docpipe delete":
            Worker(deps).run(burst=True, idle_sleep_s=0.2)  # the purge message `delete` left
        else:
            served = serve_purge_once(settings)
            assert served.returncode == 0, served.stderr[-3000:]
        assert stored_objects(direct, patient, sfid) == []
        done = erasure(deps.db, sfid)
        assert done["objects_removed"] == 4 and done["purged_at"] and done["last_error_code"] is None
        for queue in DLQS:
            assert deps.queue.depth(queue) == (0, 0), queue
    finally:
        proxy.stop()
        install(None)
        deps.db.close()
        direct.db.close()


# --- the erasures table: patient isolation and no content ----------------------------------


@pytest.mark.pooler
def test_erasures_are_under_the_same_row_level_security(stack_deps, database_url, samples_dir):
    deps = stack_deps
    patient, other = uuid.uuid4(), uuid.uuid4()
    mine = submit(deps, samples_dir / "two_visits.pdf", patient)
    theirs = submit(deps, samples_dir / "two_visits.pdf", other)
    plain_delete(deps, mine)
    plain_delete(deps, theirs)
    with psycopg.connect(deps.settings.database_url.get_secret_value(), autocommit=True) as conn:
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": str(patient)}),))
            seen = [r[0] for r in conn.execute("select shell_file_id from erasures")]
        with conn.transaction():
            conn.execute("set local role anon")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select count(*) from erasures")
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps({"sub": str(patient)}),))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("delete from erasures")
    assert seen == [mine]
    # `docpipe delete` names itself to the trigger in its own transaction: through a transaction
    # pooler too ([pooler]), where no session setting would survive
    third = submit(deps, samples_dir / "two_visits.pdf", patient)
    assert docpipe_delete(deps, third)["source"] == "docpipe delete"
    assert erasure(deps.db, mine)["source"] == "row delete" and erasure(deps.db, mine)["requested_by"]
    columns = {r["column_name"] for r in deps.db.query(
        "select column_name from information_schema.columns where table_name = 'erasures'")}
    assert not columns & {"original_name", "storage_key", "text", "sha256", "mime_type"}


def test_delete_needs_exactly_one_of_file_and_patient():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "shared.cli", "delete", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60)

    for args in ([], ["--file", str(uuid.uuid4()), "--patient", str(uuid.uuid4())], ["--file", "not-a-uuid"]):
        result = run(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr[-2000:])
