"""Recovery at the edges (issue 12) on the real local servers: stale dead letters, retries
from the database, the storage key check, the discover lease."""

from __future__ import annotations

import json
import uuid

import pytest

from handlers import failures
from shared.models import FileStatus, PageText, ShellFile, ShellFilePage, TextSource
from shared.ports import QueueMessage
from shared.runtime.events import LocalContext, queue_arn, sqs_event


def _file(db, status: FileStatus = FileStatus.QUEUED, pages: int = 0, with_text: int = 0) -> uuid.UUID:
    """A file row in ``status`` with ``pages`` page rows, the first ``with_text`` of them read."""
    row = ShellFile(id=uuid.uuid4(), patient_id=uuid.uuid4(), storage_key="originals/x/y/original.pdf",
                    status=FileStatus.QUEUED)
    db.create_shell_file(row)
    for n in range(1, pages + 1):
        db.upsert_pages(
            row.id,
            [ShellFilePage(shell_file_id=row.id, page_number=n, storage_key=f"k{n}", width=10, height=10,
                           text_source=TextSource.OCR)],
            [PageText(page_number=n, text=f"page {n}", engine="tesseract")] if n <= with_text else [],
        )
    db.execute(
        "update shell_files set status = %s, page_count = %s where id = %s returning id",
        (status.value, pages or None, row.id),
    )
    return row.id


def _dead_letter(deps, stage: str, sfid: uuid.UUID) -> dict:
    body = json.dumps({"shell_file_id": str(sfid), **({"page_numbers": [1]} if stage == "ocr" else {})})
    message = QueueMessage(queue=f"{stage}-dlq", message_id=str(uuid.uuid4()), receipt_handle="r", body=body,
                           receive_count=1)
    arn = queue_arn(deps.settings.aws_region, f"{deps.settings.queue_prefix}-{stage}-dlq")
    return failures.lambda_handler(sqs_event([message], arn, deps.settings.aws_region), LocalContext())


# --- item 1: a dead letter fails its file only while the file is still at its stage -------


@pytest.mark.parametrize(
    ("stage", "status", "pages", "with_text", "fails"),
    [
        ("preprocess", FileStatus.QUEUED, 0, 0, True),
        ("preprocess", FileStatus.PREPROCESSING, 0, 0, True),
        ("preprocess", FileStatus.OCR, 2, 0, False),  # a stale copy: preprocess was done
        ("preprocess", FileStatus.DISCOVERING, 2, 2, False),
        ("ocr", FileStatus.OCR, 2, 1, True),  # a page still lacks text
        ("ocr", FileStatus.OCR, 2, 2, False),  # every page read: the fan-in, not OCR, is behind
        ("ocr", FileStatus.DISCOVERING, 2, 2, False),
        ("ocr", FileStatus.PREPROCESSING, 0, 0, False),
        ("discover", FileStatus.DISCOVERING, 2, 2, True),
        ("discover", FileStatus.OCR, 2, 1, False),
    ],
)
def test_a_dead_letter_fails_its_file_only_at_its_stage(stack_deps, stage, status, pages, with_text, fails):
    sfid = _file(stack_deps.db, status, pages, with_text)
    assert _dead_letter(stack_deps, stage, sfid) == {"batchItemFailures": []}
    row = stack_deps.db.get_shell_file(sfid)
    assert row.status == (FileStatus.FAILED if fails else status)
    if fails:
        assert row.error_code == "retries_exhausted" and stage in row.error_message


# --- item 4: preprocess reads only the key shared/keys.py builds for the file -----------


@pytest.mark.parametrize("tamper", ["another patient's original", "a page image", "the same patient's other file"])
def test_preprocess_reads_only_the_files_own_original_key(stack_deps, samples_dir, monkeypatch, tamper):
    """A row whose storage_key names another object inside the bucket (no path tricks, so
    storage containment cannot catch it): nothing is read, the file fails invalid_storage_key."""
    from handlers import preprocess
    from shared.keys import original_key, page_key
    from shared.submit import submit

    deps = stack_deps
    other_patient = uuid.uuid4()
    other = submit(deps, samples_dir / "two_visits.pdf", other_patient)
    mine = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    row = deps.db.get_shell_file(mine)
    key = {
        "another patient's original": deps.db.get_shell_file(other).storage_key,
        "a page image": page_key(row.patient_id, row.id, 1),
        "the same patient's other file": original_key(row.patient_id, uuid.uuid4(), "pdf"),
    }[tamper]
    deps.storage.put_file(key, samples_dir / "two_visits.pdf", "application/pdf")  # a real, readable object
    deps.db.execute("update shell_files set storage_key = %s where id = %s returning id", (key, mine))
    reads = []
    real_download = deps.storage.download
    monkeypatch.setattr(deps.storage, "download", lambda k, *a, **kw: reads.append(k) or real_download(k, *a, **kw))

    messages = [m for m in deps.queue.receive("preprocess", max_messages=10, wait_s=1)]
    mine_msg = [m for m in messages if str(mine) in m.body]
    arn = queue_arn(deps.settings.aws_region, f"{deps.settings.queue_prefix}-preprocess")
    response = preprocess.lambda_handler(sqs_event(mine_msg, arn, deps.settings.aws_region), LocalContext())

    assert response == {"batchItemFailures": []}  # permanent: acknowledged
    got = deps.db.get_shell_file(mine)
    assert (got.status, got.error_code) == (FileStatus.FAILED, "invalid_storage_key")
    assert reads == [] and deps.db.pages(mine) == []


