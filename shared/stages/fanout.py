"""What a file past preprocess needs sent next: an OCR message for each run of pages still
without text, or, once every page has text, the one discover message. Preprocess sends it
after its pages (and again when a redelivery finds the status moved: the fan-out may have
been lost in a crash); `docpipe retry` sends it for a failed file it reopened."""

from __future__ import annotations

from shared.models import DiscoverMessage, FileStatus, OcrMessage, Stage


def fan_out_missing(deps, shell_file_id) -> str | None:
    """Re-send whatever the next stage needs for a file past preprocess (idempotent); return
    the stage sent to, or None when nothing was due."""
    missing = deps.db.pages_without_text(shell_file_id)
    if missing:
        send_ocr(deps, shell_file_id, missing)
        return Stage.OCR.value
    if deps.db.try_start_discovery(shell_file_id) or deps.db.get_shell_file(shell_file_id).status == FileStatus.DISCOVERING:
        deps.queue.send(Stage.DISCOVER.value, DiscoverMessage(shell_file_id=shell_file_id))
        return Stage.DISCOVER.value
    return None


def send_ocr(deps, shell_file_id, pages: list[int]) -> None:
    size = deps.settings.ocr_pages_per_message
    for start in range(0, len(pages), size):
        deps.queue.send(Stage.OCR.value, OcrMessage(shell_file_id=shell_file_id, page_numbers=pages[start : start + size]))
