"""The shapes that cross a boundary: queue messages, database rows, page text, manifests.

Queue messages carry ids and page numbers only, never text, names or file names, so queues
and logs stay free of patient data. They are strict: an unknown field or a bad UUID is an
``InvalidMessageError``, not a guess.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# --- queue messages ------------------------------------------------------------------

MAX_MESSAGE_BYTES = 4096


class Stage(str, enum.Enum):
    PREPROCESS = "preprocess"
    OCR = "ocr"
    DISCOVER = "discover"
    PURGE = "purge"  # erasure: a deleted file's objects removed from storage


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    shell_file_id: uuid.UUID


def shell_file_id_of(body: str) -> uuid.UUID | None:
    """Best-effort id of the file a queue body is about, even one no model accepts (an
    invalid message, a dead letter, a redriven one): None when it names no UUID."""
    try:
        return uuid.UUID(str(json.loads(body).get("shell_file_id")))
    except (ValueError, TypeError, AttributeError):
        return None


class PreprocessMessage(_Message):
    """Render and read the pages of one uploaded file."""


class OcrMessage(_Message):
    """OCR these pages (1-based) of one file."""

    page_numbers: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=100)]

    @field_validator("page_numbers")
    @classmethod
    def _unique_sorted(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("page_numbers must be unique")
        return sorted(value)


class DiscoverMessage(_Message):
    """Discover the encounters of one file whose pages all have text."""


class PurgeMessage(_Message):
    """Remove every object of one deleted file from storage (its erasure is recorded)."""


class ScanMessage(BaseModel):
    """Purge every erasure that is due (the container worker's timer; on Lambda, a schedule)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scan: Literal[True] = True


MESSAGE_MODELS: dict[Stage, type[_Message]] = {
    Stage.PREPROCESS: PreprocessMessage,
    Stage.OCR: OcrMessage,
    Stage.DISCOVER: DiscoverMessage,
    Stage.PURGE: PurgeMessage,
}


# --- rows ----------------------------------------------------------------------------


class FileStatus(str, enum.Enum):
    QUEUED = "queued"
    PREPROCESSING = "preprocessing"
    OCR = "ocr"
    DISCOVERING = "discovering"
    COMPLETED = "completed"
    FAILED = "failed"


class TextSource(str, enum.Enum):
    NATIVE = "native"
    OCR = "ocr"


class ShellFile(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    storage_key: str
    original_name: str | None = None
    mime_type: str | None = None
    byte_size: int | None = None
    sha256: str | None = None
    page_count: int | None = None
    status: FileStatus
    # The last page of the OCR fan-out this preprocess run has sent (pages are sent in order).
    ocr_sent_through: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class ShellFilePage(BaseModel):
    shell_file_id: uuid.UUID
    page_number: int = Field(ge=1)
    storage_key: str
    width: int
    height: int
    text_source: TextSource


# --- page text -----------------------------------------------------------------------


class Box(BaseModel):
    """A rectangle normalised to the page: 0..1 from the top-left corner."""

    model_config = ConfigDict(frozen=True)

    x0: float = Field(ge=0, le=1)
    y0: float = Field(ge=0, le=1)
    x1: float = Field(ge=0, le=1)
    y1: float = Field(ge=0, le=1)

    @classmethod
    def from_pixels(cls, x0: float, y0: float, x1: float, y1: float, width: float, height: float) -> Box:
        def clamp(v: float) -> float:
            return min(1.0, max(0.0, v))

        return cls(
            x0=round(clamp(x0 / width), 5),
            y0=round(clamp(y0 / height), 5),
            x1=round(clamp(x1 / width), 5),
            y1=round(clamp(y1 / height), 5),
        )


class Word(BaseModel):
    text: str
    box: Box
    confidence: float | None = Field(default=None, ge=0, le=1)


class Line(BaseModel):
    text: str
    box: Box
    confidence: float | None = Field(default=None, ge=0, le=1)


class LayoutBlock(BaseModel):
    """A part of the page that Textract's LAYOUT named: its kind, its text (its lines, one a
    line, in reading order) and where it is. Only the kinds the encounter cues read are kept."""

    kind: Literal["title", "header", "footer", "page_number", "section_header"]
    text: str
    box: Box | None = None


# Why a page's reading needs a person to look at it (PageText.flag).
OCR_EMPTY = "ocr_empty"  # the image has ink, the reading (almost) no text
OCR_LOW_CONFIDENCE = "ocr_low_confidence"  # the engine's mean word confidence is low


class PageText(BaseModel):
    """The text of one page, whatever read it."""

    page_number: int = Field(ge=1)
    text: str
    lines: list[Line] = Field(default_factory=list)
    words: list[Word] = Field(default_factory=list)
    confidence: float | None = Field(default=None, ge=0, le=1)
    engine: str  # "native", "tesseract", "textract"
    duration_ms: float = 0.0
    flag: str | None = None  # OCR_EMPTY, OCR_LOW_CONFIDENCE: the page is for review
    ink_coverage: float | None = Field(default=None, ge=0, le=1)  # share of dark pixels, where measured
    preparation: list[str] = Field(default_factory=list)  # what was done to the page before OCR (not stored)
    # Textract with TEXTRACT_FEATURES only; every other engine leaves them empty.
    layout: list[LayoutBlock] = Field(default_factory=list)  # in reading order
    tables: list[str] = Field(default_factory=list)  # each table as GitHub markdown
    cost_usd: float = Field(default=0.0, ge=0)  # what reading the page cost (Textract's per-page price)


# --- encounters and the manifest -----------------------------------------------------


class EncounterType(str, enum.Enum):
    INPATIENT = "inpatient_stay"
    EMERGENCY = "emergency"
    OUTPATIENT = "outpatient_visit"
    TELEHEALTH = "telehealth"
    LAB = "lab_report"
    IMAGING = "imaging_report"
    PROCEDURE = "procedure"
    MEDICATION_LIST = "medication_list"
    REFERRAL = "referral_letter"
    ADMINISTRATIVE = "administrative"
    OTHER = "other"


class Timing(str, enum.Enum):
    HAPPENED = "happened"
    PLANNED = "planned"
    NONE = "no_encounter"


PageRange = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]


def page_ranges(numbers) -> list[tuple[int, int]]:
    """Sorted page numbers as runs: [1, 2, 3, 5] -> [(1, 3), (5, 5)]."""
    ranges: list[tuple[int, int]] = []
    for n in numbers:
        if ranges and n == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return ranges


class Evidence(BaseModel):
    """Where a field's value was read: page and the character span in that page's text."""

    field: str
    page_number: int = Field(ge=1)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Encounter(BaseModel):
    encounter_type: EncounterType
    timing: Timing = Timing.HAPPENED
    date_start: dt.date | None = None
    date_end: dt.date | None = None
    provider: str | None = None
    facility: str | None = None
    page_ranges: list[PageRange] = Field(min_length=1)
    confidence: float = Field(ge=0, le=1)
    evidence: list[Evidence] = Field(default_factory=list)
    # The patient the encounter's pages show (evidence fields patient_name, patient_dob,
    # patient_identifier say where). Patient data: never in a log, a metric or a message.
    patient_name: str | None = None
    patient_dob: dt.date | None = None
    patient_identifier: str | None = None
    needs_review: bool = False
    review_reasons: list[str] = Field(default_factory=list)  # no_date, conflicting_identity, weak_boundary, ...

    @model_validator(mode="after")
    def _check(self) -> Encounter:
        for first, last in self.page_ranges:
            if last < first:
                raise ValueError(f"page range [{first},{last}] is reversed")
        if self.date_start and self.date_end and self.date_end < self.date_start:
            raise ValueError("date_end is before date_start")
        return self

    def pages(self) -> set[int]:
        return {p for first, last in self.page_ranges for p in range(first, last + 1)}


class Discovery(BaseModel):
    """What an encounter provider returns for one document."""

    encounters: list[Encounter]
    provider: str
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    identity_conflict: bool = False  # the encounters show more than one patient


class Manifest(BaseModel):
    """The encounter manifest of one file, as stored in shell_file_manifests."""

    shell_file_id: uuid.UUID
    page_count: int = Field(ge=1)
    encounters: list[Encounter]
    page_assignments: dict[int, int | None]  # page number -> index into encounters, or None
    page_engines: dict[int, str] = Field(default_factory=dict)  # page number -> what read its text
    # Pages whose reading a person should check: page number -> PageText.flag. A page with
    # ink and no text is here, never a silent empty page.
    pages_for_review: dict[int, str] = Field(default_factory=dict)
    provider: str
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # the file's cost: the provider's and the OCR's
    provider_cost_usd: float = 0.0  # the encounter provider's (LLM tokens)
    ocr_cost_usd: float = 0.0  # the pages' readings (Textract's per-page prices)
    identity_conflict: bool = False  # more than one patient in one file: a misfiled page is a safety problem
    # an identity conflict, any encounter that needs review, or a page flagged by OCR
    needs_review: bool = False

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        seen: dict[int, int] = {}
        for index, encounter in enumerate(self.encounters):
            for page in encounter.pages():
                if page > self.page_count:
                    raise ValueError(f"encounter {index} names page {page} of {self.page_count}")
                if page in seen:
                    raise ValueError(f"page {page} is assigned to encounters {seen[page]} and {index}")
                seen[page] = index
        if set(self.page_assignments) != set(range(1, self.page_count + 1)):
            raise ValueError("page_assignments must name every page exactly once")
        for page, index in self.page_assignments.items():
            if seen.get(page) != index:
                raise ValueError(f"page {page}: assignment disagrees with the encounters")
        return self

    @classmethod
    def build(
        cls, shell_file_id: uuid.UUID, page_count: int, discovery: Discovery, pages: list[PageText] = ()
    ) -> Manifest:
        # numeric(12, 6) where it is stored: micro-dollars, without the float dust of a sum
        ocr_cost = round(sum(p.cost_usd for p in pages), 6)
        assignments: dict[int, int | None] = {p: None for p in range(1, page_count + 1)}
        for index, encounter in enumerate(discovery.encounters):
            for page in encounter.pages():
                assignments[page] = index
        return cls(
            shell_file_id=shell_file_id,
            page_count=page_count,
            encounters=discovery.encounters,
            page_assignments=assignments,
            page_engines={p.page_number: p.engine for p in pages},
            needs_review=discovery.identity_conflict
            or any(e.needs_review for e in discovery.encounters)
            or any(p.flag for p in pages),
            pages_for_review={p.page_number: p.flag for p in pages if p.flag},
            cost_usd=discovery.cost_usd + ocr_cost,
            provider_cost_usd=discovery.cost_usd,
            ocr_cost_usd=ocr_cost,
            **discovery.model_dump(exclude={"encounters", "cost_usd"}),
        )


class Erasure(BaseModel):
    """One deleted file, as ``erasures`` records it: ids, times and counts, never content."""

    shell_file_id: uuid.UUID
    patient_id: uuid.UUID
    source: str  # "docpipe delete", "row delete" (an app's own DELETE), ...
    requested_by: str | None = None  # the database role (or the JWT's role) that deleted the row
    requested_at: dt.datetime
    page_count: int | None = None
    rows_removed: dict[str, int] = Field(default_factory=dict)  # table -> rows
    objects_removed: int = 0
    purge_attempts: int = 0
    last_error_code: str | None = None
    purged_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None  # the final sweep: nothing of the file can be left

    @property
    def status(self) -> str:
        """pending (objects not purged yet), purged (the final sweep is still due), finished."""
        return "finished" if self.finished_at else "purged" if self.purged_at else "pending"


class PipelineRun(BaseModel):
    stage: Stage
    shell_file_id: uuid.UUID | None
    message_id: str | None = None
    attempt: int = 1
    # deleted: the file was deleted; the message ended there and wrote nothing
    outcome: Literal["succeeded", "failed", "retry", "skipped", "reopened", "deleted"]
    error_code: str | None = None
    started_at: dt.datetime
    duration_ms: float
    peak_rss_kb: int | None = None
