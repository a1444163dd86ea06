"""The offline encounter provider: page-boundary cues, keywords and labelled dates.

``HeuristicEncounters`` needs no network and no model, and gives the same manifest for the
same page texts every time. It reads each page for cues, then walks the pages in order:

- A page starts a new encounter when it says so: "Page 1 of N" again (or the page before was
  "Page N of N"), a document title near its top ("DISCHARGE SUMMARY", "Pathology Report",
  ...) of another kind than the current encounter's, a salutation ("Dear Dr ...") opening a
  letter, a different facility in its letterhead (or a letterhead after untitled pages that
  had none), or a visit/admission/collection date outside the current encounter's dates. A page that says it continues ("Page 2 of 3",
  "continued", or the page before ended "continued over") always joins the current
  encounter, whatever else it shows; so does a page with no cue at all.
- Blank pages (fewer than three words of three letters or more, e.g. an empty back side or
  unreadable OCR) belong to no encounter: their manifest assignment is None. They do not
  break the encounter around them, whose page ranges then skip them ([[1, 1], [3, 4]]).
- The type comes from the first title found, else a referral letter when the first page
  opens "Dear Dr ...", else from counting keywords; OTHER when
  nothing matches, so any readable page lands in some encounter.
- Dates are read in ISO, numeric (day-first unless the document's own numeric dates show it
  is month-first) and month-name forms, with tolerance for spaces and O/0, l/1 confusions
  inside numeric dates, and must be real calendar dates between 1900 and 2099. A date's role
  comes from the label nearest before it on its line (or the line above, for tables):
  admission -> start, discharge -> end, visit/service/arrival/procedure -> start and end,
  collected or reported -> start, a bare "Date:" -> start. Birth dates, printed/faxed/
  previous-visit dates are ignored, and so are unlabelled dates outside the letterhead. No
  date found means no date: nothing is guessed.
- Timing is HAPPENED, or PLANNED when the only dates are future-appointment dates in a
  text that speaks of an appointment.

Each encounter carries evidence (page and character span in that page's text) for the
fields it sets, and a confidence that grows with the number of cues that agreed. Page text
never leaves this module except as those fields; nothing here logs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
from collections.abc import Iterable, Sequence

from shared.models import Discovery, Encounter, EncounterType, Evidence, PageText, Timing, page_ranges
from shared.ports import EncounterProvider

HEADER_LINES = 10  # unlabelled letterhead dates are looked for in this many first lines
TITLE_LINES = 8  # a document title sits in the letterhead, within this many first lines
LETTERHEAD_LINES = 4  # a facility change or a page marker must be this close to an edge
LABEL_REACH = 50  # a label further than this many characters before a date is not its label
SALUTATION_LINES = 16  # "Dear Dr ..." within this many first lines opens a letter
MIN_WORDS = 3  # fewer words of 3+ letters than this: a blank page

# --- page text helpers -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Line:
    start: int
    end: int
    text: str


def _lines(text: str) -> list[_Line]:
    return [_Line(m.start(), m.end(), m.group()) for m in re.finditer(r"[^\r\n]+", text) if m.group().strip()]


def _is_blank(text: str) -> bool:
    return len(re.findall(r"[A-Za-z]{3,}", text)) < MIN_WORDS


@dataclasses.dataclass(frozen=True)
class _Span:
    page: int
    start: int
    end: int

    def evidence(self, field: str) -> Evidence:
        return Evidence(field=field, page_number=self.page, start=self.start, end=self.end)


@dataclasses.dataclass(frozen=True)
class _Found:
    """A value read from a page, ranked: lower ranks are better-labelled."""

    value: str
    span: _Span
    rank: int


# --- titles and keywords -------------------------------------------------------------------

_ET = EncounterType

# Ordered: the first pattern that matches a title line decides, so "Emergency Department
# Discharge Letter" is an emergency visit, not an inpatient stay.
_TITLES: list[tuple[EncounterType, re.Pattern[str]]] = [
    (
        _ET.EMERGENCY,
        re.compile(
            r"emergency\s+(?:department|dept\b)|accident\s+(?:and|&)\s+emergency|(?-i:\bED\b)\s+"
            r"(?:discharge|attendance|presentation|note|summary)|emergency\s+(?:discharge|attendance|record)",
            re.I,
        ),
    ),
    (
        _ET.TELEHEALTH,
        re.compile(
            r"tele-?health|video\s+(?:consult|call|visit)|(?:tele)?phone\s+(?:consult|review|call)|virtual\s+(?:visit|consult)",
            re.I,
        ),
    ),
    (
        _ET.INPATIENT,
        re.compile(
            r"discharge\s+summary|in-?patient|admission\s+(?:note|summary|record)|transfer\s+summary|hospital\s+discharge",
            re.I,
        ),
    ),
    (
        _ET.PROCEDURE,
        re.compile(
            r"operation\s+(?:note|report|record)|operative\s+(?:note|report)|procedure\s+(?:note|report)|"
            r"surgical\s+(?:note|report)|(?:endoscopy|colonoscopy|gastroscopy)\s+report|anaesthetic\s+record",
            re.I,
        ),
    ),
    (
        _ET.LAB,
        re.compile(
            r"pathology\s+report|laboratory\s+report|lab(?:oratory)?\s+results?|blood\s+tests?\s+results?|"
            r"histopathology|cytology\s+report|microbiology\s+report|test\s+results",
            re.I,
        ),
    ),
    (
        _ET.IMAGING,
        re.compile(
            r"radiology\s+report|imaging\s+report|diagnostic\s+imaging|x-?\s?ray|(?-i:\bCT\b)|(?-i:\bMRI\b)|"
            r"ultrasound|mammogra\w*",
            re.I,
        ),
    ),
    (
        _ET.MEDICATION_LIST,
        re.compile(
            r"medication\s+(?:list|summary|chart|profile)|list\s+of\s+(?:current\s+)?medications|medicines\s+list", re.I
        ),
    ),
    (
        _ET.REFERRAL,
        re.compile(r"referral|letter\s+of\s+referral|letter\s+to\s+(?:the\s+|your\s+)?(?:GP|doctor|Dr\b)", re.I),
    ),
    (
        _ET.ADMINISTRATIVE,
        re.compile(
            r"(?:registration|consent|claim|enrol?ment|request|authori[sz]ation)\s+form|insurance\s+(?:claim|form|letter)|"
            r"patient\s+(?:details|information)\s+form|change\s+of\s+(?:address|details)|release\s+of\s+information",
            re.I,
        ),
    ),
    (
        _ET.OUTPATIENT,
        re.compile(
            r"clinic\s+(?:visit|note|letter|consultation|review)|out-?patient|consultation|(?-i:\bGP\b)|"
            r"progress\s+note|office\s+visit|follow-?\s?up\s+(?:visit|note)|visit\s+note|general\s+practice|"
            r"appointment\s+(?:letter|confirmation|reminder)",
            re.I,
        ),
    ),
]

# Counted over an encounter's text when no page has a title; ties go to the earlier type.
_KEYWORDS: list[tuple[EncounterType, re.Pattern[str]]] = [
    (_ET.EMERGENCY, re.compile(r"\bemergency\b|(?-i:\bED\b)|\btriage\b", re.I)),
    (_ET.TELEHEALTH, re.compile(r"tele-?health|video\s+(?:call|consult)|(?:tele)?phone\s+consult", re.I)),
    (
        _ET.INPATIENT,
        re.compile(r"\badmitted\b|\badmission\b|\bdischarged?\b|in-?patient|\bward\b|length\s+of\s+stay", re.I),
    ),
    (_ET.PROCEDURE, re.compile(r"\boperation\b|\bprocedure\b|anaesthe|anesthe|incision", re.I)),
    (_ET.LAB, re.compile(r"pathology|laborator|specimen|\bcollected\b|reference\s+range|\bresults?\b", re.I)),
    (_ET.IMAGING, re.compile(r"radiology|x-?\s?ray|(?-i:\bCT\b)|(?-i:\bMRI\b)|ultrasound|sonograph", re.I)),
    (_ET.MEDICATION_LIST, re.compile(r"medication\s+list", re.I)),
    (_ET.REFERRAL, re.compile(r"referral|\brefer(?:red)?\b|\bdear\s+dr\b", re.I)),
    (_ET.OUTPATIENT, re.compile(r"\bclinic\b|(?-i:\bGP\b)|consultation|\bvisit\b|follow-?\s?up|out-?patient", re.I)),
]

# OCR leaves specks before a line, hence the punctuation allowed before "Dear".
_SALUTATION = re.compile(r"^[ \t.,:;*'|\-]*dear\s+(?:dr\b|doctor\b|colleague|prof)", re.I | re.M)

_APPOINTMENT = re.compile(r"appointment|you\s+have\s+been\s+booked|please\s+attend|scheduled\s+for", re.I)


_ADDRESSEE = re.compile(r",\s*[A-Z][\w' ]*(?:Hospital|Clinic|Cent(?:re|er)|Practice|Surgery|Infirmary)\b")


def _is_title_line(text: str) -> bool:
    words = re.findall(r"[A-Za-z][A-Za-z'\-]*", text)
    if not words or _ADDRESSEE.search(text):
        return False  # "Cardiology Outpatients, Kingsbridge Hospital" addresses a letter, it is no title
    letters = "".join(words)
    return len(words) <= 6 or letters.isupper()


def _find_title(page: int, text: str, lines: Sequence[_Line]) -> tuple[EncounterType, _Span] | None:
    for line in lines[:TITLE_LINES]:
        if not _is_title_line(line.text):
            continue
        for kind, pattern in _TITLES:
            match = pattern.search(line.text)
            if match:
                return kind, _Span(page, line.start + match.start(), line.start + match.end())
    return None


# --- page markers --------------------------------------------------------------------------

_PAGE_OF = re.compile(r"\bpage[^\w\n]{0,3}([0-9Il]{1,3})(?:[^\w\n]{0,3}(?:of|/)[^\w\n]{0,3}([0-9Il]{1,3}))?\b", re.I)
_CONTINUED_TOP = re.compile(
    r"\(\s*cont(?:inued|'d|’d|d)?\.?\s*\)|continued\s+from|\bcont(?:'|’)d\b|\bcontinuation\b", re.I
)
_CONTINUED_WORD = re.compile(r"\bcontinued\b", re.I)
_CONTINUED_BOTTOM = re.compile(r"continued\s+(?:on|over|overleaf)|\bP\.?T\.?O\b|\boverleaf\b|see\s+over", re.I)
_FAX = re.compile(r"\bfax\b", re.I)


def _says_continued(line: str) -> bool:
    # A bare "continued" only in a short running header: "Metformin continued at 1 g bd" is not one.
    return bool(_CONTINUED_TOP.search(line)) or (bool(_CONTINUED_WORD.search(line)) and _is_title_line(line))


def _digits(token: str) -> int:
    return int(token.translate(_OCR_DIGITS))


def _page_marker(lines: Sequence[_Line]) -> tuple[int, int | None] | None:
    # Fax headers count the pages of the transmission, not of the document.
    edges = [*lines[:LETTERHEAD_LINES], *lines[-LETTERHEAD_LINES:]]
    for line in edges:
        if _FAX.search(line.text):
            continue
        match = _PAGE_OF.search(line.text)
        if match:
            total = _digits(match.group(2)) if match.group(2) else None
            return _digits(match.group(1)), total
    return None


# --- dates ---------------------------------------------------------------------------------

_OCR_DIGITS = str.maketrans("OoIl|", "00111")
_D = r"[0-9OoIl]"
# A stray "-" that OCR puts before a date ("Visit date: -19/10/2023") is no part of a number.
_NUM_DMY = re.compile(
    rf"(?<![\w/.])(?<![\w/.]-)({_D}{{1,2}})[ \t]*([/.\-])[ \t]*({_D}{{1,2}})[ \t]*\2[ \t]*({_D}{{4}}|{_D}{{2}})(?![\w/]|\.\d)"
)
_NUM_YMD = re.compile(
    rf"(?<![\w/.])(?<![\w/.]-)({_D}{{4}})[ \t]*([/.\-])[ \t]*({_D}{{1,2}})[ \t]*\2[ \t]*({_D}{{1,2}})(?![\w/]|\.\d)"
)
_MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?"
)
_NAME_DMY = re.compile(rf"(?<![\w])(\d{{1,2}})(?:st|nd|rd|th)?[ \t\-./,]*{_MONTH}[ \t\-./,]*(\d{{4}})(?!\d)", re.I)
_NAME_MDY = re.compile(
    rf"(?<![A-Za-z]){_MONTH}[ \t\-./,]*(\d{{1,2}})(?:st|nd|rd|th)?\b[ \t,\-./]*(\d{{4}})(?!\d)", re.I
)
_MONTHS = {
    m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)
}


@dataclasses.dataclass(frozen=True)
class _RawDate:
    start: int
    end: int
    kind: str  # "num" (day/month order to settle), "fixed"
    parts: tuple[int, int, int]  # num: (a, b, year); fixed: (year, month, day)


def _year(token: str) -> int | None:
    year = _digits(token)
    if len(token) == 2:
        # Two-digit years: 00-49 are 20xx, 50-99 are 19xx (fixed, so output never depends on today).
        return 2000 + year if year < 50 else 1900 + year
    return year


def _raw_dates(text: str) -> list[_RawDate]:
    found: list[_RawDate] = []
    for m in _NUM_DMY.finditer(text):
        if len(m.group(4)) == 2 and m.group(2) == ".":
            continue  # "3.5.24" is more often a number than a date
        if sum(c.isdigit() for c in m.group()) < 4:
            continue
        year = _year(m.group(4))
        if year is not None:
            found.append(_RawDate(m.start(), m.end(), "num", (_digits(m.group(1)), _digits(m.group(3)), year)))
    for m in _NUM_YMD.finditer(text):
        if sum(c.isdigit() for c in m.group()) < 4:
            continue
        found.append(
            _RawDate(m.start(), m.end(), "fixed", (_digits(m.group(1)), _digits(m.group(3)), _digits(m.group(4))))
        )
    for m in _NAME_DMY.finditer(text):
        month = _MONTHS[m.group(2)[:3].lower()]
        found.append(_RawDate(m.start(), m.end(), "fixed", (int(m.group(3)), month, int(m.group(1)))))
    for m in _NAME_MDY.finditer(text):
        month = _MONTHS[m.group(1)[:3].lower()]
        found.append(_RawDate(m.start(), m.end(), "fixed", (int(m.group(3)), month, int(m.group(2)))))
    # Where patterns overlap keep the earliest, then longest, match.
    found.sort(key=lambda r: (r.start, -(r.end - r.start)))
    kept: list[_RawDate] = []
    for raw in found:
        if kept and raw.start < kept[-1].end:
            continue
        kept.append(raw)
    return kept


def _month_first(raws: Iterable[_RawDate]) -> bool:
    """Day-first unless the document's own numeric dates only ever fit month-first."""
    nums = [r.parts for r in raws if r.kind == "num"]
    day_first_seen = any(a > 12 for a, _, _ in nums)
    month_first_seen = any(b > 12 for _, b, _ in nums)
    return month_first_seen and not day_first_seen


