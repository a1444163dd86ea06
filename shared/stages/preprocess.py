"""The preprocess stage: the original -> page JPEGs in storage, native text where the PDF has
it, and an OCR message for every page that has none (or straight to discover when none need
OCR).

It owns the page pipeline of one document: MuPDF renders on the calling thread while writer
threads encode and store the JPEGs, page rows and native texts are written in runs, and each
run's pages that need OCR are sent to OCR as soon as the run is written (the first page alone,
then runs of 2, 4, 8): OCR starts while the rest of the document renders. What was sent is
recorded (``ocr_sent_through``), so a redelivered message sends only the pages after it. The
fan-in is unchanged: OCR flips the file to discovering only once preprocess has moved it to
``ocr`` and every page has text, and preprocess itself flips it when OCR read the last page
before it finished. Called by ``handlers.preprocess`` with the parsed message."""

from __future__ import annotations

import hashlib
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from shared.bootstrap import Deps
from shared.errors import ForeignStorageKeyError, ObjectMissingError, OriginalMissingError
from shared.keys import original_key, page_key
from shared.models import (
    DiscoverMessage,
    FileStatus,
    PageText,
    PreprocessMessage,
    ShellFilePage,
    Stage,
    TextSource,
)
from shared.observability import logger
from shared.pages.documents import Limits, open_document, release_native_caches
from shared.pages.sniff import sniff
from shared.stages.erasure import ensure_not_deleted, missing_file
from shared.stages.fanout import fan_out_missing, send_ocr


# The dependencies this stage builds (bootstrap builds each on first use; nothing else).
USES = ("db", "storage", "queue")


def run(msg: PreprocessMessage, deps: Deps, attempt: int = 1) -> int | str | None:
    row = deps.db.begin_preprocess(msg.shell_file_id)
    if row is None:
        raise missing_file(deps, msg.shell_file_id)
    if row.status in (FileStatus.OCR, FileStatus.DISCOVERING):
        # A redelivery after the status moved: the end of the fan-out may have been lost in a
        # crash (the pages sent before it are in the queue: never sent twice).
        fan_out_missing(deps, msg.shell_file_id, resend=False)
        return "skipped"
    if row.status != FileStatus.PREPROCESSING:
        logger.info("file already past preprocess", extra={"status": row.status.value})
        return "skipped"

    _check_original_key(row)
    limits = Limits.from_settings(deps.settings)
    needs_ocr: list[int] = []
    with tempfile.TemporaryDirectory(prefix="docpipe-pre-") as tmp:
        original = Path(tmp) / "original"
        try:
            size = deps.storage.download(row.storage_key, original, max_bytes=deps.settings.max_file_bytes)
        except ObjectMissingError as exc:
            raise OriginalMissingError() from exc
        kind = sniff(original)
        deps.db.set_file_facts(row.id, kind.mime, size, _sha256(original))
        # MuPDF renders page N+1 on this thread while writer threads encode the JPEGs of the
        # pages before it and store them (Pillow and the storage client release the GIL); at
        # most _WRITERS + 1 pages' pixels are alive at once. Rows are written in runs of
        # pages, one commit per run.
        rows: list[ShellFilePage] = []
        texts: list[PageText] = []
        with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="docpipe-pages") as writer:
            pending: deque[Future] = deque()
            try:
                with open_document(original, kind, limits) as document:
                    page_count = document.page_count
                    # A redelivery of this run sends only what its earlier attempts did not.
                    fan_out = _OcrFanOut(deps, row.id, row.ocr_sent_through or 0, page_count)
                    for page in document.pages():
                        if not rows:  # a run of pages begins: its JPEGs, then its rows
                            ensure_not_deleted(deps, row.id)
                        key = page_key(row.patient_id, row.id, page.page_number)
                        rows.append(_page_row(row.id, key, page))
                        if page.native_text is None:
                            needs_ocr.append(page.page_number)
                            fan_out.add(page.page_number)
                        else:
                            texts.append(page.native_text)
                        if len(pending) >= _WRITERS:
                            _settle(pending.popleft())
                        pending.append((writer.submit(_store_jpeg, deps, key, page), page))
                        if len(rows) >= _ROWS_PER_WRITE or fan_out.due():
                            _flush(deps, row.id, rows, texts, pending)
                            fan_out.send()
                _flush(deps, row.id, rows, texts, pending)
                fan_out.send(everything=True)
            finally:
                while pending:  # on error: wait for the writer, free pixels on this thread
                    future, page = pending.popleft()
                    future.cancel()
                    try:
                        _settle((future, page))
                    except BaseException:  # noqa: BLE001 - the first error is already raising
                        pass
                if deps.settings.release_native_caches:
                    release_native_caches()
    logger.info(
        "preprocessed",
        extra={"kind": kind.value, "bytes": size, "pages": page_count, "pages_for_ocr": len(needs_ocr)},
    )
    # Only the invocation that moves the status sends discover; a crash between the two is
    # mended on redelivery above. OCR may have read every page already: then no OCR
    # invocation will flip the file (each found it still preprocessing), and this one does.
    if deps.db.finish_preprocess(row.id, page_count, needs_ocr=bool(needs_ocr)):
        if not needs_ocr or deps.db.try_start_discovery(row.id):
            deps.queue.send(Stage.DISCOVER.value, DiscoverMessage(shell_file_id=row.id))
    else:
        ensure_not_deleted(deps, row.id)
    return page_count


