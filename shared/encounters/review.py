"""How sure a provider is: review reasons, the confidence they lower, and identity conflicts.

Both providers end here. An encounter ``needs_review`` when it has a reason: no date, an
identity that conflicts with another encounter of the same file, a boundary drawn from a
weak cue, or a page read by OCR with low confidence. Each reason lowers the confidence, so
that sorting by confidence puts the encounters most likely wrong first (the bench measures
this as the AUROC of confidence against correctness).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from shared.encounters.identity import Identity, distinct
from shared.encounters.text import Span
from shared.models import Encounter, PageText

NO_DATE = "no_date"
CONFLICTING_IDENTITY = "conflicting_identity"
WEAK_BOUNDARY = "weak_boundary"
LOW_OCR = "low_ocr_confidence"
REASONS = (NO_DATE, CONFLICTING_IDENTITY, WEAK_BOUNDARY, LOW_OCR)

LOW_OCR_CONFIDENCE = 0.75  # an OCR'd page read with less mean word confidence than this needs review
CEILING = 0.95
# What each reason (and a missing title or banner) takes off the confidence. Calibrated on the
# development part (enlarged with more seeds, OCR-confused labels and half-scanned packets; AUROC
# of confidence against correctness there): a missing date is the surest sign of a wrong encounter
# but summaries of care are undated by right, so it costs no more than a weak boundary would; a
# conflicting identity is the file's, not the encounter's (it says whose pages, not where they
# end), so it keeps the encounter in review but barely moves its rank.
PENALTY = {NO_DATE: 0.2, CONFLICTING_IDENTITY: 0.05, WEAK_BOUNDARY: 0.3, LOW_OCR: 0.25, "untitled": 0.15,
           "no_banner": 0.1}


def confidence(penalties: Sequence[str], ceiling: float = CEILING) -> float:
    return round(max(0.05, min(ceiling, CEILING) - sum(PENALTY[p] for p in penalties)), 2)


def low_ocr(pages: Sequence[PageText], numbers: set[int]) -> bool:
    return any(
        p.page_number in numbers and p.engine != "native" and p.confidence is not None
        and p.confidence < LOW_OCR_CONFIDENCE
        for p in pages
    )


def identity_of(encounter: Encounter) -> Identity:
    nowhere = Span(1, 0, 0)  # conflicts compare values; where they were read does not matter here
    return Identity(
        (encounter.patient_name, nowhere) if encounter.patient_name else None,
        (encounter.patient_dob, nowhere) if isinstance(encounter.patient_dob, dt.date) else None,
        (encounter.patient_identifier, nowhere) if encounter.patient_identifier else None,
    )


def finish(encounters: list[Encounter], pages: Sequence[PageText]) -> tuple[list[Encounter], bool]:
    """Encounters with every reason that the pages and the other encounters give; the file's conflict."""
    conflict = len(distinct(identity_of(e) for e in encounters)) > 1
    out = []
    for enc in encounters:
        reasons = [r for r in enc.review_reasons if r in REASONS]
        if enc.date_start is None and enc.date_end is None:
            reasons.append(NO_DATE)
        if conflict:
            reasons.append(CONFLICTING_IDENTITY)
        if low_ocr(pages, enc.pages()):
            reasons.append(LOW_OCR)
        reasons = [r for r in REASONS if r in reasons]
        penalties = reasons + ([] if identity_of(enc) else ["no_banner"])
        out.append(enc.model_copy(update={
            "review_reasons": reasons, "needs_review": bool(reasons),
            "confidence": confidence(penalties, ceiling=enc.confidence),
        }))
    return out, conflict