def _to_date(raw: _RawDate, month_first: bool) -> dt.date | None:
    if raw.kind == "num":
        a, b, year = raw.parts
        if a > 12 or b > 12:
            day, month = (a, b) if a > 12 else (b, a)
        else:
            month, day = (a, b) if month_first else (b, a)
    else:
        year, month, day = raw.parts
    if not 1900 <= year <= 2099:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


# Roles, by what a date is used for. Listed most specific first: with two labels ending at
# the same place the longer wins, then the earlier in this list.
_ROLES: list[tuple[str, re.Pattern[str]]] = [
    ("dob", re.compile(r"date\s+of\s+birth|\bd\.?\s?o\.?\s?b\b\.?|birth\s*date|\bborn\b", re.I)),
    (
        "ignore",
        re.compile(
            r"\bprint(?:ed)?\b|\bfax(?:ed)?\b|\bgenerated\b|\breceived\b|\btyped\b|\bdictated\b|\btranscribed\b|"
            r"\bupdated\b|(?:previous|prior|last)\s+(?:visit|admission|appointment|seen|review)|\bsince\b|\bonset\b",
            re.I,
        ),
    ),
    (
        "planned",
        re.compile(
            r"next\s+(?:appointment|visit|review)|follow[\s-]*up\s+(?:appointment\s+)?(?:on|date|scheduled|booked)|"
            r"review\s+(?:on|date)|return\s+(?:on|visit)|scheduled(?:\s+for)?|booked(?:\s+for)?|"
            r"appointment(?:\s+date)?(?:\s+(?:on|is|for))?|\bdue(?:\s+(?:on|date))?|\brecall\b|please\s+attend(?:\s+on)?",
            re.I,
        ),
    ),
    ("admission", re.compile(r"(?:date\s+of\s+)?(?:admission|admitted|admit)(?:\s+date)?(?:\s+on)?", re.I)),
    ("discharge", re.compile(r"(?:date\s+of\s+)?(?:discharge|discharged)(?:\s+date)?(?:\s+on)?", re.I)),
    ("collected", re.compile(r"(?:date\s+of\s+)?collect(?:ed|ion)(?:\s+(?:date|on))?|specimen\s+(?:date|taken)", re.I)),
    (
        "reported",
        re.compile(
            r"(?:date\s+of\s+)?report(?:ed)?(?:\s+(?:date|on))?|\bauthori[sz]ed\b|\bverified\b|\bresulted\b", re.I
        ),
    ),
    (
        "visit",
        re.compile(
            r"(?:date\s+of\s+)?(?:visit|service|consultation|consult|attendance|presentation|encounter|"
            r"examination|exam|study|procedure|operation|surgery)(?:\s+date)?(?:\s+on)?|"
            r"\bseen(?:\s+on)?|\barriv(?:al|ed)(?:\s+on)?|\bpresented(?:\s+on)?|\battended(?:\s+on)?",
            re.I,
        ),
    ),
    ("generic", re.compile(r"\bdated?\b", re.I)),
]
_START_ROLES = ("admission", "visit", "collected", "reported", "generic", "letterhead")  # by preference
_ANCHOR_ROLES = frozenset({"admission", "visit", "collected", "reported"})


