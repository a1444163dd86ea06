"""Pages into encounters: where one document ends and the next begins, and what each one is.

Each readable page is read once for its cues (``read_page``), then the pages are walked in
order and a page starts a new encounter (``boundary``) on the first of these that holds:

- strong: its patient banner conflicts with the encounter's (another patient's record, even
  mid-document); the page before was "Page N of N"; it is "Page 1 of N"; it is a first page
  (a title with a patient banner or letterhead); a title of another kind at its top; a
  salutation opening a letter; another facility's letterhead; a visit/admission/collection
  date outside the encounter's dates.
- weak: a letterhead after untitled pages; the section sequence starting again (the
  encounter's first heading heads this page too); a running footer that changes.

A page that says it continues ("Page 2 of 3", "continued") joins the current encounter unless
its banner shows another patient. Blank pages and fax cover sheets belong to no encounter.

An encounter then gets its type (first title, a salutation's letter, else keyword counts),
dates (``dates.py`` roles, from the pages' heads; a date equal to the patient's birth date never
counts, a bare "Date:" or a letterhead's date only on the encounter's first page), provider,
facility, the patient identity its banner shows, ``needs_review`` with reasons and a
confidence that falls with each reason, so that it ranks the encounters most likely wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterable

from shared.encounters import boundaries, cues, identity, review
from shared.encounters.boundaries import BoundaryModel
from shared.encounters.dates import START_ROLES, Date, birth_dates, page_dates
from shared.encounters.identity import Identity
from shared.encounters.review import CONFLICTING_IDENTITY, LOW_OCR, NO_DATE, WEAK_BOUNDARY
from shared.encounters.text import Found, Line, Span, lines_of
from shared.models import Encounter, EncounterType, Evidence, PageText, Timing, page_ranges

ET = EncounterType


@dataclasses.dataclass
class Page:
    number: int
    text: str
    lines: list[Line]
    title: tuple[EncounterType, Span] | None
    top_title: tuple[EncounterType, Span] | None  # a title in the page's first lines
    type_field: tuple[EncounterType, Span] | None  # the type a field of its head names ("Type: Office Visit")
    layout_titled: bool  # Textract's LAYOUT named the line of its title
    marker: tuple[int, int | None] | None
    continues: bool
    continues_next: bool
    salutation: bool
    dates: list[Date]
    providers: list[Found]
    facilities: list[Found]
    patient: Identity
    headings: list[str]
    footer: str | None
    ocr_confidence: float | None  # None for a text layer

    @property
    def letterhead_facility(self) -> str | None:
        return next((f.value for f in self.facilities if f.rank == 1), None)

    @property
    def anchor(self) -> dt.date | None:
        return next((d.value for d in self.dates if d.anchors and not self._is_dob(d) and self._heads(d)), None)

    def _heads(self, date: Date) -> bool:
        """A bare "Date:" or a lone date near the top says when a letter was written only on a
        page with a head (a title, a letterhead, a banner); on a page below a running header
        it is a line of the section the page before began."""
        return date.role not in _HEAD_ROLES or bool(self.title or self.letterhead_facility or _banner(self))

    @property
    def first_page(self) -> bool:
        """A document's first page: a title together with a patient banner or a letterhead."""
        if self.title is None:
            return False
        facility = self.letterhead_facility
        # A letterhead is the facility on a line of its own; a running header names it among other things.
        letterhead = facility is not None and bool(self.lines) and self.lines[0].text.strip(" .'‘’") == facility
        return _banner(self) or letterhead

    def _is_dob(self, date: Date) -> bool:
        return self.patient.dob is not None and date.value == self.patient.dob[0]

    # What boundaries.features compares a page by, read once a page (a page is compared with
    # the pages around it many times over)
    @functools.cached_property
    def normed(self) -> list[str]:
        """Each line as pages are compared (``boundaries.norm``)."""
        return [boundaries.norm(line.text) for line in self.lines]

    @functools.cached_property
    def form(self) -> list[tuple[str, str]]:
        """The labelled fields of the page's head (``boundaries.head_form``)."""
        return boundaries.head_form(self)

    @functools.cached_property
    def words(self) -> frozenset[str]:
        """The page's words of four letters or more, lower case (``boundaries.words_of``)."""
        return boundaries.words_of(self.text)


