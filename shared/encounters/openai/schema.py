"""What the model answers in: ``WindowAnswer`` and its parts, sent as the strict JSON schema of
``response_format`` (the field descriptions are part of what the model reads), and the two ways
an answer fails to be one (``BadAnswer``, ``TooLong``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import EncounterType, Timing


class QuotedEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: Literal[
        "encounter_type", "date_start", "date_end", "provider", "facility", "patient_name", "patient_dob",
        "patient_identifier",
    ]
    page_number: int = Field(description="absolute page number the quote is on")
    quote: str = Field(description="the words exactly as printed on that page, a few words, no paraphrase")


class WindowPageRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_page: int = Field(description="absolute page number, inclusive")
    last_page: int = Field(description="absolute page number, inclusive")


class WindowEncounter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    continues_open_encounter: bool = Field(
        description="true only if these pages continue the carried-forward encounter (same document, "
        "same stay or visit); only the encounter holding the window's first pages can"
    )
    encounter_type: EncounterType
    timing: Timing = Field(
        description="happened: took place; planned: a future appointment or booking; no_encounter: "
        "no real encounter (e.g. a form, an insurance letter)"
    )
    date_start: str | None = Field(
        description="YYYY-MM-DD, only a date printed in the pages for this encounter (admission, visit, "
        "collection, report, letter date); null when none is printed. Never guess."
    )
    date_end: str | None = Field(
        description="YYYY-MM-DD discharge or last day when printed; the same as date_start for a one-day "
        "encounter; null when unknown"
    )
    provider: str | None = Field(description="the responsible clinician as printed, or null")
    facility: str | None = Field(description="the hospital, practice, lab or clinic as printed, or null")
    page_ranges: list[WindowPageRange] = Field(description="the pages of this encounter in this window")
    patient_name: str | None = Field(description="the patient's name as its banner prints it, or null")
    patient_dob: str | None = Field(description="the patient's date of birth, YYYY-MM-DD, as printed, or null")
    patient_identifier: str | None = Field(description="the MRN or other patient identifier as printed, or null")
    review_reasons: list[Literal["weak_boundary", "conflicting_identity", "no_date"]] = Field(
        description="why a person should check this encounter: weak_boundary when its first or last page is "
        "a guess; conflicting_identity when its pages show another patient than the rest; empty when sure"
    )
    confidence: float = Field(description="0 to 1")
    evidence: list[QuotedEvidence] = Field(
        description="for each field you filled (dates above all), where it is printed"
    )


class WindowAnswer(BaseModel):
    """What the model returns for one window of pages."""

    model_config = ConfigDict(extra="forbid")

    encounters: list[WindowEncounter] = Field(description="in page order")
    unassigned_pages: list[int] = Field(description="pages that belong to no encounter (blank, cover sheets)")
    open_encounter_continues: bool = Field(
        description="true if the last encounter seems to run on past this window's last page"
    )


class BadAnswer(Exception):
    """An answer that cannot be used; the reason is shown to the model (no patient data)."""


class TooLong(Exception):
    """The window does not fit: its answer was cut off, or its prompt exceeds the context."""