@dataclasses.dataclass(frozen=True)
class _Date:
    value: dt.date
    role: str
    span: _Span
    in_header: bool

    @property
    def anchors(self) -> bool:
        """Whether this date says when the encounter happened (a letter's "Date:" only in its letterhead)."""
        return self.role in _ANCHOR_ROLES or (self.role == "generic" and self.in_header)


def _label_role(segment: str) -> str | None:
    best: tuple[int, int, int] | None = None
    role_found = None
    for order, (role, pattern) in enumerate(_ROLES):
        for m in pattern.finditer(segment):
            key = (m.end(), m.end() - m.start(), -order)
            if best is None or key > best:
                best, role_found = key, role
    return role_found


def _date_role(text: str, lines: Sequence[_Line], index: int, start: int, floor: int) -> str | None:
    line = lines[index]
    segment = text[max(line.start, floor, start - LABEL_REACH) : start]
    role = _label_role(segment)
    if role is None and not re.search(r"\w", segment) and index > 0:
        # Tables read column-wise put the label on the line above the date.
        above = lines[index - 1]
        if len(above.text) <= 40 and not _raw_dates(above.text):
            role = _label_role(above.text[-30:])
    return role


def _page_dates(page: int, text: str, lines: Sequence[_Line], month_first: bool) -> list[_Date]:
    out: list[_Date] = []
    header_end = lines[min(HEADER_LINES, len(lines)) - 1].end if lines else 0
    for index, line in enumerate(lines):
        floor = line.start
        for raw in _raw_dates(line.text):
            start, end = line.start + raw.start, line.start + raw.end
            value = _to_date(raw, month_first)
            role = _date_role(text, lines, index, start, floor)
            floor = end
            if value is None or role in ("dob", "ignore"):
                continue
            in_header = start < header_end
            if role is None:
                if not in_header:
                    continue  # an unlabelled date in the body says nothing about the encounter
                role = "letterhead"
            out.append(_Date(value, role, _Span(page, start, end), in_header))
    return out


