"""The in-process worker loop on the real local servers: drain, retry with backoff, DLQ."""

from __future__ import annotations

import time
import uuid

from shared.adapters.tesseract import TesseractOcr
from shared.bootstrap import install
from shared.models import FileStatus
from shared.runtime.worker import Worker
from shared.submit import submit


def test_burst_drains_every_queue(stack_deps, samples_dir):
    ids = [submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4()) for _ in range(2)]
    handled = Worker(stack_deps).run(burst=True, idle_sleep_s=0.1)
    assert handled == 4  # a preprocess and a discover message each
    assert all(stack_deps.db.get_shell_file(i).status == FileStatus.COMPLETED for i in ids)
    assert all(sum(stack_deps.queue.depth(q)) == 0 for q in ("preprocess", "ocr", "discover"))


def test_a_dependency_that_stays_down_ends_in_the_dlq_and_a_failed_row(stack_deps, samples_dir):
    """OCR's engine is missing on every delivery: retried with backoff, dead-lettered after
    MAX_RECEIVE_COUNT, then marked failed with the last error code. Nothing is lost."""
    stack_deps.ocr = TesseractOcr(cmd="/nonexistent/tesseract")
    install(stack_deps)
    sfid = submit(stack_deps, samples_dir / "lab_photo.jpg", uuid.uuid4())
    good = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    Worker(stack_deps).run(burst=True, idle_sleep_s=0.2)
    row = stack_deps.db.get_shell_file(sfid)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "dependency_unavailable")
    assert "ocr" in row.error_message
    attempts = stack_deps.db.query(
        "select count(*) as n from pipeline_runs where shell_file_id = %s and stage = 'ocr' and outcome = 'retry'",
        (sfid,),
    )[0]["n"]
    assert attempts == stack_deps.settings.max_receive_count
    assert stack_deps.db.get_shell_file(good).status == FileStatus.COMPLETED


def test_a_dependencys_retry_after_sets_the_redelivery_delay(stack_deps, samples_dir):
    """A throttled OCR call that says Retry-After: 4 is not retried after the default 1 s."""
    from shared.errors import ThrottledError
    from shared.ports import OcrEngine

    class Throttled(OcrEngine):
        name = "throttled"

        def read(self, image, page_number):
            raise ThrottledError("slow down", retry_after_s=4)

    stack_deps.ocr = Throttled()
    install(stack_deps)
    submit(stack_deps, samples_dir / "lab_photo.jpg", uuid.uuid4())
    worker = Worker(stack_deps, include_dlqs=False)
    worker.poll_once()  # preprocess
    worker.poll_once()  # ocr: throttled, released with the hint
    assert stack_deps.queue.depth("ocr") == (0, 1)
    time.sleep(2.0)  # past the default 1 s backoff
    assert stack_deps.queue.receive("ocr") == []
    time.sleep(2.5)
    assert len(stack_deps.queue.receive("ocr", wait_s=1)) == 1
