"""Every adapter against the real local servers: moto's SQS/S3 server and embedded Postgres."""

from __future__ import annotations

import threading
import uuid

import pytest

from shared.adapters.aws import LocalStorage, S3Storage, SqsQueue
from shared.adapters.postgres import PostgresDb
from shared.errors import DependencyUnavailableError, FileTooLargeError, ObjectMissingError
from shared.models import (
    Box,
    Discovery,
    Encounter,
    EncounterType,
    FileStatus,
    LayoutBlock,
    Manifest,
    OcrMessage,
    PageText,
    PreprocessMessage,
    ShellFile,
    ShellFilePage,
    TextSource,
)
from tests.fakes import is_stored

# --- SqsQueue ------------------------------------------------------------------------


def test_sqs_round_trip_and_depth(stack_deps):
    queue: SqsQueue = stack_deps.queue
    sfid = uuid.uuid4()
    queue.send("ocr", OcrMessage(shell_file_id=sfid, page_numbers=[2, 1]))
    assert queue.depth("ocr") == (1, 0)
    [msg] = queue.receive("ocr", max_messages=10)
    assert OcrMessage.model_validate_json(msg.body) == OcrMessage(shell_file_id=sfid, page_numbers=[1, 2])
    assert msg.receive_count == 1
    assert queue.depth("ocr") == (0, 1)
    queue.delete("ocr", msg.receipt_handle)
    assert queue.depth("ocr") == (0, 0)


def test_sqs_release_redelivers_then_dead_letters(stack_deps):
    queue: SqsQueue = stack_deps.queue
    queue.send("preprocess", PreprocessMessage(shell_file_id=uuid.uuid4()))
    counts = []
    for _ in range(stack_deps.settings.max_receive_count):
        [msg] = queue.receive("preprocess", wait_s=1)
        counts.append(msg.receive_count)
        queue.release("preprocess", msg.receipt_handle, 0)
    assert counts == [1, 2, 3]
    # One receive past maxReceiveCount: SQS moves the message to the DLQ instead.
    assert queue.receive("preprocess", wait_s=1) == []
    [dead] = queue.receive("preprocess-dlq", wait_s=1)
    assert PreprocessMessage.model_validate_json(dead.body)


def test_sqs_unreachable_endpoint_is_retryable(stack_settings):
    queue = SqsQueue("nope", "us-east-1", "http://127.0.0.1:9")
    with pytest.raises(DependencyUnavailableError):
        queue.send("ocr", PreprocessMessage(shell_file_id=uuid.uuid4()))


# --- storage -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_storage_round_trip(stack_deps, tmp_path, backend):
    storage = stack_deps.storage if backend == "s3" else LocalStorage(tmp_path / "store")
    src = tmp_path / "src.bin"
    src.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4000)
    storage.put_file("originals/a/b/original.pdf", src, "application/pdf")
    storage.put_bytes("processed/a/b/page-0001.jpg", b"\xff\xd8\xffjpeg", "image/jpeg")
    assert is_stored(storage, "originals/a/b/original.pdf")
    assert not is_stored(storage, "originals/a/b/other.pdf")
    dest = tmp_path / "dest.bin"
    assert storage.download("originals/a/b/original.pdf", dest) == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(FileTooLargeError):
        storage.download("originals/a/b/original.pdf", tmp_path / "x", max_bytes=100)
    with pytest.raises(ObjectMissingError) as missing:
        storage.download("originals/a/b/missing.pdf", tmp_path / "y")
    # Any missing object, the same error: the stage that asked says which (original, page image).
    assert type(missing.value) is ObjectMissingError and "originals/" not in str(missing.value)


def test_s3_is_the_configured_bucket(stack_deps):
    assert isinstance(stack_deps.storage, S3Storage)


def test_local_storage_refuses_keys_that_escape(tmp_path):
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(ValueError):
        storage.put_bytes("../outside.txt", b"x", "text/plain")
    assert not (tmp_path / "outside.txt").exists()


# --- PostgresDb ----------------------------------------------------------------------


def _new_file(db: PostgresDb, **kw) -> ShellFile:
    row = ShellFile(
        id=uuid.uuid4(), patient_id=uuid.uuid4(), storage_key="originals/x/y/original.pdf", status=FileStatus.QUEUED, **kw
    )
    db.create_shell_file(row)
    return row


def _text(n: int, engine: str = "tesseract") -> PageText:
    return PageText(page_number=n, text=f"page {n}", engine=engine)


def test_migrate_is_idempotent(stack_deps):
    db: PostgresDb = stack_deps.db
    assert db.migrate() == []
    tables = {r["tablename"] for r in db.query("select tablename from pg_tables where schemaname = 'public'")}
    assert {"shell_files", "shell_file_pages", "ocr_text_extractions", "healthcare_encounters",
            "shell_file_manifests", "pipeline_runs"} <= tables


def test_query_reads_and_execute_writes(stack_deps):
    import psycopg

    db: PostgresDb = stack_deps.db
    row = _new_file(db)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        db.query("update shell_files set status = 'failed' where id = %s returning id", (row.id,))
    assert db.get_shell_file(row.id).status == FileStatus.QUEUED
    assert db.execute("update shell_files set status = 'failed' where id = %s returning id", (row.id,)) == [{"id": row.id}]
    assert db.query("select status from shell_files where id = %s", (row.id,)) == [{"status": "failed"}]