# --- item 2: `docpipe retry`, from the database -------------------------------------------


def test_retry_completes_files_that_failed_retryably_each_processed_once(stack_deps, samples_dir, monkeypatch):
    """Three files, each failed at a different stage because a dependency stayed down past the
    retry budget (every delivery, then the DLQ, then the failures handler): storage for the
    first one's original, the OCR engine for a scanned one, the encounter provider for the
    third. With the dependencies back, `retry` reopens each to the state its stage needs and
    sends what that state needs; the worker then completes all three, and no stage that had
    succeeded runs again. A second retry finds nothing to do."""
    from shared import ops
    from shared.errors import DependencyUnavailableError
    from shared.runtime.worker import Worker
    from shared.submit import submit

    deps = stack_deps
    pre = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    scanned = submit(deps, samples_dir / "scanned_discharge.pdf", uuid.uuid4())
    disc = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    pre_key = deps.db.get_shell_file(pre).storage_key
    down = {"storage", "ocr", "llm"}
    real_download, real_read, real_discover = deps.storage.download, deps.ocr.read, deps.encounters.discover

    def download(key, *a, **kw):
        if "storage" in down and key == pre_key:
            raise DependencyUnavailableError("storage down")
        return real_download(key, *a, **kw)

    reads = []

    def read(image, page_number):
        if "ocr" in down:
            raise DependencyUnavailableError("ocr down")
        reads.append(page_number)
        return real_read(image, page_number)

    def discover(pages):
        if "llm" in down:
            raise DependencyUnavailableError("llm down")
        return real_discover(pages)

    monkeypatch.setattr(deps.storage, "download", download)
    monkeypatch.setattr(deps.ocr, "read", read)
    monkeypatch.setattr(deps.encounters, "discover", discover)
    Worker(deps).run(burst=True, idle_sleep_s=0.2)
    for sfid in (pre, scanned, disc):
        row = deps.db.get_shell_file(sfid)
        assert (row.status, row.error_code) == (FileStatus.FAILED, "dependency_unavailable"), sfid

    down.clear()
    assert ops.retry(deps, codes=["no_such_code"]) == []
    retried = ops.retry(deps, ids=[pre, scanned, disc])
    assert sorted(r["stage"] for r in retried) == ["discover", "ocr", "preprocess"]
    assert ops.retry(deps, ids=[pre, scanned, disc]) == []  # reopened already: nothing twice
    Worker(deps).run(burst=True, idle_sleep_s=0.2)

    for sfid in (pre, scanned, disc):
        assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED, sfid
        runs = deps.db.query(
            "select stage, count(*) as n from pipeline_runs where shell_file_id = %s and outcome = 'succeeded'"
            " group by stage", (sfid,))
        # no stage that succeeded ran again (OCR: a message per page)
        assert {r["stage"]: r["n"] for r in runs} == {
            "preprocess": 1, "discover": 1, **({"ocr": len(reads)} if sfid == scanned else {})}, runs
        assert deps.db.query("select count(*) as n from pipeline_runs where shell_file_id = %s"
                             " and outcome = 'reopened'", (sfid,))[0]["n"] == 1
    assert sorted(reads) == list(range(1, deps.db.get_shell_file(scanned).page_count + 1))  # each page read once
    assert ops.retry(deps, ids=[pre, scanned, disc]) == []  # nothing failed any more (the db is shared: by id)


