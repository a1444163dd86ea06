"""The OCR stage: read the page JPEGs that have no text layer, record their text, and, for the
invocation that records a file's last missing page, flip the file to discovering and send
the one discover message (the fan-in). Called by ``handlers.ocr`` with the parsed message."""

from __future__ import annotations

import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from shared.bootstrap import Deps
from shared.errors import ObjectMissingError, PageImageMissingError
from shared.keys import page_key
from shared.models import DiscoverMessage, FileStatus, OcrMessage, Stage
from shared.pages.prepare import flag_for_review
from shared.observability import logger
from shared.stages.erasure import ensure_not_deleted, missing_file


# The dependencies this stage builds (bootstrap builds each on first use; nothing else).
USES = ("db", "storage", "ocr", "queue")


def run(msg: OcrMessage, deps: Deps, attempt: int = 1) -> int | str | None:
    row = deps.db.get_shell_file(msg.shell_file_id)
    if row is None:
        raise missing_file(deps, msg.shell_file_id)
    # Preprocess sends pages while it still renders the rest: they are read then too.
    if row.status not in (FileStatus.PREPROCESSING, FileStatus.OCR):
        if row.status == FileStatus.DISCOVERING and attempt > 1:
            _send_discover(deps, row.id)
        return "skipped"

    # A redelivered message never pays for a page that is already read.
    todo = sorted(set(msg.page_numbers) & set(deps.db.pages_without_text(row.id)))
    # Each page's row is written by a thread while the engine reads the next page: its round
    # trips and commit no longer hold the engine up (with both cores busy, as at concurrency 2,
    # Postgres answers late). A write's failure is raised once the next page has been read, or
    # at the end; every write is done before the fan-in.
    with tempfile.TemporaryDirectory(prefix="docpipe-ocr-") as tmp, \
            ThreadPoolExecutor(1, thread_name_prefix="docpipe-ocr-write") as writer:
        written: Future | None = None
        for page_number in todo:
            ensure_not_deleted(deps, row.id)  # before paying to read a page of a deleted file
            image = Path(tmp) / f"page-{page_number:04d}.jpg"
            try:
                deps.storage.download(page_key(row.patient_id, row.id, page_number), image)
            except ObjectMissingError as exc:
                # Preprocess stored it; its original may well still be there. The page number
                # is the whole story: the key names the patient.
                raise PageImageMissingError(f"the image of page {page_number} is not in storage") from exc
            # Whatever read it, a page with ink and no text is flagged, never a silent empty page.
            text = flag_for_review(deps.ocr.read(image, page_number), image)
            image.unlink()
            if written is not None:
                written.result()
            written = writer.submit(deps.db.upsert_text, row.id, text)
            logger.info(
                "page read",
                extra={
                    "page": page_number,
                    "engine": text.engine,
                    "chars": len(text.text),
                    "words": len(text.words),
                    "flag": text.flag,
                    "duration_ms": round(text.duration_ms, 1),
                },
            )
        if written is not None:
            written.result()

    if deps.db.try_start_discovery(row.id):
        _send_discover(deps, row.id)
    elif attempt > 1 and _status(deps, row.id) == FileStatus.DISCOVERING:
        # The flip may have committed before a crash lost the send; a duplicate discover
        # message is harmless, a missing one would leave the file stuck.
        _send_discover(deps, row.id)
    return len(msg.page_numbers)


def _status(deps: Deps, shell_file_id) -> FileStatus | None:
    row = deps.db.get_shell_file(shell_file_id)
    return row.status if row else None


def _send_discover(deps: Deps, shell_file_id) -> None:
    deps.queue.send(Stage.DISCOVER.value, DiscoverMessage(shell_file_id=shell_file_id))

