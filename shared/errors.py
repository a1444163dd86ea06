"""docpipe's error taxonomy.

Every failure a stage can meet is one of two kinds. A ``RetryableError`` leaves the queue
message for redelivery (and, after maxReceiveCount, the DLQ). A ``PermanentError`` is
recorded on the file with its stable ``code`` and the message is acknowledged. Messages of
these errors are shown to users and written to the database: they never carry patient data
(no file names, no text, no names), only what went wrong and figures.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error docpipe raises on purpose."""

    code = "pipeline_error"
    retryable = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or self.code)

    @property
    def message(self) -> str:
        return str(self)


class FileDeletedError(PipelineError):
    """The file was deleted: its message ends here, writes nothing, and is neither retried nor failed."""

    code = "deleted"


# --- retryable -----------------------------------------------------------------------


class RetryableError(PipelineError):
    """A transient failure; the message will be delivered again."""

    code = "retryable"
    retryable = True
    retry_after_s: float | None = None  # the dependency's own hint (Retry-After), when it gave one

    def __init__(self, message: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ThrottledError(RetryableError):
    """A dependency asked us to slow down."""

    code = "throttled"


class DependencyUnavailableError(RetryableError):
    """A dependency (database, queue, storage, OCR engine) could not be reached."""

    code = "dependency_unavailable"


class StageTimeoutError(RetryableError):
    """The stage ran past its time limit."""

    code = "timeout"


class EngineCrashedError(RetryableError):
    """A native engine (OCR, renderer) died from a signal; it may well succeed next time."""

    code = "engine_crashed"


class MissingSettingError(RetryableError):
    """A setting this stage needs is not configured; the message waits until it is."""

    code = "missing_setting"

    def __init__(self, setting: str, why: str) -> None:
        # Names the variable, never a value. Retryable: a deployment fixes it, not the document.
        super().__init__(f"{setting} is not set ({why})")
        self.setting = setting


class MissingPackageError(RetryableError):
    """A package this command or stage needs is not installed; the message says what installs it."""

    code = "missing_package"

    def __init__(self, package: str, message: str) -> None:
        # Retryable: an install or a deployment fixes it, not the document.
        super().__init__(message)
        self.package = package


class NotReadyError(RetryableError):
    """The file is not yet in the state this stage needs; try again later."""

    code = "not_ready"


class DiscoveryInProgressError(RetryableError):
    """Another invocation holds the file's discovery lease; try again once it has finished."""

    code = "discovery_in_progress"


class PurgeInProgressError(RetryableError):
    """Another purge holds the erasure's lease for longer than a purge takes; try again later."""

    code = "purge_in_progress"


# --- permanent -----------------------------------------------------------------------


class PermanentError(PipelineError):
    """A failure that redelivery cannot fix; recorded on the file."""

    code = "permanent"


class InvalidMessageError(PermanentError):
    """The queue message is not a valid docpipe message."""

    code = "invalid_message"


class FileNotFoundInDbError(PermanentError):
    """The message names a file docpipe has no record of."""

    code = "unknown_file"


class ObjectMissingError(PermanentError):
    """An object is not in storage (what every storage adapter raises; the stage says which)."""

    code = "object_missing"


class OriginalMissingError(ObjectMissingError):
    """The uploaded original is not in storage."""

    code = "original_missing"


class PageImageMissingError(ObjectMissingError):
    """A page's JPEG, stored by preprocess, is not in storage."""

    code = "page_image_missing"


class StorageKeyError(PermanentError, ValueError):
    """A storage key points outside docpipe's storage (a tampered row)."""

    code = "invalid_storage_key"


class ForeignStorageKeyError(StorageKeyError):
    """The row's storage key is not the key docpipe builds for its patient and file."""


class EmptyFileError(PermanentError):
    """The uploaded file is empty (zero bytes)."""

    code = "empty_file"


class FileTooLargeError(PermanentError):
    """The uploaded file is larger than MAX_FILE_BYTES."""

    code = "file_too_large"


class UnsupportedTypeError(PermanentError):
    """The file is not a PDF, TIFF, JPEG, PNG or HEIC/HEIF image."""

    code = "unsupported_type"


class UnreadableDocumentError(PermanentError):
    """The file claims a supported type but is corrupt or truncated."""

    code = "unreadable_document"


class EncryptedDocumentError(PermanentError):
    """The PDF needs a password to open."""

    code = "encrypted"


class NoPagesError(PermanentError):
    """The document has no pages."""

    code = "no_pages"


class TooManyPagesError(PermanentError):
    """The document has more pages than MAX_PAGES."""

    code = "too_many_pages"


class PageTooLargeError(PermanentError):
    """A page has more pixels than MAX_PAGE_PIXELS (decompression-bomb guard)."""

    code = "page_too_large"


class PageRenderTooSlowError(PermanentError):
    """A page took longer than MAX_RENDER_S_PER_PAGE to render."""

    code = "render_too_slow"


class OcrFailedError(PermanentError):
    """The OCR engine could not read a page image."""

    code = "ocr_failed"


class RetriesExhaustedError(PermanentError):
    """The message failed on every delivery and reached the dead-letter queue."""

    code = "retries_exhausted"


class ModelAnswerInvalidError(PermanentError):
    """The language model's answer could not be read as encounters, even when asked again."""

    code = "llm_answer_invalid"


class ModelRequestRejectedError(PermanentError):
    """The language model endpoint rejected the request itself; sending it again will not help."""

    code = "llm_request_rejected"


class FhirBundleInvalidError(PermanentError):
    """The file's encounters did not make a valid FHIR R4 Bundle (FHIR_OUTPUT=storage): a mapping bug."""

    code = "fhir_bundle_invalid"
