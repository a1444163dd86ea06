"""The document read in windows of pages, and the encounters reconciled across them.

``Document`` is the page texts once per page number, with the readable ones (the blank-page
rule of ``shared.encounters.text``). ``read_windows`` walks the windows in order, carrying the
last encounter found (a ``Draft``) into the next window's request, merging the encounter the
model says continues it, and splitting a window in two when it does not fit (``TooLong``).
``check`` turns one window's answer into drafts: page numbers must be the window's own (else
``BadAnswer``), pages claimed twice stay with the first encounter, readable pages the model
skipped join the encounter on the page before them, blank pages belong to no encounter, and
every quote, date and patient field goes through ``grounding``."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

from shared.encounters.openai.grounding import grounded_date, locate, parse_date, patient_fields
from shared.encounters.openai.schema import BadAnswer, TooLong, WindowAnswer
from shared.encounters.text import is_blank
from shared.errors import ModelAnswerInvalidError
from shared.models import Encounter, EncounterType, Evidence, PageText, Timing, page_ranges
from shared.observability import logger

_FIELDS = ("date_start", "date_end", "provider", "facility")
_PATIENT = ("patient_name", "patient_dob", "patient_identifier")


class Document:
    def __init__(self, pages: Sequence[PageText]) -> None:
        unique: dict[int, str] = {}
        layout: dict[int, list] = {}
        for page in sorted(pages, key=lambda p: p.page_number):
            unique.setdefault(page.page_number, page.text)
            if page.layout:
                layout.setdefault(page.page_number, page.layout)
        self.texts = unique
        self.layout = layout  # page number -> its Textract LAYOUT blocks (title, header, footer, ...)
        self.pages = list(pages)
        self.numbers = list(unique)
        self.readable = {n for n, text in unique.items() if not is_blank(text)}
        self.page_count = max(unique) if unique else 0


@dataclasses.dataclass
class Draft:
    """An encounter being assembled, possibly across windows."""

    encounter_type: EncounterType
    timing: Timing
    pages: set[int]
    confidence_pages: float  # confidence weighted by pages, for the merged average
    fields: dict[str, tuple[Any, Evidence | None]]  # date_start/date_end/provider/facility
    type_evidence: Evidence | None
    reasons: set[str] = dataclasses.field(default_factory=set)
    open: bool = False

    @property
    def confidence(self) -> float:
        return self.confidence_pages / max(1, len(self.pages))

    def merge(self, other: Draft) -> None:
        if self.encounter_type == EncounterType.OTHER:
            self.encounter_type, self.type_evidence = other.encounter_type, other.type_evidence
        self.pages |= other.pages
        self.confidence_pages += other.confidence_pages
        self.reasons |= other.reasons
        for name, (value, evidence) in other.fields.items():
            mine = self.fields.get(name)
            if mine is None:
                self.fields[name] = (value, evidence)
            elif name == "date_start" and value < mine[0]:
                self.fields[name] = (value, evidence)
            elif name == "date_end" and value > mine[0]:
                self.fields[name] = (value, evidence)

    def summary(self) -> dict[str, Any]:
        """The hand-off the next window sees."""
        return {
            "pages": _ranges_text(sorted(self.pages)),
            "encounter_type": self.encounter_type.value,
            "timing": self.timing.value,
            **{name: _plain(self.fields[name][0]) if name in self.fields else None for name in _FIELDS + _PATIENT},
            "previous_window_says_it_continues": self.open,
        }

    def encounter(self) -> Encounter:
        evidence = [e for e in (self.type_evidence,) if e]
        evidence += [ev for _, (_, ev) in sorted(self.fields.items()) if ev is not None]
        start = self.fields.get("date_start", (None, None))[0]
        end = self.fields.get("date_end", (None, None))[0]
        if start and end and end < start:
            end = None
            evidence = [e for e in evidence if e.field != "date_end"]
        return Encounter(
            encounter_type=self.encounter_type,
            timing=self.timing,
            date_start=start,
            date_end=end,
            provider=self.fields.get("provider", (None, None))[0],
            facility=self.fields.get("facility", (None, None))[0],
            page_ranges=page_ranges(sorted(self.pages)),
            confidence=round(min(1.0, max(0.0, self.confidence)), 3),
            evidence=_unique(evidence),
            patient_name=self.fields.get("patient_name", (None, None))[0],
            patient_dob=self.fields.get("patient_dob", (None, None))[0],
            patient_identifier=self.fields.get("patient_identifier", (None, None))[0],
            review_reasons=sorted(self.reasons),
        )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _unique(evidence: list[Evidence]) -> list[Evidence]:
    seen, out = set(), []
    for item in evidence:
        key = (item.field, item.page_number, item.start, item.end)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _ranges_text(numbers: Sequence[int]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in page_ranges(numbers))


# An answered window: its drafts, each tagged "continues" (merge into the carried-forward
# encounter) or "new", and whether the last one runs on past the window.
Answered = tuple[list[tuple[str, Draft]], bool]


def read_windows(
    doc: Document, pages_per_window: int, ask: Callable[[list[int], Draft | None], Answered]
) -> tuple[list[Draft], int]:
    """Every window asked in page order (``ask(window, carried)``); the drafts in page order and
    the number of windows answered. A window with nothing readable is not asked: the hand-off
    carries over the gap."""
    drafts: list[Draft] = []
    windows = collections.deque(
        doc.numbers[i : i + pages_per_window] for i in range(0, len(doc.numbers), pages_per_window)
    )
    carried: Draft | None = None
    window_count = 0
    while windows:
        window = windows.popleft()
        if not any(n in doc.readable for n in window):
            continue  # nothing to read: no call, and the hand-off carries over the gap
        try:
            answer = ask(window, carried)
        except TooLong:
            if len(window) == 1:
                raise ModelAnswerInvalidError("a single page does not fit the model's answer or context") from None
            half = len(window) // 2
            windows.extendleft([window[half:], window[:half]])
            logger.info("window split", extra={"first_page": window[0], "last_page": window[-1]})
            continue
        window_count += 1
        found, open_after = answer
        for role, draft in found:
            if role == "continues" and carried is not None:
                carried.merge(draft)
            else:
                drafts.append(draft)
        last = max(drafts, key=lambda d: max(d.pages)) if drafts else None
        if last is not None:
            last.open = open_after
        carried = last
    drafts.sort(key=lambda d: min(d.pages))
    return drafts, window_count


def check(
    answer: WindowAnswer, window: Sequence[int], doc: Document, carried: Draft | None
) -> tuple[list[Draft], int, int | None]:
    """The window's drafts, repaired; the number of repairs; the index of the continuing draft.

    Raises ``BadAnswer`` when the answer is not about this window's pages at all.
    """
    in_window = set(window)
    readable = [n for n in window if n in doc.readable]
    claimed: dict[int, int] = {}
    stray = 0
    pages_of: list[set[int]] = []
    for index, enc in enumerate(answer.encounters):
        pages: set[int] = set()
        for r in enc.page_ranges:
            first, last = sorted((r.first_page, r.last_page))
            for n in range(first, min(last, first + 10_000) + 1):
                if n not in in_window:
                    stray += 1
                elif n in doc.readable and n not in claimed:
                    claimed[n] = index
                    pages.add(n)
        pages_of.append(pages)
    said_unassigned = {n for n in answer.unassigned_pages if n in in_window}
    covered = set(claimed) | (said_unassigned & set(readable))
    if readable and (len(covered) * 2 < len(readable) or stray > len(covered)):
        raise BadAnswer(
            f"the answer does not account for this window's pages: use absolute page numbers "
            f"{window[0]} to {window[-1]} and put every page in one encounter or in unassigned_pages"
        )

    repairs = 0
    for n in readable:
        if n in claimed or n in said_unassigned:
            continue
        # A page the model skipped: most often the continuation of the page before it.
        before = [claimed[m] for m in readable if m < n and m in claimed]
        after = [claimed[m] for m in readable if m > n and m in claimed]
        owner = before[-1] if before else (after[0] if after else None)
        if owner is not None:
            claimed[n] = owner
            pages_of[owner].add(n)
            repairs += 1

    drafts: list[Draft] = []
    continuing: int | None = None
    for enc, pages in zip(answer.encounters, pages_of, strict=True):
        if not pages:
            continue
        fields: dict[str, tuple[Any, Evidence | None]] = {}
        located: dict[str, Evidence] = {}
        for item in enc.evidence:
            if item.field in located or item.page_number not in in_window:
                continue
            span = locate(item.quote, doc.texts.get(item.page_number, ""))
            if span:
                located[item.field] = Evidence(
                    field=item.field, page_number=item.page_number, start=span[0], end=span[1]
                )
        start = grounded_date(parse_date(enc.date_start), located.get("date_start"), doc.texts)
        end_evidence = located.get("date_end")
        end = parse_date(enc.date_end)
        if end is not None and end_evidence is None and start is not None and end == start[0]:
            end = start  # a one-day encounter: the start's quote stands for both
        else:
            end = grounded_date(end, end_evidence, doc.texts)
        if start is not None:
            fields["date_start"] = start
        if end is not None:
            fields["date_end"] = (end[0], end[1] if end[1] and end[1].field == "date_end" else None)
        for name in ("provider", "facility"):
            value = getattr(enc, name)
            if value and value.strip():
                fields[name] = (" ".join(value.split())[:200], located.get(name))
        fields.update(patient_fields(enc, pages, located, doc.texts))
        confidence = enc.confidence if math.isfinite(enc.confidence) else 0.5
        drafts.append(
            Draft(
                encounter_type=enc.encounter_type,
                timing=enc.timing,
                pages=pages,
                confidence_pages=min(1.0, max(0.0, confidence)) * len(pages),
                fields=fields,
                type_evidence=located.get("encounter_type"),
                reasons=set(enc.review_reasons),
            )
        )
        first_readable = readable[0] if readable else None
        if carried is not None and continuing is None and enc.continues_open_encounter and first_readable in pages:
            continuing = len(drafts) - 1
    return drafts, repairs, continuing