def test_textracts_layout_tables_and_cost_are_stored_with_the_page(stack_deps):
    # Given a page read by Textract's AnalyzeDocument (layout, a table, its price) and one by Tesseract
    db: PostgresDb = stack_deps.db
    row = _new_file(db)
    analysed = PageText(
        page_number=1, text="DISCHARGE SUMMARY\nPage 1 of 2", engine="textract", cost_usd=0.019,
        layout=[LayoutBlock(kind="title", text="DISCHARGE SUMMARY", box=Box(x0=0.1, y0=0.05, x1=0.6, y1=0.08)),
                LayoutBlock(kind="page_number", text="Page 1 of 2")],
        tables=["| Test | Result |\n|------|--------|\n| Hb | 131 |"],
    )
    db.upsert_text(row.id, analysed)
    db.upsert_pages(row.id, [ShellFilePage(shell_file_id=row.id, page_number=2, storage_key="k2", width=10, height=20,
                                           text_source=TextSource.OCR)], [_text(2)])

    # When the discover stage (another process) reads the pages back
    first, second = db.page_texts(row.id)

    # Then the layout, the tables and the cost came through; the Tesseract page has none
    assert first.layout == analysed.layout and first.tables == analysed.tables
    assert first.cost_usd == pytest.approx(0.019)
    assert (second.layout, second.tables, second.cost_usd) == ([], [], 0.0)


def test_status_transitions_are_conditional(stack_deps):
    db: PostgresDb = stack_deps.db
    row = _new_file(db)
    db.create_shell_file(row)  # a second create is a no-op
    assert db.begin_preprocess(row.id).status == FileStatus.PREPROCESSING
    assert db.begin_preprocess(row.id).status == FileStatus.PREPROCESSING
    for n in (1, 2):
        db.upsert_page(ShellFilePage(shell_file_id=row.id, page_number=n, storage_key=f"k{n}", width=10, height=20,
                                     text_source=TextSource.OCR))
    assert db.finish_preprocess(row.id, 2, needs_ocr=True) is True
    assert db.finish_preprocess(row.id, 2, needs_ocr=True) is False
    assert db.pages_without_text(row.id) == [1, 2]
    db.upsert_text(row.id, _text(1))
    assert db.try_start_discovery(row.id) is False
    db.upsert_text(row.id, _text(2))
    db.upsert_text(row.id, _text(2))  # upsert: still one row per page
    assert db.pages_without_text(row.id) == []
    assert db.try_start_discovery(row.id) is True
    assert db.try_start_discovery(row.id) is False
    assert [t.page_number for t in db.page_texts(row.id)] == [1, 2]


@pytest.mark.parametrize("round_", range(5))
def test_fan_in_flips_exactly_once_under_a_race(stack_settings, stack_deps, round_):
    """Eight connections, each with its own page, start together: the upserts of the last
    pages race each other as well as the flips (no page is written before the start line),
    and exactly one of them flips the file, whichever commits last."""
    db: PostgresDb = stack_deps.db
    row = _new_file(db)
    db.begin_preprocess(row.id)
    pages = 8
    for n in range(1, pages + 1):
        db.upsert_page(ShellFilePage(shell_file_id=row.id, page_number=n, storage_key="k", width=1, height=1,
                                     text_source=TextSource.OCR))
    db.finish_preprocess(row.id, pages, needs_ocr=True)
    connections = [PostgresDb(stack_settings.database_url.get_secret_value()) for _ in range(pages)]
    for own in connections:
        own.get_shell_file(row.id)  # connected before the start line: only the race is timed
    barrier = threading.Barrier(pages)
    flips = []

    def worker(n):
        own = connections[n - 1]
        barrier.wait()
        own.upsert_text(row.id, _text(n))
        flips.append(own.try_start_discovery(row.id))
        own.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, pages + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(flips) == [False] * (pages - 1) + [True]
    assert db.get_shell_file(row.id).status == FileStatus.DISCOVERING
    assert db.pages_without_text(row.id) == []


def test_complete_discovery_replaces_the_set(stack_deps):
    db: PostgresDb = stack_deps.db
    row = _new_file(db)
    db.begin_preprocess(row.id)
    db.finish_preprocess(row.id, 3, needs_ocr=False)

    def manifest(n_encounters):
        encs = [Encounter(encounter_type=EncounterType.OUTPATIENT, page_ranges=[(i + 1, i + 1)], confidence=0.9)
                for i in range(n_encounters)]
        return Manifest.build(row.id, 3, Discovery(encounters=encs, provider="test"))

    assert db.complete_discovery(manifest(3)) is True
    assert db.complete_discovery(manifest(2)) is False  # already completed: nothing written
    count = db.query("select count(*) as n from healthcare_encounters where shell_file_id = %s", (row.id,))[0]["n"]
    assert count == 3
    assert db.manifest(row.id).page_assignments == {1: 0, 2: 1, 3: 2}
    assert db.get_shell_file(row.id).status == FileStatus.COMPLETED


def test_mark_failed_never_overrides_completed(stack_deps):
    db: PostgresDb = stack_deps.db
    row = _new_file(db)
    assert db.mark_failed(row.id, "encrypted", "needs a password") is True
    assert db.mark_failed(row.id, "other", "again") is False
    got = db.get_shell_file(row.id)
    assert (got.status, got.error_code) == (FileStatus.FAILED, "encrypted")


def test_unreachable_database_is_retryable():
    db = PostgresDb("postgresql://nobody@127.0.0.1:9/none", connect_timeout_s=2)
    with pytest.raises(DependencyUnavailableError):
        db.get_shell_file(uuid.uuid4())
