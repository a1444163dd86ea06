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


def send_ocr(deps, shell_file_id, pages: list[int], tail: bool = True) -> None:
    """OCR messages for ``pages`` (in order), ``OCR_PAGES_PER_MESSAGE`` pages each; with
    ``tail``, ``pages`` end the file's pages to read, and their last messages shrink
    (``batches``). However far it gets, what was sent is recorded, so that a redelivered
    preprocess sends the rest only."""
    sent = 0
    try:
        for batch in batches(pages, deps.settings.ocr_pages_per_message, tail):
            deps.queue.send(Stage.OCR.value, OcrMessage(shell_file_id=shell_file_id, page_numbers=batch))
            sent = batch[-1]
    finally:
        if sent:
            deps.db.record_ocr_sent(shell_file_id, sent)


def batches(pages: list[int], per_message: int, tail: bool = True) -> list[list[int]]:
    """``pages`` in messages of ``per_message``; with ``tail``, the last ``per_message`` pages
    in halving messages (8 pages: 4, 2, 1, 1), so that the workers reading a file's last
    messages finish within about a page of each other, not a whole message apart, which would
    leave a core idle at the end of every file."""
    pages = list(pages)
    if not tail or per_message == 1:
        return [pages[i : i + per_message] for i in range(0, len(pages), per_message)]
    whole = max(0, len(pages) - per_message)
    out = batches(pages[:whole], per_message, tail=False)
    rest = pages[whole:]
    while rest:
        size = (len(rest) + 1) // 2
        out.append(rest[:size])
        rest = rest[size:]
    return out