def _check_original_key(row) -> None:
    """The row names the key submit built for this patient and file, or nothing is read: a
    wrong key inside the bucket would put another patient's document into this one's pages,
    text and encounters, which row-level security then shows to this patient."""
    extension = row.storage_key.rsplit(".", 1)[-1]
    try:
        expected = original_key(row.patient_id, row.id, extension)
    except ValueError:
        expected = None
    if row.storage_key != expected:
        raise ForeignStorageKeyError()


_ROWS_PER_WRITE = 25


# Encoder threads. Pillow encodes without the GIL (into a file descriptor), MuPDF renders
# holding it: two writers keep a JPEG encoding whenever the renderer has the GIL, at the cost
# of one more page's pixels alive (three in all). Measured on a 120-page RGB text PDF: one
# writer 1.5-1.7 s, two 1.15-1.2 s, three no better than two.
_WRITERS = 2


class _OcrFanOut:
    """The pages of this run that need OCR, sent once their rows are written: the first page
    alone (OCR starts after one page's render), then runs of 2, 4 and 8 pages, or of
    ``OCR_PAGES_PER_MESSAGE`` when that is more (fewer commits and messages; a run of 8
    renders in a fraction of the second an OCR page takes), each run in messages of at most
    ``OCR_PAGES_PER_MESSAGE`` pages. The file's last pages wait for the end, whose messages
    shrink (``fanout.batches``). Pages up to ``already_sent`` (a redelivery) are not sent again."""

    _LARGEST_RUN = 8

    def __init__(self, deps: Deps, shell_file_id, already_sent: int, page_count: int) -> None:
        self._deps, self._id, self._already_sent = deps, shell_file_id, already_sent
        self._per_message = deps.settings.ocr_pages_per_message
        self._largest_run = max(self._LARGEST_RUN, self._per_message)
        # Pages from here on are the file's tail: sent at the end, in shrinking messages.
        self._tail_from = page_count - self._per_message + 1 if self._per_message > 1 else page_count + 1
        self._waiting: list[int] = []
        self._run = 1

    def add(self, page_number: int) -> None:
        if page_number > self._already_sent:
            self._waiting.append(page_number)

    def _ready(self) -> int:
        """How many of the waiting pages may go before the end (the tail waits)."""
        return sum(1 for n in self._waiting if n < self._tail_from)

    def due(self) -> bool:
        return self._ready() >= self._run

    def send(self, everything: bool = False) -> None:
        """Send the waiting pages: whole messages (a run smaller than a message is one), the
        tail only with ``everything``, at the end; their rows are written."""
        ready, size = self._ready(), self._per_message
        if everything:
            count = len(self._waiting)
        elif ready < size and ready >= self._run:
            count = ready
        else:
            count = ready // size * size
        if count:
            send_ocr(self._deps, self._id, self._waiting[:count], tail=everything)
            del self._waiting[:count]
            self._run = min(self._run * 2, self._largest_run)


def _store_jpeg(deps: Deps, key: str, page) -> None:
    deps.storage.put_bytes(key, page.jpeg, "image/jpeg")


def _settle(entry: tuple[Future, object]) -> None:
    """Wait for a page's JPEG to be stored, then free its pixels here, on MuPDF's thread."""
    future, page = entry
    try:
        future.result()
    finally:
        page.release()


def _page_row(shell_file_id, key: str, page) -> ShellFilePage:
    return ShellFilePage(
        shell_file_id=shell_file_id,
        page_number=page.page_number,
        storage_key=key,
        width=page.width,
        height=page.height,
        text_source=TextSource.NATIVE if page.native_text is not None else TextSource.OCR,
    )


def _flush(deps: Deps, shell_file_id, rows: list, texts: list, pending: deque) -> None:
    """Write the rows of pages whose JPEGs are stored: a page row never names a missing image."""
    while pending:
        _settle(pending.popleft())
    deps.db.upsert_pages(shell_file_id, rows, texts)
    rows.clear()
    texts.clear()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()