# --- provider and facility -------------------------------------------------------------------

_NAME = (
    r"(?P<name>(?:(?:Dr|DR|Doctor|Prof|Professor|A/Prof|Mr|Mrs|Ms|Miss)\.?[ \t]+)?"
    r"[A-Z][A-Za-z'\-]+(?:[ \t]+[A-Z]\.?(?![A-Za-z'\-]))?(?:[ \t]+[A-Z][A-Za-z'\-]+){0,2})"
)
_PROVIDER_LABELS = [
    (
        0,
        r"provider|attending(?:\s+(?:physician|doctor|consultant))?|clinician|seen\s+by|"
        r"treating\s+(?:doctor|clinician|physician|consultant)|consultant|physician|(?:operating\s+)?surgeon|"
        r"(?:reporting\s+)?(?:pathologist|radiologist)|referring\s+(?:doctor|gp|practitioner|clinician)|"
        r"(?:electronically\s+)?signed(?:\s+by)?|author|performed\s+by|reported\s+by|dictated\s+by|doctor",
    ),
    (2, r"requested\s+by|ordered\s+by|requesting\s+(?:doctor|clinician)"),
]
_PROVIDER_LABELLED = [
    (rank, re.compile(rf"(?i:\b(?P<label>{labels}))(?P<sep>[ \t]*[:\-]?[ \t]*){_NAME}"))
    for rank, labels in _PROVIDER_LABELS
]
_TITLED = re.compile(r"(?:Dr|DR|Doctor|Prof|Professor|A/Prof|Mr|Mrs|Ms|Miss)\b")
_DR = re.compile(rf"\b(?=(?:Dr|DR|Doctor|Prof|Professor)\b){_NAME}")
_SIGN_OFF = re.compile(
    r"yours\s+(?:sincerely|faithfully|truly)|kind\s+regards|best\s+regards|\bregards\b|sincerely", re.I
)
_RECIPIENT = re.compile(r"(?:\bdear|\bto:?|\bcc:?|\battn:?|referr?(?:ed|ing)?\s+to|refer\s+to|\bsee)\s*$", re.I)
_NAME_STOP = frozenset(
    "date page mrn dob ward phone fax facility clinic hospital patient general practitioner physician "
    "consultant report signed ref re urn".split()
)