def read_page(page: PageText, month_first: bool | None) -> Page:
    text = page.text
    lines = lines_of(text)
    layout = cues.layout_of(page.layout, lines)  # Textract's LAYOUT, where the page has it
    title = cues.find_title(page.page_number, text, lines, cues.BANNER_TITLE_LINES, layout)
    born = birth_dates(text, lines, month_first)  # the dates the page says are a birth date
    return Page(
        number=page.page_number,
        text=text,
        lines=lines,
        title=title,
        top_title=cues.find_title(page.page_number, text, lines, cues.TITLE_LINES, layout),
        type_field=cues.type_field(page.page_number, text, lines),
        layout_titled=bool(title and any(ln.start <= title[1].start < ln.end for ln in layout.lines("title"))),
        marker=cues.page_marker(lines, layout),
        continues=any(cues.says_continued(line.text) for line in lines[: cues.LETTERHEAD_LINES])
        or any(cues.continued_line(line.text) for line in lines[: cues.TITLE_LINES]),
        continues_next=any(cues.CONTINUED_BOTTOM.search(line.text) for line in lines[-cues.LETTERHEAD_LINES :]),
        salutation=any(cues.SALUTATION.match(line.text) for line in lines[: cues.SALUTATION_LINES]),
        dates=page_dates(page.page_number, text, lines, month_first, title[1].start if title else None, born),
        providers=cues.providers_on(page.page_number, text, lines),
        facilities=cues.facilities_on(page.page_number, text, lines),
        patient=identity.read_identity(page.page_number, text, lines, month_first, born),
        headings=cues.section_headings(lines, layout),
        footer=cues.footer_signature(lines, layout),
        ocr_confidence=page.confidence if page.engine != "native" else None,
    )


def is_cover(page: PageText) -> bool:
    return cues.is_cover(lines_of(page.text))


@dataclasses.dataclass
class Group:
    pages: list[Page]
    opened_by: str = "first"  # "first", "strong" or "weak": the cue that started it
    closed_by: str = "end"  # the cue that started the next one ("end" for the last)

    @property
    def title(self) -> tuple[EncounterType, Span] | None:
        return next((p.title for p in self.pages if p.title), None)

    @property
    def letterhead_facility(self) -> str | None:
        return next((f for f in (p.letterhead_facility for p in self.pages) if f), None)

    @property
    def patient(self) -> Identity:
        found = Identity()
        for page in self.pages:
            found = found.merged(page.patient)
        return found

    def span(self) -> tuple[dt.date, dt.date | None] | None:
        """The dates the encounter covers so far; an open end for a stay not yet discharged."""
        dob = self.patient.dob[0] if self.patient.dob else None
        dates = [d for p in self.pages for d in p.dates if (d.anchors or d.role == "discharge") and d.value != dob]
        if not dates:
            return None
        values = [d.value for d in dates]
        title = self.title
        open_stay = title is not None and title[0] == ET.INPATIENT and not any(d.role == "discharge" for d in dates)
        return min(values), None if open_stay else max(values)


CERTAIN, STRONG, WEAK = "certain", "strong", "weak"  # a page count or a LAYOUT title; any other rule
_HEAD_ROLES = ("generic", "letterhead")  # dates that count only on the page that opens an encounter


def boundary(group: Group, page: Page) -> str | None:
    """Whether ``page`` starts a new encounter after ``group``: STRONG, WEAK, or None (it joins)."""
    last = group.pages[-1]
    if identity.cuts(group.patient, page.patient):
        return STRONG  # another patient's banner: never the same record, whatever the page numbers say
    if page.continues or last.continues_next:
        return None
    if last.marker and last.marker[1] and last.marker[0] >= last.marker[1]:
        return CERTAIN  # the page before was "Page N of N": its document ended there
    if page.marker:
        # "Page 1 of N" starts a document; "Page k of N" continues one.
        return CERTAIN if page.marker[0] == 1 else None
    if page.layout_titled and page.title and (group.title is None or page.title[0] != group.title[0]):
        return CERTAIN  # Textract's LAYOUT says this line is the page's title, of another kind
    if page.first_page:
        return STRONG  # a title with its banner or letterhead: a document's first page, even of the same kind
    if _banner(page) and _banner(group.pages[0]) and not _banner(last) and _banner_again(page, group.pages[0]):
        return STRONG  # a banner again after pages without one: printers that repeat it do so on every page
    if page.top_title and (group.title is None or page.top_title[0] != group.title[0]) \
            and not _running_header(group, page, page.top_title[1]):
        return STRONG
    if page.salutation:
        return STRONG  # "Dear Dr ..." near the top opens a letter
    facility, previous = page.letterhead_facility, group.letterhead_facility
    if facility and previous and not cues.same_facility(facility, previous):
        return STRONG
    anchor, span = page.anchor, group.span()
    if anchor and span:
        first, last_day = span
        if anchor < first or (last_day is not None and anchor > last_day):
            return STRONG
    if facility and previous is None and not group.title:
        return STRONG  # a letterhead after pages that had none (a form, an untitled note) is a new document
    first_heading = next((h for p in group.pages for h in p.headings), None)
    if first_heading and page.headings and page.headings[0] == first_heading:
        return WEAK  # the section sequence starts again
    if last.footer and page.footer and not cues.same_footer(last.footer, page.footer):
        return WEAK  # another running footer: another print job
    return None