def test_docpipe_retry_and_the_terminal_redrive_on_the_command_line(stack_deps, stack_env, samples_dir):
    """`docpipe retry` selects by code and id and prints ids, codes and stages only; `docpipe
    redrive --terminal` uses SQS's message move task, which moto lacks: it says so and moves
    nothing."""
    import subprocess
    import sys
    from pathlib import Path

    from shared.submit import submit

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=Path(__file__).resolve().parents[2],
                              env=stack_env, capture_output=True, text=True, timeout=120)

    deps = stack_deps
    sfid = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    deps.db.mark_failed(sfid, "dependency_unavailable", "storage down for longer than the budget")
    # Filters combine: this file failed with another code, so nothing is selected. (Bounded by
    # --id: the session's database holds other tests' failed files, which must stay failed.)
    assert cli("retry", "--code", "encrypted", "--id", str(sfid)).stdout == ""
    assert deps.db.get_shell_file(sfid).status == FileStatus.FAILED
    done = cli("retry", "--id", str(sfid), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"shell_file_id": str(sfid), "stage": "preprocess", "was": "dependency_unavailable"}]
    assert deps.db.get_shell_file(sfid).status == FileStatus.QUEUED
    assert deps.queue.depth("preprocess")[0] == 2  # the submit's message and the retry's

    deps.queue._client.create_queue(QueueName=f"{deps.settings.queue_prefix}-unrecorded-dlq")
    moved = cli("redrive", "--terminal")
    assert moved.returncode == 1 and "no message move task" in moved.stderr, moved.stderr[-2000:]


# --- item 5: the discover lease and the per-window cache ----------------------------------


def _discovering_on_postgres(db, pages) -> uuid.UUID:
    sfid = uuid.uuid4()
    db.create_shell_file(ShellFile(id=sfid, patient_id=uuid.uuid4(), storage_key="k", status=FileStatus.QUEUED))
    db.begin_preprocess(sfid)
    db.upsert_pages(sfid, [], pages)
    assert db.finish_preprocess(sfid, len(pages), needs_ocr=False)
    return sfid


@pytest.fixture
def llm():
    from tests.integration.test_openai_encounters import FakeOpenAi, packet_120

    pages, truth = packet_120()
    with FakeOpenAi(truth, pages, window=20) as fake:
        yield fake, pages
    assert fake.problems == [], fake.problems


def test_two_copies_of_a_discover_message_at_once_pay_the_model_once(stack_deps, stack_settings, llm):
    """Two invocations of the same discover message at the same moment (two warm Lambdas, or a
    container child and a redelivery): the lease lets one call the model; the other is retried
    later and then finds the file completed."""
    import threading

    from shared.adapters.postgres import PostgresDb
    from shared.errors import RetryableError
    from tests.integration.test_openai_encounters import _deliver, provider

    server, pages = llm
    server.delay_s = 0.3  # each window takes a while: the copies overlap for certain
    sfid = _discovering_on_postgres(stack_deps.db, pages)
    copies = [stack_deps.with_parts(db=PostgresDb(stack_settings.database_url.get_secret_value()), encounters=provider(server))
              for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes = []

    def deliver(deps):
        barrier.wait()
        try:
            _deliver(deps, sfid, 1)
            outcomes.append("done")
        except RetryableError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=deliver, args=(d,)) for d in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["discovery_in_progress", "done"]
    assert len(server.requests) == 6  # one copy's six windows, not twelve
    _deliver(copies[1], sfid, 2)  # the retried copy: completed by now, skipped
    assert len(server.requests) == 6
    assert stack_deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    for deps in copies:
        deps.db.close()


def test_a_throttle_after_window_k_keeps_the_k_paid_windows(stack_deps, llm):
    """A 120-page document in six windows read one after another; the endpoint throttles (a long
    Retry-After) on the fourth. The redelivery asks only windows four to six: the three paid for
    are kept. (Side by side: test_oracle_windows.py, the windows in flight are kept.)"""

    from shared.errors import ThrottledError
    from tests.integration.test_openai_encounters import _deliver, error, provider

    server, pages = llm
    sfid = _discovering_on_postgres(stack_deps.db, pages)
    deps = stack_deps.with_parts(encounters=provider(server, mode="sequential"))
    server.script.extend([lambda seen: None] * 3 + [error(429, {"Retry-After": "600"})])
    with pytest.raises(ThrottledError):
        _deliver(deps, sfid, 1)
    assert len(server.requests) == 4
    _deliver(deps, sfid, 2)
    assert [r.pages[0] for r in server.requests[4:]] == [61, 81, 101]  # windows 4, 5, 6 only
    manifest = stack_deps.db.manifest(sfid)
    assert stack_deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    assert len(manifest.encounters) == 9 and manifest.input_tokens == 6000  # each paid window counted once


def test_the_window_cache_is_patient_data_behind_row_level_security(stack_deps):
    rows = stack_deps.db.query(
        "select c.relrowsecurity, (select count(*) from pg_policies p where p.tablename = c.relname) as policies"
        " from pg_class c where c.relname = 'discovery_windows' and c.relkind = 'r'")
    assert rows == [{"relrowsecurity": True, "policies": 2}]
