"""Every stage's lambda_handler against the real local servers, with Lambda-shaped events."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from handlers import discover, failures, ocr, preprocess
from shared.models import FileStatus
from shared.runtime.events import LocalContext
from shared.submit import submit
from tests.conftest import needs_tesseract
from tests.fakes import is_stored

EVENTS = Path(__file__).resolve().parents[1] / "events"


def event_for(stage: str, shell_file_id, **record_overrides) -> dict:
    text = (EVENTS / f"{stage}.json").read_text().replace("{{shell_file_id}}", str(shell_file_id))
    event = json.loads(text)
    event["Records"][0].update(record_overrides)
    return event


def take(deps, queue: str) -> list[dict]:
    msgs = deps.queue.receive(queue, max_messages=10, wait_s=1)
    for m in msgs:
        deps.queue.delete(queue, m.receipt_handle)
    return [json.loads(m.body) for m in msgs]


def test_text_pdf_through_preprocess_and_discover(stack_deps, samples_dir):
    sfid = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    assert take(stack_deps, "preprocess") == [{"shell_file_id": str(sfid)}]

    assert preprocess.lambda_handler(event_for("preprocess", sfid), LocalContext()) == {"batchItemFailures": []}
    assert take(stack_deps, "ocr") == []
    assert take(stack_deps, "discover") == [{"shell_file_id": str(sfid)}]
    row = stack_deps.db.get_shell_file(sfid)
    assert (row.status, row.page_count) == (FileStatus.DISCOVERING, 3)
    for page in stack_deps.db.pages(sfid):
        assert is_stored(stack_deps.storage, page.storage_key)

    assert discover.lambda_handler(event_for("discover", sfid), LocalContext()) == {"batchItemFailures": []}
    row = stack_deps.db.get_shell_file(sfid)
    assert row.status == FileStatus.COMPLETED
    manifest = stack_deps.db.manifest(sfid)
    assert len(manifest.encounters) == 2
    assert len({e.date_start for e in manifest.encounters}) == 2


@needs_tesseract()
def test_image_through_ocr_handler(stack_deps, samples_dir):
    sfid = submit(stack_deps, samples_dir / "lab_photo.jpg", uuid.uuid4())
    take(stack_deps, "preprocess")
    assert preprocess.lambda_handler(event_for("preprocess", sfid), LocalContext()) == {"batchItemFailures": []}
    assert take(stack_deps, "ocr") == [{"shell_file_id": str(sfid), "page_numbers": [1]}]
    assert ocr.lambda_handler(event_for("ocr", sfid), LocalContext()) == {"batchItemFailures": []}
    assert take(stack_deps, "discover") == [{"shell_file_id": str(sfid)}]
    [text] = stack_deps.db.page_texts(sfid)
    assert text.engine == "tesseract" and len(text.text) > 100
    assert all(0 <= w.box.x0 <= w.box.x1 <= 1 and 0 <= w.box.y0 <= w.box.y1 <= 1 for w in text.words)



def test_a_page_jpeg_deleted_before_ocr_fails_the_file_as_a_missing_page_image(stack_deps, samples_dir):
    # Given a photographed page through the real preprocess handler, its JPEG in S3
    sfid = submit(stack_deps, samples_dir / "lab_photo.jpg", uuid.uuid4())
    take(stack_deps, "preprocess")
    assert preprocess.lambda_handler(event_for("preprocess", sfid), LocalContext()) == {"batchItemFailures": []}
    assert take(stack_deps, "ocr") == [{"shell_file_id": str(sfid), "page_numbers": [1]}]
    (page,) = stack_deps.db.pages(sfid)
    # When the JPEG is deleted from the bucket before the OCR message is handled
    storage = stack_deps.storage
    storage._client.delete_object(Bucket=storage._bucket, Key=page.storage_key)
    # Then the record is acknowledged and the file failed for its page image, not its original
    assert ocr.lambda_handler(event_for("ocr", sfid), LocalContext()) == {"batchItemFailures": []}
    row = stack_deps.db.get_shell_file(sfid)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "page_image_missing")
    assert str(sfid) not in row.error_message and row.storage_key not in row.error_message

    # And a retry renders the page again from the original (OCR alone would fail once more)
    from shared import ops

    (done,) = ops.retry(stack_deps, ids=[sfid])
    assert (done["stage"], done["was"]) == ("preprocess", "page_image_missing")
    assert take(stack_deps, "preprocess") == [{"shell_file_id": str(sfid)}]
    assert preprocess.lambda_handler(event_for("preprocess", sfid), LocalContext()) == {"batchItemFailures": []}
    assert is_stored(storage, page.storage_key)
    assert take(stack_deps, "ocr") == [{"shell_file_id": str(sfid), "page_numbers": [1]}]
    assert ocr.lambda_handler(event_for("ocr", sfid), LocalContext()) == {"batchItemFailures": []}
    assert stack_deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING

def test_batch_reports_only_retryable_failures(stack_deps, samples_dir, tmp_path):
    """Three records: a good file, a poison (encrypted) file, and one whose original vanished
    from a storage that is down. Only the last is left for redelivery."""
    good = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    poison = submit(stack_deps, samples_dir / "locked.pdf", uuid.uuid4())
    flaky = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    take(stack_deps, "preprocess")
    records = []
    for n, sfid in enumerate((good, poison, flaky)):
        record = event_for("preprocess", sfid)["Records"][0]
        record["messageId"] = f"msg-{n}"
        records.append(record)

    real_download = stack_deps.storage.download

    def download(key, dest, max_bytes=None):
        if str(flaky) in key:
            from shared.errors import DependencyUnavailableError

            raise DependencyUnavailableError("storage timed out")
        return real_download(key, dest, max_bytes)

    stack_deps.storage.download = download
    response = preprocess.lambda_handler({"Records": records}, LocalContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-2"}]}
    assert stack_deps.db.get_shell_file(good).status == FileStatus.DISCOVERING
    row = stack_deps.db.get_shell_file(poison)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "encrypted")
    assert stack_deps.db.get_shell_file(flaky).status == FileStatus.PREPROCESSING

    stack_deps.storage.download = real_download  # the redelivery succeeds
    assert preprocess.lambda_handler({"Records": [records[2]]}, LocalContext()) == {"batchItemFailures": []}
    assert stack_deps.db.get_shell_file(flaky).status == FileStatus.DISCOVERING


def test_failures_handler_marks_dead_letters_failed(stack_deps, samples_dir):
    sfid = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    event = event_for("preprocess", sfid, eventSourceARN="arn:aws:sqs:us-east-1:000000000000:docpipe-preprocess-dlq")
    assert failures.lambda_handler(event, LocalContext()) == {"batchItemFailures": []}
    row = stack_deps.db.get_shell_file(sfid)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "retries_exhausted")
    assert "preprocess" in row.error_message


@pytest.mark.parametrize("body", ['{"shell_file_id": "not-a-uuid"}', '{"unexpected": true}', "garbage"])
def test_invalid_messages_are_acknowledged(stack_deps, body):
    event = event_for("discover", uuid.uuid4(), body=body)
    assert discover.lambda_handler(event, LocalContext()) == {"batchItemFailures": []}
    run = stack_deps.db.query("select outcome, error_code from pipeline_runs order by id desc limit 1")[0]
    assert run == {"outcome": "failed", "error_code": "invalid_message"}


def test_manifest_records_the_engine_of_every_page(stack_deps, samples_dir):
    sfid = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    take(stack_deps, "preprocess")
    preprocess.lambda_handler(event_for("preprocess", sfid), LocalContext())
    take(stack_deps, "discover")
    discover.lambda_handler(event_for("discover", sfid), LocalContext())
    assert stack_deps.db.manifest(sfid).page_engines == {1: "native", 2: "native", 3: "native"}
