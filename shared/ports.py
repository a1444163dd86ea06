"""The small ports every stage talks through.

Handlers and stage logic see only these abstract classes; the adapters in
``shared/adapters`` implement them against real services (SQS, S3, Postgres, Tesseract),
and the unit tests against in-memory fakes.
"""

from __future__ import annotations

import abc
import dataclasses
import uuid
from pathlib import Path

from pydantic import BaseModel

from shared.keys import check_prefix
from shared.models import (
    Discovery,
    Erasure,
    Manifest,
    PageText,
    PipelineRun,
    ShellFile,
    ShellFilePage,
    Stage,
)

# Logical queue names: one per stage, each with a dead-letter queue "<stage>-dlq".
STAGE_QUEUES = tuple(stage.value for stage in Stage)
DLQ_SUFFIX = "-dlq"


def dlq_name(queue: str) -> str:
    return queue + DLQ_SUFFIX


@dataclasses.dataclass(frozen=True)
class QueueMessage:
    queue: str
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_timestamp_ms: int | None = None


class Queue(abc.ABC):
    """At-least-once message queues addressed by logical name ("preprocess", "ocr-dlq", ...).

    A received message stays invisible for the visibility timeout and comes back unless it
    is deleted; ``release`` makes it visible again after ``delay_s``.
    """

    @abc.abstractmethod
    def send(self, queue: str, message: BaseModel, delay_s: int = 0) -> str: ...

    @abc.abstractmethod
    def receive(
        self, queue: str, max_messages: int = 1, wait_s: int = 0, visibility_s: int | None = None
    ) -> list[QueueMessage]: ...

    @abc.abstractmethod
    def delete(self, queue: str, receipt_handle: str) -> None: ...

    @abc.abstractmethod
    def release(self, queue: str, receipt_handle: str, delay_s: int = 0) -> None: ...

    @abc.abstractmethod
    def depth(self, queue: str) -> tuple[int, int]:
        """(visible, in flight) approximate counts."""


class Storage(abc.ABC):
    """Object storage for originals and page images, addressed by key."""

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    @abc.abstractmethod
    def download(self, key: str, dest: Path, max_bytes: int | None = None) -> int:
        """Stream the object to ``dest`` without holding it in memory; return its size.

        Raises ``ObjectMissingError`` when the key does not exist (the caller says which
        object that was) and ``FileTooLargeError`` when it is bigger than ``max_bytes``.
        """

    @abc.abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder, ending in "/"), however deep."""

    @abc.abstractmethod
    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects; one already gone is no error."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (a patient's or a file's, as shared.keys builds
        them, nothing wider); return how many there were."""
        keys = self.list_keys(check_prefix(prefix))
        if keys:
            self.delete_keys(keys)
        return len(keys)


