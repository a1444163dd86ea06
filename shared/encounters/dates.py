"""Dates on a page and what each is for: ISO, numeric and month-name forms, OCR-tolerant.

A date's role comes from its label: the nearest before it on its line, the line above for a
table read column-wise, or the header cell of its column in a "a | b | c" table. Admission ->
start, discharge -> end, visit/service/procedure/exam -> start and end, collected/reported ->
start, a bare "Date:" -> start; the second date of a range ("03/01/2013 - 03/05/2013") ends it.
Birth, printed, faxed, created, signed and previous-visit dates have roles that never make an
encounter date, and a fax transmission header's date is ignored. An unlabelled date counts
only in a page's letterhead, on a line of its own. Only a page's head is read: below its first
section heading (``body_start``) dates belong to what the sections list. No date found means no
date: nothing is guessed, and a numeric date that reads both ways in a file that does not show
its order (and no ``DATE_ORDER`` says it) is no date either.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence

from shared.encounters.text import Line, Span, heading_words

HEADER_LINES = 10  # unlabelled letterhead dates are looked for in this many first lines
LABEL_REACH = 50  # a label further than this many characters before a date is not its label

def digits(token: str) -> int:
    return int(token.translate(OCR_DIGITS))

OCR_DIGITS = str.maketrans("OoIl|", "00111")
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
class RawDate:
    start: int
    end: int
    kind: str  # "num" (day/month order to settle), "fixed"
    parts: tuple[int, int, int]  # num: (a, b, year); fixed: (year, month, day)
    order: str | None = None  # a month-name date's writing order: "dmy" (7 March 2023) or "mdy" (March 7, 2023)


def _year(token: str) -> int | None:
    year = digits(token)
    if len(token) == 2:
        # Two-digit years: 00-49 are 20xx, 50-99 are 19xx (fixed, so output never depends on today).
        return 2000 + year if year < 50 else 1900 + year
    return year


_ANY_DIGIT = re.compile(r"\d")


def raw_dates(text: str) -> list[RawDate]:
    """The dates written in ``text``, numeric or with a month's name, where they start and end.

    Every date holds a digit, and most of a page's lines hold none. A line is asked for its
    dates three or four times in a discovery (its page's dates, the birth dates, where the body
    starts, the identity), so the answer for a text is kept until ``forget_texts``."""
    if not _ANY_DIGIT.search(text):
        return []
    return list(_raw_dates(text))


def forget_texts() -> None:
    """Drop the texts ``raw_dates`` kept: a discovery ends with it, so that no page's text
    outlives the discovery that read it (a warm Lambda runs the next patient's)."""
    _raw_dates.cache_clear()


@functools.lru_cache(maxsize=4096)
def _raw_dates(text: str) -> tuple[RawDate, ...]:
    found: list[RawDate] = []
    for m in _NUM_DMY.finditer(text):
        if len(m.group(4)) == 2 and m.group(2) == ".":
            continue  # "3.5.24" is more often a number than a date
        if sum(c.isdigit() for c in m.group()) < 4:
            continue
        year = _year(m.group(4))
        if year is not None:
            found.append(RawDate(m.start(), m.end(), "num", (digits(m.group(1)), digits(m.group(3)), year)))
    for m in _NUM_YMD.finditer(text):
        if sum(c.isdigit() for c in m.group()) < 4:
            continue
        found.append(
            RawDate(m.start(), m.end(), "fixed", (digits(m.group(1)), digits(m.group(3)), digits(m.group(4))))
        )
    for m in _NAME_DMY.finditer(text):
        month = _MONTHS[m.group(2)[:3].lower()]
        found.append(RawDate(m.start(), m.end(), "fixed", (int(m.group(3)), month, int(m.group(1))), "dmy"))
    for m in _NAME_MDY.finditer(text):
        month = _MONTHS[m.group(1)[:3].lower()]
        found.append(RawDate(m.start(), m.end(), "fixed", (int(m.group(3)), month, int(m.group(2))), "mdy"))
    # Where patterns overlap keep the earliest, then longest, match.
    found.sort(key=lambda r: (r.start, -(r.end - r.start)))
    kept: list[RawDate] = []
    for raw in found:
        if kept and raw.start < kept[-1].end:
            continue
        kept.append(raw)
    return tuple(kept)


DATE_ORDERS = ("auto", "dmy", "mdy")


def month_first(raws: Iterable[RawDate], order: str = "auto") -> bool | None:
    """Whether numeric dates are month-first: as the deployment says (``mdy``, ``dmy``), or as
    the file shows it: its numeric dates (a 13-31 in one place only), else the order it writes
    month names in ("7 March 2023" is a day-first writer's, "March 7, 2023" a month-first
    one's). None when the file does not show it, or shows both."""
    if order != "auto":
        return order == "mdy"
    raws = list(raws)
    nums = [r.parts for r in raws if r.kind == "num"]
    day_first_seen = any(a > 12 for a, _, _ in nums)
    month_first_seen = any(b > 12 for _, b, _ in nums)
    if day_first_seen == month_first_seen and not day_first_seen:
        day_first_seen = any(r.order == "dmy" for r in raws)
        month_first_seen = any(r.order == "mdy" for r in raws)
    if day_first_seen == month_first_seen:
        return None
    return month_first_seen


def page_orders(texts: Sequence[str], order: str = "auto") -> list[bool | None]:
    """How each page's numeric dates read (``month_first``): as the page itself shows it, else
    as its file does (a file may pack records of systems that write dates either way)."""
    raws = [raw_dates(text) for text in texts]
    in_file = month_first((r for page in raws for r in page), order)
    return [in_file if own is None else own for own in (month_first(page, order) for page in raws)]


def to_date(raw: RawDate, month_first: bool | None) -> dt.date | None:
    """The date, or None for an impossible one and for 06/08/2020 when the order is unknown:
    reading it either way would be a guess."""
    if raw.kind == "num":
        a, b, year = raw.parts
        if a > 12 or b > 12:
            day, month = (a, b) if a > 12 else (b, a)
        elif a != b and month_first is None:
            return None
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
            r"\bupdated\b|(?:previous|prior|last)\s+(?:visit|admission|appointment|seen|review)|\bsince\b|\bonset\b|"
            r"\bcreated\b|\bsigned\b|\bsignature\b|\bauthored\b|\bexported\b|\brun\s+(?:date|on)\b",
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
            r"date\s*/\s*time|(?:date\s+of\s+)?(?:visit|service|consultation|consult|attendance|presentation|encounter|"
            r"examination|exam|study|procedure|operation|surgery)(?:\s+date)?(?:\s+on)?|"
            r"\bseen(?:\s+on)?|\barriv(?:al|ed)(?:\s+on)?|\bpresented(?:\s+on)?|\battended(?:\s+on)?",
            re.I,
        ),
    ),
    ("generic", re.compile(r"\bdated?\b", re.I)),
]
# "documented": the time a record says it documents ("Documentation Of ... Date/Time: from ... to
# ...", the CDA stylesheet's service event), taken when no encounter date is printed.
START_ROLES = ("admission", "visit", "collected", "reported", "documented", "generic", "letterhead")  # by preference
_ANCHOR_ROLES = frozenset({"admission", "visit", "collected", "reported"})