_FACILITY_SUFFIX = (
    r"(?:Hospital|Medical[ \t.\-]*Cent(?:re|er)|Health[ \t.\-]*Cent(?:re|er)|Health[ \t]+Service|"
    r"Medical[ \t]+Practice|Family[ \t]+Practice|General[ \t]+Practice|Clinic|Pathology|Radiology|Imaging|"
    r"Infirmary|Laborator(?:y|ies)|Medical[ \t]+Group|Specialist[ \t]+Cent(?:re|er)|Surgery|Community[ \t]+Health)"
)
_FACILITY = re.compile(rf"(?<![\w])((?:[A-Z][\w'&.\-]*[ \t]+){{1,5}}(?=[A-Z])(?i:{_FACILITY_SUFFIX}))\b")
_FACILITY_LABELLED = re.compile(
    r"(?i:\b(?:facility|hospital|practice|institution|organi[sz]ation|laboratory|lab))[ \t]*:[ \t]*([A-Z][^\n|]{2,80})"
)
_FACILITY_LEAD = frozenset("the at from to dear re seen via of and in by fax patient".split())


def _trim_name(value: str, start: int) -> tuple[str, int, int] | None:
    words = list(re.finditer(r"\S+", value))
    while words and words[-1].group().rstrip(".,").lower() in _NAME_STOP:
        words.pop()
    titles = ("dr", "doctor", "prof", "professor", "a/prof", "mr", "mrs", "ms", "miss")
    if not words or (len(words) == 1 and words[0].group().rstrip(".").lower() in titles):
        return None
    end = words[-1].end()
    return value[:end], start, start + end