def _running_header(group: Group, page: Page, title: Span) -> bool:
    """Whether the title sits in a running header naming the encounter's patient ("Name | MRN | Title").

    Such a header repeats the document's title on each later page; when OCR lost the title on
    the first page, it is no new document's title.
    """
    line = next((ln.text for ln in page.lines if ln.start <= title.start < ln.end), "")
    known = group.patient
    names = [v[0] for v in (known.name, known.identifier) if v]
    return any(len(name) >= 4 and name.lower() in line.lower() for name in names)


def _banner(page: Page) -> bool:
    return page.patient.banner


def _banner_again(page: Page, first: Page) -> bool:
    """Whether the page's banner is one printed again: read by OCR, the line that names the
    patient is a line of the document's first page's head (give or take OCR's misreadings). A
    document's closing block may list its patient again in other words (the CDA stylesheet's,
    read by OCR with its label on the value's line: "Patient Legal: ..., search: ..."), and
    no printer repeats it on a page of its own."""
    if page.ocr_confidence is None or page.patient.name is None:
        return True
    at = page.patient.name[1].start
    line = next((ln.text for ln in page.lines if ln.start <= at <= ln.end), "")
    return boundaries.held(boundaries.norm(line), first.normed[:identity.BANNER_LINES])


def group_pages(pages: Iterable[Page], model: BoundaryModel | None = None, mode: str = "hybrid") -> list[Group]:
    """The pages in order, cut where ``boundaries.decide`` says a page starts a document."""
    pages = list(pages)
    model = model or boundaries.shipped()
    groups: list[Group] = []
    for page in pages:
        if not groups:
            groups.append(Group([page], opened_by="first"))
            continue
        rule = boundary(groups[-1], page)
        x = boundaries.features(groups[-1], page, groups[-2] if len(groups) > 1 else None)
        cut, p = boundaries.decide(x, rule, model, mode)
        if not cut:
            groups[-1].pages.append(page)
            continue
        # A cut on a weak cue, or one the model is not sure of, is flagged for review.
        strength = STRONG if rule == CERTAIN or (rule != WEAK and p >= boundaries.STRONG) else WEAK
        groups[-1].closed_by = strength
        groups.append(Group([page], opened_by=strength))
    return groups


def _classify(group: Group) -> tuple[EncounterType, Span | None, bool]:
    title = group.title
    if title:
        return title[0], title[1], True
    named = group.pages[0].type_field
    if named:
        return named[0], named[1], True  # the record's own field says what the encounter was
    # An untitled page that opens "Dear Dr ..." is a letter between clinicians, whatever it
    # mentions (a referral names the clinic, the ED visit and the admission it is about).
    first = group.pages[0]
    salutation = cues.SALUTATION.search(first.text)
    if salutation:
        return ET.REFERRAL, Span(first.number, salutation.start(), salutation.end()), False
    best: tuple[int, int] = (0, 0)
    result: tuple[EncounterType, Span | None] = (ET.OTHER, None)
    for order, (kind, pattern) in enumerate(cues.KEYWORDS):
        hits = [(p.number, m) for p in group.pages for m in pattern.finditer(p.text)]
        if hits and (len(hits), -order) > best:
            best = (len(hits), -order)
            page, m = hits[0]
            result = (kind, Span(page, m.start(), m.end()))
    return result[0], result[1], False