@dataclasses.dataclass(frozen=True)
class Date:
    value: dt.date
    role: str
    span: Span
    in_header: bool

    @property
    def anchors(self) -> bool:
        """Whether this date says when the encounter happened (a letter's "Date:" only in its letterhead)."""
        return self.role in _ANCHOR_ROLES or (self.role == "generic" and self.in_header)


# OCR reads "Previous" as "Prevlous" or "Prcvious" and "DOB" as "D0B": labels are matched with
# the letters it confuses folded together, in the page and in the patterns alike (one character
# for one, so positions hold).
_FOLD = str.maketrans("iIl1!eE0O", "lllllccoo")
_FOLDED = [(role, re.compile(pattern.pattern.translate(str.maketrans("iIeE", "llcc")), pattern.flags))
           for role, pattern in _ROLES]


def _label(segment: str) -> tuple[str, int, int] | None:
    """The label nearest the end of ``segment``: its role, start and end."""
    folded = segment.translate(_FOLD)
    best: tuple[int, int, int] | None = None
    found = None
    for order, (role, pattern) in enumerate(_FOLDED):
        for m in pattern.finditer(folded):
            key = (m.end(), m.end() - m.start(), -order)
            if best is None or key > best:
                best, found = key, (role, m.start(), m.end())
    return found


def label_role(segment: str) -> str | None:
    found = _label(segment)
    return found[0] if found else None