def _cut_at_next_label(value: str) -> str:
    # OCR joins columns with single spaces: "Riverside Clinic Clinician: Dr X".
    value = re.split(r"\s{2,}|\s+\S+:|[,;(]", value)[0]
    return value.strip(" .-")


def _providers(page: int, text: str, lines: Sequence[_Line]) -> list[_Found]:
    found: list[_Found] = []
    for rank, pattern in _PROVIDER_LABELLED:
        for m in pattern.finditer(text):
            name = m.group("name")
            labelled = ":" in m.group("sep") or "-" in m.group("sep") or m.group("label").lower().endswith("by")
            if not (labelled or _TITLED.match(name)):
                continue  # "Consultant Cardiologist" is a job title, not a label and a name
            if text[m.end("name") : m.end("name") + 1] == ":":
                continue  # "Clinician: Date:" style, the "name" is the next label
            trimmed = _trim_name(name, m.start("name"))
            if trimmed:
                found.append(_Found(trimmed[0], _Span(page, trimmed[1], trimmed[2]), rank))
    signed_after = None
    for line in lines:
        if _SIGN_OFF.search(line.text):
            signed_after = line.start
            break
    for m in _DR.finditer(text):
        if _RECIPIENT.search(text[max(0, m.start() - 20) : m.start()]):
            continue
        trimmed = _trim_name(m.group("name"), m.start("name"))
        if not trimmed:
            continue
        rank = 1 if signed_after is not None and m.start() > signed_after else 3
        found.append(_Found(trimmed[0], _Span(page, trimmed[1], trimmed[2]), rank))
    return found