class Database(abc.ABC):
    """docpipe's rows. Every write is idempotent: the same call twice leaves the same rows."""

    @abc.abstractmethod
    def create_shell_file(self, row: ShellFile) -> None: ...

    @abc.abstractmethod
    def get_shell_file(self, shell_file_id: uuid.UUID) -> ShellFile | None: ...

    @abc.abstractmethod
    def begin_preprocess(self, shell_file_id: uuid.UUID) -> ShellFile | None:
        """queued -> preprocessing, a fresh run whose OCR fan-out has sent nothing yet
        (``ocr_sent_through`` 0); return the row as it is after the call (None: unknown id)."""

    @abc.abstractmethod
    def record_ocr_sent(self, shell_file_id: uuid.UUID, through_page: int) -> None:
        """The OCR messages of every page up to ``through_page`` needing OCR are sent."""

    @abc.abstractmethod
    def set_file_facts(self, shell_file_id: uuid.UUID, mime_type: str, byte_size: int, sha256: str) -> None: ...

    @abc.abstractmethod
    def upsert_page(self, page: ShellFilePage) -> None: ...

    @abc.abstractmethod
    def upsert_text(self, shell_file_id: uuid.UUID, text: PageText) -> None: ...

    def upsert_pages(self, shell_file_id: uuid.UUID, pages: list[ShellFilePage], texts: list[PageText]) -> None:
        """Texts then pages, as one write where the adapter can."""
        for text in texts:
            self.upsert_text(shell_file_id, text)
        for page in pages:
            self.upsert_page(page)

    @abc.abstractmethod
    def finish_preprocess(self, shell_file_id: uuid.UUID, page_count: int, needs_ocr: bool) -> bool:
        """preprocessing -> ocr (or -> discovering); True only for the call that moved it."""

    @abc.abstractmethod
    def pages_without_text(self, shell_file_id: uuid.UUID) -> list[int]: ...

    @abc.abstractmethod
    def try_start_discovery(self, shell_file_id: uuid.UUID) -> bool:
        """The OCR fan-in: ocr -> discovering in one conditional UPDATE, only once every page
        has text. True for exactly one caller however many race."""

    @abc.abstractmethod
    def page_texts(self, shell_file_id: uuid.UUID, boxes: bool = True) -> list[PageText]:
        """Every page's text in page order; with ``boxes=False`` without its words and lines
        (what Pass 0.5 reads: a 1,000-page file's boxes alone outgrow a 512 MB function)."""

    @abc.abstractmethod
    def complete_discovery(self, manifest: Manifest) -> bool:
        """In one transaction: replace the file's encounters with the manifest's, store the
        manifest, discovering -> completed. False (and nothing written) if not discovering."""

    @abc.abstractmethod
    def mark_failed(
        self, shell_file_id: uuid.UUID, error_code: str, error_message: str, at_stage: Stage | None = None
    ) -> bool:
        """Any non-terminal status -> failed with the code; False if already completed/failed.

        With ``at_stage`` (a dead letter of that stage), only while the file is still at that
        stage: queued/preprocessing for preprocess, ocr with a page still lacking text for OCR,
        discovering for discover. A stale duplicate of a message whose work was done then fails
        nothing."""

    @abc.abstractmethod
    def record_run(self, run: PipelineRun) -> None: ...

    @abc.abstractmethod
    def last_error_code(self, shell_file_id: uuid.UUID) -> str | None:
        """The error code of the file's most recent failed or retried stage run."""

    @abc.abstractmethod
    def pages(self, shell_file_id: uuid.UUID) -> list[ShellFilePage]: ...

    @abc.abstractmethod
    def manifest(self, shell_file_id: uuid.UUID) -> Manifest | None: ...

    @abc.abstractmethod
    def save_discovery(self, shell_file_id: uuid.UUID, fingerprint: str, discovery: Discovery) -> None:
        """Keep what the provider returned for the file (replacing any earlier one), before the
        encounters are written: a redelivered message then reuses it instead of paying again."""

    @abc.abstractmethod
    def saved_discovery(self, shell_file_id: uuid.UUID, fingerprint: str) -> Discovery | None:
        """The discovery saved for the file with this fingerprint (same provider, model and page
        texts), or None."""

    @abc.abstractmethod
    def claim_discovery(self, shell_file_id: uuid.UUID, owner: str, lease_s: float) -> bool:
        """The discover lease, in one conditional UPDATE: True if the file is discovering and no
        other owner holds an unexpired lease (the lease is then ``owner``'s for ``lease_s``)."""

    @abc.abstractmethod
    def release_discovery(self, shell_file_id: uuid.UUID, owner: str) -> None:
        """Give the lease up (only ``owner``'s own)."""

    # --- erasure ---------------------------------------------------------------------------

    @abc.abstractmethod
    def is_deleted(self, shell_file_id: uuid.UUID) -> bool:
        """The file's row is gone and its erasure is recorded: its deletion has begun."""

    @abc.abstractmethod
    def delete_files(
        self, source: str, shell_file_ids: list[uuid.UUID] | None = None, patient_id: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        """Delete these files' rows (or every file of ``patient_id``) in one transaction: the rows
        that hold their content go with them, and each erasure is recorded with ``source``.
        Return the ids deleted."""

    @abc.abstractmethod
    def record_erasure(self, shell_file_id: uuid.UUID, patient_id: uuid.UUID, source: str) -> None:
        """Record the erasure of a file that has no row (objects an upload left without one)."""

    @abc.abstractmethod
    def erasure(self, shell_file_id: uuid.UUID) -> Erasure | None: ...

    @abc.abstractmethod
    def erasures_of(self, patient_id: uuid.UUID) -> list[Erasure]: ...

    @abc.abstractmethod
    def due_erasures(self, final_sweep_s: float, limit: int = 100) -> list[Erasure]:
        """Erasures a scan purges: not purged yet, or purged with the final sweep now due; none
        whose lease another purge holds. Least recently tried first."""

    @abc.abstractmethod
    def claim_erasure(self, shell_file_id: uuid.UUID, owner: str, lease_s: float) -> bool:
        """The purge lease, in one conditional UPDATE (which also notes when this purge began)."""

    @abc.abstractmethod
    def finish_purge(
        self, shell_file_id: uuid.UUID, owner: str, objects_removed: int, final_sweep_s: float
    ) -> Erasure | None:
        """Add what this purge removed, release the lease; finished when the purge began at least
        ``final_sweep_s`` after the request (no stage that started before can still write)."""

    @abc.abstractmethod
    def fail_purge(self, shell_file_id: uuid.UUID, owner: str, error_code: str, objects_removed: int = 0) -> None:
        """Note why this purge failed and what it removed before, and release the lease (a later
        purge tries again)."""

    def saved_window(self, shell_file_id: uuid.UUID, fingerprint: str) -> dict | None:
        """A provider's answer for one page window, kept by ``save_window`` (None: not kept)."""
        return None

    def save_window(self, shell_file_id: uuid.UUID, fingerprint: str, answer: dict, input_tokens: int,
                    output_tokens: int) -> None:
        """Keep one window's answer as soon as it is paid for (a no-op where nothing is kept)."""


class OcrEngine(abc.ABC):
    """Reads the text of one page image."""

    name: str

    @abc.abstractmethod
    def read(self, image: Path, page_number: int) -> PageText: ...


class EncounterProvider(abc.ABC):
    """Pass 0.5: finds the healthcare encounters in a document's page texts."""

    name: str

    @abc.abstractmethod
    def discover(self, pages: list[PageText]) -> Discovery: ...