def _pick_dates(group: Group, born: frozenset[dt.date]) -> tuple[Date | None, Date | None, Timing]:
    """The encounter's start and end; never a birth date that a banner of the file prints, this
    group's or another's (a page whose banner OCR garbled still prints its patient's)."""
    dates = [d for p in group.pages for d in p.dates if d.value not in born]
    if group.title and group.title[0] == ET.OTHER:
        dates = [d for d in dates if d.role != "documented"]  # a summary's span of care is no encounter's
    first_page = group.pages[0].number
    start = None
    for role in START_ROLES:
        candidates = [d for d in dates if d.role == role and (role not in _HEAD_ROLES or d.span.page == first_page)]
        if candidates:
            start = candidates[0]
            break
    end_role = "documented" if start is not None and start.role == "documented" else "discharge"
    discharges = [d for d in dates if d.role == end_role and (start is None or d.value >= start.value)]
    end = max(discharges, key=lambda d: d.value) if discharges else None
    if start is None:
        planned = [d for d in dates if d.role == "planned"]
        if not end and planned and _appointment_letter(group):
            return planned[0], None, Timing.PLANNED
        return None, end, Timing.HAPPENED  # a discharge date alone: the end is known, the start is not
    if end is None and start.role == "visit":
        end = start  # a visit is one day
    return start, end, Timing.HAPPENED


def _appointment_letter(group: Group) -> bool:
    """A letter booking a visit, not a note that names its follow-up ("Next appointment: ...")."""
    title = group.title
    if title is not None:
        page = next(p for p in group.pages if p.number == title[1].page)
        return bool(cues.APPOINTMENT.search(page.text[title[1].start : title[1].end]))
    return any(cues.APPOINTMENT.search(p.text) for p in group.pages)


def _best(found: Iterable[Found]) -> Found | None:
    ordered = sorted(found, key=lambda f: (f.rank, f.span.page, f.span.start))
    return ordered[0] if ordered else None


def reasons_for(group: Group, start: Date | None, end: Date | None, conflict: bool) -> list[str]:
    """Why a person should look at this encounter (empty when nothing stands out)."""
    reasons = []
    if start is None and end is None:
        reasons.append(NO_DATE)
    if conflict:
        reasons.append(CONFLICTING_IDENTITY)
    if WEAK in (group.opened_by, group.closed_by):
        reasons.append(WEAK_BOUNDARY)
    low = [p for p in group.pages if p.ocr_confidence is not None and p.ocr_confidence < review.LOW_OCR_CONFIDENCE]
    if low:
        reasons.append(LOW_OCR)
    return reasons


def encounter(group: Group, conflict: bool, born: frozenset[dt.date]) -> Encounter:
    """The encounter ``group``'s pages hold; ``born``: the birth dates the whole file prints."""
    kind, kind_span, titled = _classify(group)
    start, end, timing = _pick_dates(group, born)
    provider = _best(f for p in group.pages for f in p.providers)
    facility = _best(f for p in group.pages for f in p.facilities)
    patient = group.patient

    evidence: list[Evidence] = []
    for field, span in (
        ("date_start", start.span if start else None),
        ("date_end", end.span if end else None),
        ("provider", provider.span if provider else None),
        ("facility", facility.span if facility else None),
        ("encounter_type", kind_span),
        ("patient_name", patient.name[1] if patient.name else None),
        ("patient_dob", patient.dob[1] if patient.dob else None),
        ("patient_identifier", patient.identifier[1] if patient.identifier else None),
    ):
        if span is not None:
            evidence.append(span.evidence(field))

    reasons = reasons_for(group, start, end, conflict)
    penalties = [*reasons, *([] if titled else ["untitled"]), *([] if patient else ["no_banner"])]

    return Encounter(
        encounter_type=kind,
        timing=timing,
        date_start=start.value if start else None,
        date_end=end.value if end else None,
        provider=provider.value if provider else None,
        facility=facility.value if facility else None,
        page_ranges=page_ranges([p.number for p in group.pages]),
        confidence=review.confidence(penalties),
        evidence=evidence,
        patient_name=patient.name[0] if patient.name else None,
        patient_dob=patient.dob[0] if patient.dob else None,
        patient_identifier=patient.identifier[0] if patient.identifier else None,
        needs_review=bool(reasons),
        review_reasons=reasons,
    )