# A field's label sits at the start of its line or cell, or right after the previous field's
# date ("Admission date: ...    Discharge date: ..."), and only punctuation parts it from its date.
# The same words inside a sentence ("she was seen in the ED on ...", "scheduled to have surgery
# on ...") tell the patient's history or plan, not when this encounter happened.
# One short word may sit between: what OCR made of "date" ("Visit dafe:"); and the marks OCR
# reads a form's rule or a speck as ("Date Collected: _ \"2021-04-07").
_GAP_MARK = r"[\s:;,.\-–=#()_~\"'‘’“”«»*•]"
_LABEL_GAP = re.compile(rf"^{_GAP_MARK}*(?:[A-Za-z]{{1,4}}{_GAP_MARK}*)?(?:from\s*)?$", re.I)
_LABEL_WORDS = frozenset({"date", "time", "and", "of", "the", "on", "at"})  # words a label may start with


def _is_field(segment: str, label: tuple[str, int, int], after_date: bool) -> bool:
    _, start, end = label
    if not _LABEL_GAP.match(re.sub(r"^\w+", "", segment[end:])):  # "Discharge" of "Discharged:" ends mid-word
        return False
    # What precedes the label in its own field: fields part at wide spaces, cells, or a comma
    # ("ID: 9937012, Type: Office visit, Date/Time: ...", as the CDA stylesheet lists them).
    head = re.split(r"\s{2,}|\t|\||,\s", segment[:start])[-1]
    words = [w for w in re.findall(r"[A-Za-z]+", head) if w.lower() not in _LABEL_WORDS]
    return not words if after_date else len(words) <= 1


# A fax machine's transmission line: "06/01/2019 14:22 FROM: (217) 555-0142 TO: ... P. 2/4".
_FAX_LINE = re.compile(r"\bfrom\b[^\n]*\bto\b|\bfax\b|\bP\.\s?\d+\s?/\s?\d+", re.I)
_CELL = re.compile(r"[^|]+")
# "from ... to ...": what may part the two dates (the first one's time and zone among it).
_RANGE = re.compile(
    r"^[\s,]*(?:\d{1,2}:\d{2}(?::\d{2})?\s*(?:[AP]\.?M\.?)?\s*(?:[-+]\d{4}|[A-Z]{2,4})?\s*)?"
    r"(?:-|–|to|until|through|thru)\s*$",
    re.I,
)


def _column_role(lines: Sequence[Line], index: int, offset: int) -> str | None:
    """In a "a | b | c" table, the role its header row names for the column at ``offset``."""
    line = lines[index]
    if index == 0 or not _ROW.search(line.text):
        return None  # no table: a stray "|" OCR read before a line has cells on one side only
    cells = [m.span() for m in _CELL.finditer(line.text)]
    column = next((i for i, (a, b) in enumerate(cells) if a <= offset < b), None)
    header = [m.group() for m in _CELL.finditer(lines[index - 1].text)]
    if column is None or len(header) != len(cells) or raw_dates(lines[index - 1].text):
        return None
    return label_role(header[column]) or "column"


_PROSE = "prose"  # a role's words inside a sentence: no role at all
# A label's last short word that OCR wrapped onto the date's line, its first words ending the
# line above ("Authored" over "On: July 14, 2022").
_WRAPPED_LABEL = re.compile(r"^\W*[A-Za-z]{1,3}\s*:\s*$")


def _date_role(text: str, lines: Sequence[Line], index: int, start: int, floor: int) -> str | None:
    line = lines[index]
    column = _column_role(lines, index, start - line.start)
    if column is not None:
        return None if column == "column" else column
    segment = text[max(line.start, floor, start - LABEL_REACH) : start]
    label = _label(segment)
    role = label[0] if label else None
    if label is None and index > 0 and _WRAPPED_LABEL.match(segment):
        return label_role(lines[index - 1].text[-30:])  # "... Authored" over "On: July 14, 2022"
    # A letter tells its appointment in a sentence ("your appointment is booked for ...").
    if label and role not in ("dob", "ignore", "planned") and not _is_field(segment, label, floor > line.start):
        return _PROSE
    if role is None and not re.search(r"\w", segment) and index > 0:
        # Tables read column-wise put the label on the line above the date.
        # The line above is a label when it says so (a colon, or the word "date"); a row of a
        # list read column-wise ("Annual Physical Exam" above a visit's date) is none.
        above = lines[index - 1]
        labelled = above.text.rstrip().endswith(":") or re.search(r"\bdate\b", above.text, re.I)
        if len(above.text) <= 40 and labelled and not raw_dates(above.text):
            role = label_role(above.text[-30:])
    return role


_NAME_BEFORE = re.compile(r"^\W*[A-Z][a-z'\-]+(?:\s+[A-Z][a-z'\-]+\.?){1,3}\s*$")