def _facilities(page: int, text: str, lines: Sequence[_Line]) -> list[_Found]:
    found: list[_Found] = []
    for m in _FACILITY_LABELLED.finditer(text):
        value = _cut_at_next_label(m.group(1))
        if len(value) >= 3:
            found.append(_Found(value, _Span(page, m.start(1), m.start(1) + len(value)), 0))
    letterhead_end = lines[min(LETTERHEAD_LINES, len(lines)) - 1].end if lines else 0
    for m in _FACILITY.finditer(text):
        words = list(re.finditer(r"\S+", m.group(1)))
        while len(words) > 1 and words[0].group().rstrip(":.,").lower() in _FACILITY_LEAD:
            words.pop(0)
        start = m.start(1) + words[0].start()
        if _RECIPIENT.search(text[max(0, start - 20) : start]):
            continue
        value = text[start : m.end(1)]
        if len(words) < 2 and not re.search(r"\s", value):
            continue
        rank = 1 if start < letterhead_end else 2
        found.append(_Found(" ".join(value.split()), _Span(page, start, m.end(1)), rank))
    return found


def _same_facility(a: str, b: str) -> bool:
    def norm(value: str) -> str:
        return re.sub(r"[^a-z0-9]", "", value.lower())

    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio() >= 0.8


# --- pages and encounters ----------------------------------------------------------------------


@dataclasses.dataclass
class _Page:
    number: int
    text: str
    lines: list[_Line]
    title: tuple[EncounterType, _Span] | None
    marker: tuple[int, int | None] | None
    continues: bool
    continues_next: bool
    salutation: bool
    dates: list[_Date]
    providers: list[_Found]
    facilities: list[_Found]

    @property
    def letterhead_facility(self) -> str | None:
        return next((f.value for f in self.facilities if f.rank == 1), None)

    @property
    def anchor(self) -> dt.date | None:
        return next((d.value for d in self.dates if d.anchors), None)


def _read_page(page: PageText, month_first: bool) -> _Page:
    text = page.text
    lines = _lines(text)
    return _Page(
        number=page.page_number,
        text=text,
        lines=lines,
        title=_find_title(page.page_number, text, lines),
        marker=_page_marker(lines),
        continues=any(_says_continued(line.text) for line in lines[:LETTERHEAD_LINES]),
        continues_next=any(_CONTINUED_BOTTOM.search(line.text) for line in lines[-LETTERHEAD_LINES:]),
        salutation=any(_SALUTATION.match(line.text) for line in lines[:SALUTATION_LINES]),
        dates=_page_dates(page.page_number, text, lines, month_first),
        providers=_providers(page.page_number, text, lines),
        facilities=_facilities(page.page_number, text, lines),
    )


@dataclasses.dataclass
class _Group:
    pages: list[_Page]

    @property
    def title(self) -> tuple[EncounterType, _Span] | None:
        return next((p.title for p in self.pages if p.title), None)

    @property
    def letterhead_facility(self) -> str | None:
        return next((f for f in (p.letterhead_facility for p in self.pages) if f), None)

    def span(self) -> tuple[dt.date, dt.date | None] | None:
        """The dates the encounter covers so far; an open end for a stay not yet discharged."""
        dates = [d for p in self.pages for d in p.dates if d.anchors or d.role == "discharge"]
        if not dates:
            return None
        values = [d.value for d in dates]
        title = self.title
        open_stay = title is not None and title[0] == _ET.INPATIENT and not any(d.role == "discharge" for d in dates)
        return min(values), None if open_stay else max(values)


def _starts_new(group: _Group, page: _Page) -> bool:
    last = group.pages[-1]
    if page.continues or last.continues_next:
        return False
    if last.marker and last.marker[1] and last.marker[0] >= last.marker[1]:
        return True  # the page before was "Page N of N": its document ended there
    if page.marker:
        # "Page 1 of N" starts a document; "Page k of N" continues one.
        return page.marker[0] == 1
    if page.title and (group.title is None or page.title[0] != group.title[0]):
        return True
    if page.salutation:
        return True  # "Dear Dr ..." near the top opens a letter
    facility, previous = page.letterhead_facility, group.letterhead_facility
    if facility and previous and not _same_facility(facility, previous):
        return True
    if facility and previous is None and not group.title:
        return True  # a letterhead after pages that had none (a form, an untitled note) is a new document
    anchor, span = page.anchor, group.span()
    if anchor and span:
        first, last_day = span
        if anchor < first or (last_day is not None and anchor > last_day):
            return True
    return False


