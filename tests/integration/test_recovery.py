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
    db.query(
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