def _stands_alone(line: str, raw: RawDate) -> bool:
    """A letter's date sits on a line of its own, now and then with a place or a weekday
    ("Springfield, 12 April 2024"); a date inside a sentence dates what the sentence tells,
    and one on a fax machine's transmission line when the page was sent, wherever OCR put it."""
    if _FAX_LINE.search(line):
        return False
    rest = line[: raw.start] + " " + line[raw.end :]
    if _NAME_BEFORE.match(line[: raw.start]) and not line[raw.end :].strip(" .,;:"):
        return False  # "Dennis Okafor 21/12/1942": a banner's name and birth date, not a letter's date
    return len(re.findall(r"[A-Za-z]{2,}", rest)) <= 3


_WORDS_BEFORE = re.compile(r"[A-Za-z]{2,}")


def _among_rows(lines: Sequence[Line], index: int, raw: RawDate) -> bool:
    """A row of a table whose rule OCR lost: the date follows words on its line, and so does
    one on the line above or below ("HbA1c Done 28/10/2024" over "Lipid Panel Done 28/10/2024",
    a list of tests or past visits); a letter's date has no such neighbour."""
    if not _WORDS_BEFORE.search(lines[index].text[: raw.start]):
        return False
    for other in (lines[i] for i in (index - 1, index + 1) if 0 <= i < len(lines)):
        dates = raw_dates(other.text)
        if dates and _WORDS_BEFORE.search(other.text[: dates[0].start]):
            return True
    return False


_BANNER_FIELD = re.compile(
    r"^\W*(?:patient|name|mrn|dob|d\.o\.b|date\s+of\s+birth|(?:medical\s+)?record|urn|nhs|id)\b[^:\n]{0,20}:", re.I
)
_ROW = re.compile(r"\w[^|]*\|\s*\w")  # cells on both sides: a stray "|" OCR adds to a line is none


def _is_heading(text: str) -> bool:
    """A section heading, with no value after a colon and no date label of its own
    ("ADMISSION DATE:" above its date is a field, read column-wise)."""
    if heading_words(text) is None or re.search(r":\s*\S", text):
        return False
    return not (re.search(r"\bdate\b", text, re.I) or (text.strip().endswith(":") and label_role(text)))


def body_start(lines: Sequence[Line], title_at: int | None = None) -> int | None:
    """Where the page's body begins: its first section heading below a patient field, a date
    or a table row (the banner, the service lines, a running header; a fax machine's line is
    none of them), the page's title excepted, or a heading with a paragraph under it before
    any of those (a page that opens inside the body). Other headings above them are a
    letterhead's. None: the page has no body heading.

    A document says when its encounter happened in its head; below a heading a date dates
    what the section lists (past encounters, results, procedures), and neither dates this
    encounter nor starts another."""
    fielded = False
    pending: int | None = None  # a heading above every field: a letterhead's, unless prose follows it
    for line in lines:
        if _is_heading(line.text) and not (title_at is not None and line.start <= title_at < line.end):
            if fielded:
                return line.start
            pending = line.start if pending is None else pending
            continue
        dated = bool(raw_dates(line.text)) and not _FAX_LINE.search(line.text)
        if dated or _BANNER_FIELD.match(line.text) or _ROW.search(line.text):
            fielded, pending = True, None
        elif pending is not None and _prose(line.text):
            return pending  # a page that opens inside the body: "PLAN" and its paragraph
    return None


def _prose(text: str) -> bool:
    words = re.findall(r"[A-Za-z]+", text)
    return len(words) >= 8 and sum(w[0].islower() for w in words) * 2 >= len(words)


# A title and the document's own time in parentheses after it ("Progress Note (March 29, 2005)").
_TITLE_BEFORE = re.compile(r"^[^\d():]{3,80}\(\s*$")
_TIME_AFTER = re.compile(r"^[^()]*\)\W*$")
_DOCUMENTATION_OF = re.compile(r"^\W*documentation\s+of\W*$", re.I)


def _documents(lines: Sequence[Line], index: int) -> bool:
    """Whether the line sits in a "Documentation Of" block (the line above heads it, or OCR read
    the heading onto the line)."""
    if re.match(r"^\W*documentation\s+of\b|^\W*care\s+provision\b", lines[index].text, re.I):
        return True  # "Care provision": how the CDA stylesheet names a document's service event
    return index > 0 and bool(_DOCUMENTATION_OF.match(lines[index - 1].text))


_CLOCK = re.compile(r"^[\s,]*(\d{1,2}):(\d{2})(?::\d{2})?\s*([AP])?\.?M?", re.I)
OVERNIGHT_HOURS = 12  # a stay that ends the next day, sooner than this after it began, is that day's visit