def _classify(group: _Group) -> tuple[EncounterType, _Span | None, bool]:
    title = group.title
    if title:
        return title[0], title[1], True
    # An untitled page that opens "Dear Dr ..." is a letter between clinicians, whatever it
    # mentions (a referral names the clinic, the ED visit and the admission it is about).
    first = group.pages[0]
    salutation = _SALUTATION.search(first.text)
    if salutation:
        return _ET.REFERRAL, _Span(first.number, salutation.start(), salutation.end()), False
    best: tuple[int, int] = (0, 0)
    result: tuple[EncounterType, _Span | None] = (_ET.OTHER, None)
    for order, (kind, pattern) in enumerate(_KEYWORDS):
        hits = [(p.number, m) for p in group.pages for m in pattern.finditer(p.text)]
        if hits and (len(hits), -order) > best:
            best = (len(hits), -order)
            page, m = hits[0]
            result = (kind, _Span(page, m.start(), m.end()))
    return result[0], result[1], False


def _pick_dates(group: _Group) -> tuple[_Date | None, _Date | None, Timing]:
    dates = [d for p in group.pages for d in p.dates]
    first_page = group.pages[0].number
    start = None
    for role in _START_ROLES:
        candidates = [d for d in dates if d.role == role and (role != "letterhead" or d.span.page == first_page)]
        if candidates:
            start = candidates[0]
            break
    discharges = [d for d in dates if d.role == "discharge" and (start is None or d.value >= start.value)]
    end = max(discharges, key=lambda d: d.value) if discharges else None
    if start is None:
        planned = [d for d in dates if d.role == "planned"]
        if not end and planned and any(_APPOINTMENT.search(p.text) for p in group.pages):
            return planned[0], None, Timing.PLANNED
        return None, end, Timing.HAPPENED  # a discharge date alone: the end is known, the start is not
    if end is None and start.role == "visit":
        end = start  # a visit is one day
    return start, end, Timing.HAPPENED


def _best(found: Iterable[_Found]) -> _Found | None:
    ordered = sorted(found, key=lambda f: (f.rank, f.span.page, f.span.start))
    return ordered[0] if ordered else None


def _encounter(group: _Group) -> Encounter:
    kind, kind_span, titled = _classify(group)
    start, end, timing = _pick_dates(group)
    provider = _best(f for p in group.pages for f in p.providers)
    facility = _best(f for p in group.pages for f in p.facilities)

    evidence: list[Evidence] = []
    if start:
        evidence.append(start.span.evidence("date_start"))
    if end:
        evidence.append(end.span.evidence("date_end"))
    if provider:
        evidence.append(provider.span.evidence("provider"))
    if facility:
        evidence.append(facility.span.evidence("facility"))
    if kind_span:
        evidence.append(kind_span.evidence("encounter_type"))

    marked = any(p.marker or p.continues for p in group.pages)
    cues = [
        titled,
        kind != _ET.OTHER,
        start is not None,
        end is not None,
        provider is not None,
        facility is not None,
        marked,
    ]
    confidence = min(0.95, 0.2 + 0.11 * sum(cues))

    return Encounter(
        encounter_type=kind,
        timing=timing,
        date_start=start.value if start else None,
        date_end=end.value if end else None,
        provider=provider.value if provider else None,
        facility=facility.value if facility else None,
        page_ranges=page_ranges([p.number for p in group.pages]),
        confidence=round(confidence, 2),
        evidence=evidence,
    )


class HeuristicEncounters(EncounterProvider):
    """Finds encounters offline from page-boundary cues, titles, keywords and labelled dates.

    Deterministic: the same pages give the same ``Discovery``. Blank pages are left out of
    every encounter (None in the manifest); any readable page is in exactly one encounter.
    """

    name = "heuristic"

    def discover(self, pages: list[PageText]) -> Discovery:
        unique: dict[int, PageText] = {}
        for page in sorted(pages, key=lambda p: p.page_number):
            unique.setdefault(page.page_number, page)
        readable = [p for p in unique.values() if not _is_blank(p.text)]
        month_first = _month_first(r for p in readable for r in _raw_dates(p.text))

        groups: list[_Group] = []
        for page in (_read_page(p, month_first) for p in readable):
            if groups and not _starts_new(groups[-1], page):
                groups[-1].pages.append(page)
            else:
                groups.append(_Group([page]))
        return Discovery(encounters=[_encounter(g) for g in groups], provider=self.name, model=None)
