"""Issue 2, item 4: every stage message delivered twice, one after the other and at the same
moment, leaves the same rows as one delivery."""

from __future__ import annotations

import threading
import uuid

import pytest

from shared.bootstrap import build_deps
from shared.errors import DiscoveryInProgressError
from shared.models import OcrMessage, Stage
from shared.ports import QueueMessage
from shared.runtime.events import sqs_event
from shared.runtime.records import handle_record
from shared.stages import discover, ocr, preprocess
from shared.submit import submit
from tests.conftest import needs_tesseract

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

RUNS = {Stage.PREPROCESS: preprocess.run, Stage.OCR: ocr.run, Stage.DISCOVER: discover.run}


def _record(stage: Stage, m: QueueMessage, receive_count: int) -> SQSRecord:
    arn = f"arn:aws:sqs:us-east-1:000000000000:docpipe-{stage.value}"
    msg = QueueMessage(m.queue, m.message_id, m.receipt_handle, m.body, receive_count)
    return SQSRecord(sqs_event([msg], arn, "us-east-1")["Records"][0])


def run_pipeline(deps, mode: str, helper_deps=None) -> int:
    """Drain the stage queues, delivering each message once, twice in a row, or twice at once."""
    deliveries = 0
    while True:
        got = False
        for stage in Stage:
            for m in deps.queue.receive(stage.value, max_messages=10, wait_s=0):
                got = True
                if mode == "once":
                    handle_record(stage, _record(stage, m, 1), RUNS[stage], deps)
                    deliveries += 1
                elif mode == "sequential":
                    handle_record(stage, _record(stage, m, 1), RUNS[stage], deps)
                    handle_record(stage, _record(stage, m, 2), RUNS[stage], deps)
                    deliveries += 2
                else:
                    barrier = threading.Barrier(2)
                    errors = []

                    def deliver(d, count):
                        try:
                            barrier.wait()
                            handle_record(stage, _record(stage, m, count), RUNS[stage], d)
                        except DiscoveryInProgressError:
                            pass  # the copy that lost the discover lease: SQS delivers it again later
                        except Exception as exc:  # noqa: BLE001
                            errors.append(exc)

                    threads = [threading.Thread(target=deliver, args=(d, 1)) for d in (deps, helper_deps)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    assert not errors, errors
                    deliveries += 2
                deps.queue.delete(stage.value, m.receipt_handle)
        if not got:
            return deliveries


def snapshot(db, sfid) -> dict:
    q = db.query
    return {
        "file": q("select status, page_count, mime_type, byte_size, sha256, error_code from shell_files where id = %s", (sfid,)),
        "pages": q("select page_number, width, height, text_source, regexp_replace(storage_key, '^.*/', '') as key"
                   " from shell_file_pages where shell_file_id = %s order by 1", (sfid,)),
        "texts": q("select page_number, engine, text, jsonb_array_length(words) as words from ocr_text_extractions"
                   " where shell_file_id = %s order by 1", (sfid,)),
        "encounters": q("select ordinal, encounter_type, date_start, date_end, provider, facility, page_ranges"
                        " from healthcare_encounters where shell_file_id = %s order by ordinal", (sfid,)),
        "manifests": q("select provider, manifest->'encounters' as encounters, manifest->'page_assignments' as pa"
                       " from shell_file_manifests where shell_file_id = %s", (sfid,)),
    }


@pytest.mark.parametrize("sample", ["two_visits.pdf", pytest.param("fax_referral.tiff", marks=needs_tesseract())])
def test_duplicate_deliveries_leave_the_rows_of_one(stack_deps, stack_settings, samples_dir, sample):
    patient = uuid.uuid4()
    other = build_deps(stack_settings)  # a second worker: its own database connection
    results = {}
    for mode in ("once", "sequential", "concurrent"):
        sfid = submit(stack_deps, samples_dir / sample, patient)
        deliveries = run_pipeline(stack_deps, mode, other)
        assert deliveries >= 2
        results[mode] = snapshot(stack_deps.db, sfid)
    other.db.close()
    reference = results["once"]
    assert reference["file"][0]["status"] == "completed"
    assert reference["encounters"], "the reference run found encounters"
    assert results["sequential"] == reference
    assert results["concurrent"] == reference


@needs_tesseract()
def test_a_redelivered_preprocess_sends_no_page_twice(stack_deps, samples_dir, monkeypatch):
    # Given a scanned document whose first preprocess delivery fails once its first page was
    # sent to OCR (the queue refuses the second OCR message), on Postgres and SQS
    from shared.errors import DependencyUnavailableError

    sfid = submit(stack_deps, samples_dir / "fax_referral.tiff", uuid.uuid4())
    send, ocr_sends = stack_deps.queue.send, []

    def refuse_second(queue, message, delay_s=0):
        if queue == Stage.OCR.value:
            ocr_sends.append(message.page_numbers)
            if len(ocr_sends) == 2:
                raise DependencyUnavailableError("queue down")
        return send(queue, message, delay_s)

    monkeypatch.setattr(stack_deps.queue, "send", refuse_second)
    (m,) = stack_deps.queue.receive(Stage.PREPROCESS.value, max_messages=1, wait_s=0)
    with pytest.raises(DependencyUnavailableError):
        handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, m, 1), preprocess.run, stack_deps)
    # When SQS delivers it again, and then every message once
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, m, 2), preprocess.run, stack_deps)
    stack_deps.queue.delete(Stage.PREPROCESS.value, m.receipt_handle)
    ocr_bodies = [b.body for b in stack_deps.queue.receive(Stage.OCR.value, max_messages=10, wait_s=0)]
    for _ in range(3):  # moto hands out a few at a time
        ocr_bodies += [b.body for b in stack_deps.queue.receive(Stage.OCR.value, max_messages=10, wait_s=0)]
    pages = sorted(n for body in ocr_bodies for n in OcrMessage.model_validate_json(body).page_numbers)
    page_count = stack_deps.db.get_shell_file(sfid).page_count
    # Then each page is in exactly one OCR message
    assert page_count >= 2 and pages == list(range(1, page_count + 1))
    for body in ocr_bodies:
        qm = QueueMessage(Stage.OCR.value, str(uuid.uuid4()), "rh", body, 1)
        handle_record(Stage.OCR, _record(Stage.OCR, qm, 1), ocr.run, stack_deps)
    # and the last page read flipped the file once: one discover message, one completion
    discovers = stack_deps.queue.receive(Stage.DISCOVER.value, max_messages=10, wait_s=0)
    assert len(discovers) == 1
    handle_record(Stage.DISCOVER, _record(Stage.DISCOVER, discovers[0], 1), discover.run, stack_deps)
    assert stack_deps.db.get_shell_file(sfid).status.value == "completed"