def _hour(text: str) -> float | None:
    m = _CLOCK.match(text)
    if not m:
        return None
    hour = int(m.group(1)) % 12 + (12 if (m.group(3) or "").upper() == "P" else 0) if m.group(3) else int(m.group(1))
    return hour + int(m.group(2)) / 60


def _overnight(previous: Date, value: dt.date, between: str, after: str) -> bool:
    """Whether "from <day> <time> to <next day> <time>" lasted less than OVERNIGHT_HOURS."""
    if value - previous.value != dt.timedelta(days=1):
        return False
    began, ended = _hour(between), _hour(after)
    return began is not None and ended is not None and 24 - began + ended < OVERNIGHT_HOURS


def birth_dates(text: str, lines: Sequence[Line], month_first: bool | None) -> set[dt.date]:
    """The dates the page says anywhere are a birth date ("DOB:", "born on ..."): the same date
    printed bare in a running header or under the name is the birth date too."""
    born = set()
    for index, line in enumerate(lines):
        for raw in raw_dates(line.text):
            start = line.start + raw.start
            segment = text[max(line.start, start - LABEL_REACH) : start]
            label = _label(segment)
            role = label[0] if label else None
            if role is None:
                role = _role_above(lines, index, line.text[: raw.start])
            if role == "dob":
                value = to_date(raw, month_first)
                if value is not None:
                    born.add(value)
    return born


_ABOVE_GAP = re.compile(r"^\W*(?:from\W*)?$", re.I)  # what may precede a date whose label ends the line above


def _role_above(lines: Sequence[Line], index: int, before: str) -> str | None:
    """The role that a label ending the line above ("Authored On:", "DOB:") gives a date that
    opens line ``index`` (``before``: the line's text before the date)."""
    if index == 0 or not _ABOVE_GAP.match(before) or not lines[index - 1].text.rstrip().endswith(":"):
        return None
    return label_role(lines[index - 1].text[-30:])


def page_dates(page: int, text: str, lines: Sequence[Line], month_first: bool | None,
               title_at: int | None = None, born: set[dt.date] | None = None) -> list[Date]:
    """The dates of a page's head that may say when an encounter happened, with their roles
    (``body_start``: none from below its first section heading); ``born``: the page's
    ``birth_dates``, where the caller has read them already."""
    out: list[Date] = []
    header_end = lines[min(HEADER_LINES, len(lines)) - 1].end if lines else 0
    born = birth_dates(text, lines, month_first) if born is None else born
    body = body_start(lines, title_at)
    if body is not None:
        lines = [line for line in lines if line.start < body]
    for index, line in enumerate(lines):
        if _FAX_LINE.search(line.text) and index < 2:
            continue  # when the page was faxed, not when the encounter was
        floor = line.start
        previous: Date | None = None
        for raw in raw_dates(line.text):
            start, end = line.start + raw.start, line.start + raw.end
            value = to_date(raw, month_first)
            ranged = previous is not None and bool(_RANGE.match(text[floor:start]))
            if ranged and value is not None and _overnight(previous, value, text[floor:start], line.text[raw.end :]):
                floor, previous = end, None
                continue  # "from June 8, 11:57PM to June 9, 00:28AM": a half-hour visit, on its first day
            if ranged and previous.role in ("admission", "visit"):
                role: str | None = "discharge"  # "from - to": the second date ends the encounter
            elif ranged and previous.role == "documented":
                role = "documented"
            else:
                role = _date_role(text, lines, index, start, floor)
                if role is None:
                    role = _role_above(lines, index, line.text[: raw.start])
                if role == "visit" and _documents(lines, index):
                    role = "documented"
            if _TITLE_BEFORE.match(line.text[: raw.start]) and _TIME_AFTER.match(line.text[raw.end :]):
                continue  # "Referral Note (September 21, 2013, 05:00AM)": when the document was made
            floor = end
            previous = None
            if value is None or role in ("dob", "ignore", _PROSE) or value in born:
                continue
            if _ROW.search(line.text) and role not in ("admission", "discharge"):
                continue  # a row of a table lists past events (results, encounters, plans), not this one
            in_header = start < header_end
            if role == "generic" and not in_header:
                continue  # "Date:" below the letterhead dates a result, a dose or a problem, not the visit
            if role is None:
                if not in_header or not _stands_alone(line.text, raw) or _among_rows(lines, index, raw):
                    continue  # an unlabelled date in the body, in a sentence or a table's row says nothing of the encounter
                role = "letterhead"
            previous = Date(value, role, Span(page, start, end), in_header)
            out.append(previous)
    return out


