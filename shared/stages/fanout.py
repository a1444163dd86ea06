"""What a file past preprocess needs sent next: an OCR message for each run of pages still
without text, or, once every page has text, the one discover message. Preprocess sends OCR
messages as its pages are stored (``OcrFanOut``), and mends a lost fan-out when a redelivery
finds the status moved; `docpipe retry` sends it for a failed file it reopened."""

from __future__ import annotations

from shared.models import DiscoverMessage, FileStatus, OcrMessage, Stage


def fan_out_missing(deps, shell_file_id, resend: bool = True) -> str | None:
    """Re-send whatever the next stage needs for a file past preprocess (idempotent); return
    the stage sent to, or None when nothing was due. ``resend=False`` (a redelivered preprocess
    message) sends only pages its run has not sent yet: the rest are in the queue."""
    missing = deps.db.pages_without_text(shell_file_id)
    if missing:
        if not resend:
            sent = deps.db.get_shell_file(shell_file_id).ocr_sent_through or 0
            missing = [n for n in missing if n > sent]
            if not missing:
                return None
        send_ocr(deps, shell_file_id, missing)
        return Stage.OCR.value
    if deps.db.try_start_discovery(shell_file_id) or deps.db.get_shell_file(shell_file_id).status == FileStatus.DISCOVERING:
        deps.queue.send(Stage.DISCOVER.value, DiscoverMessage(shell_file_id=shell_file_id))
        return Stage.DISCOVER.value
    return None


def send_ocr(deps, shell_file_id, pages: list[int]) -> None:
    """OCR messages for ``pages`` (in order), ``OCR_PAGES_PER_MESSAGE`` pages each. However far
    it gets, what was sent is recorded, so that a redelivered preprocess sends the rest only."""
    size = deps.settings.ocr_pages_per_message
    sent = 0
    try:
        for start in range(0, len(pages), size):
            batch = pages[start : start + size]
            deps.queue.send(Stage.OCR.value, OcrMessage(shell_file_id=shell_file_id, page_numbers=batch))
            sent = batch[-1]
    finally:
        if sent:
            deps.db.record_ocr_sent(shell_file_id, sent)
