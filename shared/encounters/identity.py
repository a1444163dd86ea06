"""Whose record a page is: the patient identity its banner shows, and when two conflict.

A banner is read from labels ("Patient:", "Name:", "DOB:", "MRN:", "Patient ID:" ...) on a
line, or from a "a | b | c" table whose header row names the columns. Each value keeps its
span, so a reviewer sees where it was read. Two identities conflict when an identifier, a
birth date or a name (allowing for OCR noise) is present in both and differs; a missing
field never conflicts. Nothing here logs: these are patient fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
from collections.abc import Iterable, Sequence

from shared.encounters.dates import RawDate, birth_dates, raw_dates, to_date
from shared.encounters.text import Line, Span

BANNER_LINES = 16  # a patient banner (or running header) sits within this many first lines

# A name's letters are any alphabet's ("Zoë Núñez"), its capitals Latin ones.
_UPPER, _LETTERS = "[A-ZÀ-ÖØ-Þ]", r"(?:[^\W\d_]|['\-])"
_NAME_VALUE = rf"(?P<value>{_UPPER}{_LETTERS}+(?:,?[ \t]+{_UPPER}(?:{_LETTERS}|\.)*){{1,3}})"
# "Legal:": the CDA stylesheet prints the patient's legal name under a "Patient" heading.
# OCR puts a stray mark or two between a label and its value ("Patient Name: : Pearl Szabo").
_MARKS = r"(?:[^\w\s]{1,2}[ \t]*){0,2}"
_NAME_LABEL = re.compile(
    rf"(?i:\b(?:patient(?:\s+name)?|name|pt|legal(?:\s+name)?)\b)[ \t]*:[ \t]*{_MARKS}{_NAME_VALUE}")
_ID_LABEL = re.compile(
    r"(?i:\b(?:mrn|m\.r\.n\.?|medical\s+record(?:\s+(?:number|no\.?|#))?|patient[\s\-]*id|record\s+(?:no|number)|"
    r"urn|nhs\s+(?:no|number)|chart\s+(?:no|number|#))\b)(?:[ \t]*[:#.]){0,2}[ \t]*"
    rf"{_MARKS}(?P<value>[A-Za-z0-9][A-Za-z0-9\-]{{2,40}})\b"
)
_DOB_LABEL = re.compile(r"(?i:date\s+of\s+birth|\bd\.?\s?o\.?\s?b\b\.?|birth\s*date|\bborn\b)[ \t]*:?[ \t]*")
# A label alone on its line ("Date of Birth", "DOB:"): a form whose text layer gives a column of
# labels, then a column of values below them.
_DOB_ALONE = re.compile(rf"^\W*(?:{_DOB_LABEL.pattern})\W*$")
COLUMN_LINES = 48  # such a form's labels reach this far down its first page
COLUMN_REACH = 8  # ... and its values sit within this many lines below their label
_ID_HEAD = re.compile(r"\bmrn\b|medical\s+record|patient[\s\-]*id|\bchart\b|\burn\b", re.I)
_NAME_HEAD = re.compile(r"patient|name")  # a banner table's name column (its heads are lower-cased)
_NAME_STOP = re.compile(r"\s{2,}|\s+(?:DOB|MRN|Sex|Age|Gender|ID|Date|D\.O\.B|Patient)\b|\s*\|", re.I)
# A word in capitals running into a capitalised one ("Lena MARSHPatient-ID:"): OCR lost the space
# between a family name printed in capitals and the label after it. A name's own capitals are
# never followed by a capitalised word in one run.
_RUN_ON = re.compile(rf"(?<={_UPPER}{_UPPER})(?={_UPPER}[a-zß-öø-ÿ])")
# A table's columns beside its "Name" column: "Name | Dates | Status", read by OCR as "Name : Dates
# Status", is a heading row, not a patient.
_COLUMN_HEADING = re.compile(
    r"\b(?:dates?|status|code|description|type|value|result|onset|start|stop|reaction|severity|"
    r"relationship|frequency|dose|route|quantity|units?)\b", re.I)


@dataclasses.dataclass(frozen=True)
class Identity:
    """The patient a page or an encounter shows; each field with the span it was read from."""

    name: tuple[str, Span] | None = None
    dob: tuple[dt.date, Span] | None = None
    identifier: tuple[str, Span] | None = None
    dob_below: bool = False  # the birth date was read in a column of values below its label
    # Where the name was read: a banner or a label ("label"), a running header's first cell
    # ("header": "Name | MRN ... | Title" on a document's later pages), the text ("text":
    # "Martha Collins is a 50-year-old", no label).
    name_from: str = "label"

    def __bool__(self) -> bool:
        return any((self.name, self.dob, self.identifier))

    @property
    def banner(self) -> bool:
        """Whether a patient banner shows it: the name with a birth date or an identifier on their
        labels' lines. A birth date in a column of values is a record's, not a banner's (the CDA
        stylesheet's closing block prints one under each document's last page)."""
        return self.name is not None and self.name_from == "label" \
            and ((self.dob is not None and not self.dob_below) or self.identifier is not None)

    @property
    def labelled(self) -> bool:
        """Whether any field was read beside its label, as banners print them."""
        return bool((self.name and self.name_from != "text") or self.identifier or (self.dob and not self.dob_below))

    def merged(self, other: Identity) -> Identity:
        """This identity with the fields it lacks taken from ``other``; a name on a label before
        one the text tells."""
        dob, below = (self.dob, self.dob_below) if self.dob else (other.dob, other.dob_below)
        told = self.name_from == "text" and other.name_from != "text"
        name, name_from = (other.name, other.name_from) if other.name and (not self.name or told) \
            else (self.name, self.name_from)
        return Identity(name, dob, self.identifier or other.identifier, below, name_from)


def _norm(value: str) -> str:
    # The letters OCR takes for digits and the other way round, as one ("JTG73736", "7673736").
    return re.sub(r"[^a-z0-9]", "", value.lower().translate(str.maketrans("oilszbgt", "01152867")))


def _name_key(value: str) -> str:
    # "Collins, Martha" and "Martha Collins" are one name.
    return " ".join(sorted(re.sub(r"[^a-z ]", " ", value.lower()).split()))


def _near(a: str, b: str) -> bool:
    """Equal, or one OCR slip apart (a character read wrong, dropped or added)."""
    return a == b or (abs(len(a) - len(b)) <= 1 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.85)


def _same_identifier(a: str, b: str) -> bool:
    """One identifier, read twice: equal but for an OCR slip, or cut short where its line wrapped
    ("c6335846-f3bf-8b5" of "c6335846-f3bf-8b5a-dbc8-...", eight characters at least give or
    take a slip), or only the line it wrapped to read (eight characters at least: "415c70102c00"
    of "69c18f19-...-415c70102c00")."""
    short, long_ = sorted((a, b), key=len)
    return _near(a, b) or (len(short) >= 3 and long_.startswith(short)) or (len(short) >= 8 and long_.endswith(short)) \
        or (len(short) >= 8 and _near(short, long_[: len(short)]))


def _slipped(a: str, b: str) -> bool:
    """Two digits at most read wrong in a number of eight characters or more (444-22-2222 read
    444-22-2200): one identifier, where one name goes with both."""
    return len(a) == len(b) >= 8 and sum(x != y for x, y in zip(a, b, strict=True)) <= 2


def _same_day(a: dt.date, b: dt.date) -> bool:
    # 05/01/2005 read day-first on one page and month-first on another is one date, and so is a
    # date OCR misread one digit of (1992-02-05 and 1992-02-08).
    slips = sum(x != y for x, y in zip(a.isoformat(), b.isoformat(), strict=True))
    return a == b or (a.year == b.year and a.month == b.day and a.day == b.month) or slips == 1


def conflicts(a: Identity, b: Identity) -> bool:
    """Whether two identities are two patients: a field both show differs beyond OCR noise; an
    identifier not where both show one name and one birth date (two systems' numbers for one
    patient, or a number misread); a name the text tells not where both show one identifier (a
    dictation may call the patient by another name; a banner's name is the record's own word and
    is still compared)."""
    if a.identifier and b.identifier:
        x, y = _norm(a.identifier[0]), _norm(b.identifier[0])
        named = bool(a.name and b.name and _same_name(a.name[0], b.name[0]))
        if not _same_identifier(x, y) and not (named and ((a.dob and b.dob and _same_day(a.dob[0], b.dob[0]))
                                                          or _slipped(x, y))):
            return True
    if a.dob and b.dob and not _same_day(a.dob[0], b.dob[0]):
        return True
    if not (a.name and b.name) or _same_name(a.name[0], b.name[0]):
        return False
    told = "text" in (a.name_from, b.name_from)
    return not (told and a.identifier and b.identifier)


def cuts(encounter: Identity, page: Identity) -> bool:
    """Whether ``page`` shows another patient than ``encounter``'s: ``conflicts``, but a name
    the page's text tells does not overrule the one a banner of the encounter printed (a
    transcript may name someone else; a later page's prose is no new banner)."""
    if page.name_from == "text" and encounter.name and encounter.name_from != "text":
        page = dataclasses.replace(page, name=None)
    return conflicts(encounter, page)


def _same_name(a: str, b: str) -> bool:
    """One name: alike, or every word of the shorter (two words at least) in the longer, give
    or take a letter ("Miriam Ray Castellano" in "Healthcare Miriam Ray Castellario": OCR ran a
    letterhead's word into it)."""
    x, y = _name_key(a), _name_key(b)
    if difflib.SequenceMatcher(None, x, y).ratio() >= 0.75:
        return True
    short, long_ = sorted((x.split(), y.split()), key=len)
    return (len(short) >= 2 and all(any(_alike(w, v) for v in long_) for w in short)) or _apart(a, b)


def _alike(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def _in_order(value: str) -> list[str]:
    # "Quinlan, Ida Mae" in the order "Ida Mae Quinlan" prints it
    family, _, given = value.lower().partition(",")
    return re.sub(r"[^a-z ]", " ", f"{given} {family}" if given.strip() else family).split()


def _apart(a: str, b: str) -> bool:
    """One name where each has words the other lacks, at other places in it: two words at least
    alike, in order, and none put where the other has a different word ("Healthcare Ida Quinlan":
    a letterhead's word OCR ran in; "Ida Mae Quinlan": her middle name. "Ida Rose Quinlan" is
    another)."""
    x, y = _in_order(a), _in_order(b)
    y = [next((w for w in x if _alike(w, v)), v) for v in y]  # a word read with a slip as the other's
    ops = difflib.SequenceMatcher(None, x, y, autojunk=False).get_opcodes()
    return sum(i2 - i1 for tag, i1, i2, _, _ in ops if tag == "equal") >= 2 and all(op[0] != "replace" for op in ops)


def distinct(identities: Iterable[Identity]) -> list[Identity]:
    """The different patients among these identities (each kept as first seen, filled in)."""
    people: list[Identity] = []
    for identity in identities:
        if not identity:
            continue
        for i, person in enumerate(people):
            if not conflicts(person, identity):
                people[i] = person.merged(identity)
                break
        else:
            people.append(identity)
    return people


def _date_at(text: str, start: int, month_first: bool | None) -> tuple[dt.date, int, int] | None:
    raws = raw_dates(text[start : start + 24])
    gap = text[start : start + raws[0].start] if raws else ""
    if not raws or len(gap) > 5 or (len(gap) > 2 and re.search(r"\w", gap)):
        return None  # the date right after its label, or after a stray mark or two OCR put there
    value = to_date(raws[0], month_first)
    return (value, start + raws[0].start, start + raws[0].end) if value else None


def read_identity(page: int, text: str, lines: Sequence[Line], month_first: bool | None,
                  born: set[dt.date] | None = None) -> Identity:
    """The patient banner of a page (its first lines), or an empty identity; ``born``: the
    page's ``birth_dates``, where the caller has read them already."""
    top = lines[:BANNER_LINES]
    if not top:
        return Identity()
    name = dob = identifier = None
    name_from = "label"
    for index, line in enumerate(top):
        if "|" in line.text and index + 1 < len(top):
            found = _from_table(page, line, top[index + 1], month_first)
            name, dob, identifier = name or found.name, dob or found.dob, identifier or found.identifier
            if found:
                continue
        if name is None:
            m = _NAME_LABEL.search(line.text)
            if m:
                value = _NAME_STOP.split(_RUN_ON.split(m.group("value"))[0])[0].strip(" ,.")
                if len(value.split()) >= 2 and not _COLUMN_HEADING.search(value):
                    at = line.start + m.start("value")
                    name = (value, Span(page, at, at + len(value)))
        if identifier is None:
            m = _ID_LABEL.search(line.text)
            if m and any(c.isdigit() for c in m.group("value")):
                identifier = (m.group("value"), Span(page, line.start + m.start("value"), line.start + m.end("value")))
                if name is None:
                    name = _header_name(page, line, m.start())
                    name_from = "header" if name else name_from
        if dob is None:
            m = _DOB_LABEL.search(line.text)
            if m:
                found_date = _date_at(line.text, m.end(), month_first)
                if found_date:
                    dob = (found_date[0], Span(page, line.start + found_date[1], line.start + found_date[2]))
    below = dob is None
    if dob is None:
        dob = _column_dob(page, text, lines, month_first)
    if name is None or (below and identifier is None):
        # no name on a label, or one whose birth date is only a column's value (a block of
        # demographics under the page's head): a bare banner above is the page's banner
        bare = _bare_banner(page, text, lines, month_first,
                            birth_dates(text, lines, month_first) if born is None else born)
        if bare is not None and (dob is None or bare.dob is None or bare.dob[0] == dob[0]) \
                and (name is None or _same_name(name[0], bare.name[0])):
            return Identity(bare.name, bare.dob, identifier)
    if name is None:
        told = _TOLD.search(text)
        if told:
            at = told.start("name")
            return Identity((told.group("name"), Span(page, at, told.end("name"))), dob, identifier,
                            below and dob is not None, "text")
    return Identity(name, dob, identifier, below and dob is not None, name_from)


# A note without a banner names its patient in its text: "Martha Collins is a 50-year-old
# female", "Theresa Anthony, born on 27/03/1936, is a 73-year-old".
_TOLD = re.compile(
    rf"(?<![\w.])(?!(?:The|This|That|Our|Your|Patient|Baby|He|She)\b)(?P<name>{_UPPER}{_LETTERS}+(?:[ \t]+{_UPPER}{_LETTERS}+){{1,2}})"
    r"(?:,[^,\n]{1,40},)?\s+is\s+an?\s+\d{1,3}[- ]years?[- ]old\b"
)


def _column_dob(page: int, text: str, lines: Sequence[Line],
                month_first: bool | None) -> tuple[dt.date, Span] | None:
    """The birth date of a form whose labels and values come in columns ("Date of Birth" alone on
    its line, "01/01/60" a few lines below): the first date opening a line below the label that
    is over a year older than the newest date the page prints elsewhere (not from the label down
    to that value), the report's. A label left blank reads the collection date below it: no
    birth date. A two-digit year after the report's date is of the century before ("10/21/34" on
    a 2016 report). A value that reads either way (08/11/86) on a page that shows no order gives
    none: the lines below it hold other values (an age in Y/M/D reads as a date too)."""
    for index, line in enumerate(lines[:COLUMN_LINES]):
        if not _DOB_ALONE.match(line.text):
            continue
        dated = [(raw.start, to_date(raw, month_first)) for raw in raw_dates(text)]  # only where a label stands alone
        for value_line in lines[index + 1 : index + 1 + COLUMN_REACH]:
            raws = raw_dates(value_line.text)
            if not raws or raws[0].start > 2:
                continue
            value = to_date(raws[0], month_first)
            if value is None and _either_way(raws[0]):
                return None  # the value under the label, in an order the page does not show
            if value is None:
                continue
            report = max((d for at, d in dated if d and not line.start <= at < value_line.end), default=None)
            if report is None:
                return None
            if value > report and re.search(r"\D\d\d$", value_line.text[: raws[0].end]):
                value = value.replace(year=value.year - 100) if (value.month, value.day) != (2, 29) else None
            if value is not None and (report - value).days > 366:
                return value, Span(page, value_line.start + raws[0].start, value_line.start + raws[0].end)
        return None
    return None


def _either_way(raw: RawDate) -> bool:
    """06/08/2020: a date read either way, and the page does not say which."""
    a, b, _ = raw.parts
    return raw.kind == "num" and a != b and a <= 12 and b <= 12


# A banner without labels: the patient's name and birth date on a line of their own, or on two
# lines, at the top ("Judith Ann Petrov 10/12/1959"). Taken only when the page says elsewhere
# that this date is a birth date ("born on 10/12/1959", "DOB: ..."): a title with a date is
# no name.
_BARE_NAME = re.compile(r"^\W*(?P<name>[A-Z][a-z'\-]+(?:[ \t]+[A-Z][a-z'\-]+\.?){1,3})\W*$")
# ... the name right before the birth date on its line, whatever OCR read before it ("a
# Healthcare ' = . Walter Abernathy 13/05/1996": a two-column head run together, with marks)
_NAME_ENDING = re.compile(r"(?<![\w'\-])(?P<name>[A-Z][a-z'\-]+(?:[ \t]+[A-Z][a-z'\-]+\.?){1,3})\W*$")
BARE_BANNER_LINES = 8


def _bare_banner(page: int, text: str, lines: Sequence[Line], month_first: bool | None,
                 born: set[dt.date]) -> Identity | None:
    if not born:
        return None
    lines = list(lines[:BARE_BANNER_LINES])
    for index, line in enumerate(lines):
        raws = raw_dates(line.text)
        head = line.text[: raws[0].start] if raws else line.text
        value = to_date(raws[0], month_first) if raws else None
        if raws and value not in born:
            continue
        m = _BARE_NAME.match(head) or (_NAME_ENDING.search(head) if value is not None else None)
        if not m:
            continue
        if value is None:  # the date on the next line
            following = lines[index + 1] if index + 1 < len(lines) else None
            nxt = raw_dates(following.text) if following else []
            if not nxt or nxt[0].start > 2 or to_date(nxt[0], month_first) not in born:
                continue
            dob_at = (following.start + nxt[0].start, following.start + nxt[0].end)
            value = to_date(nxt[0], month_first)
        else:
            dob_at = (line.start + raws[0].start, line.start + raws[0].end)
        at = line.start + m.start("name")
        return Identity((m.group("name"), Span(page, at, at + len(m.group("name")))), (value, Span(page, *dob_at)))
    return None


def _header_name(page: int, line: Line, label: int) -> tuple[str, Span] | None:
    """The name in a running header's first cell, before the record number's ("Eve Betterhalf |
    MRN 444-22-2222 | Clinic: Note")."""
    cell = line.text[:label]
    if "|" not in cell:
        return None
    m = _BARE_NAME.match(cell.split("|")[0])
    if not m:
        return None
    at = line.start + m.start("name")
    return m.group("name"), Span(page, at, at + len(m.group("name")))


# A column's bar that OCR read as a bracket, a "!" or a letter, between spaces ("William Russell |
# 05/03/1962 [ 6288503"): one character for one, so the cells keep their places on the line. Only
# in a row with a bar of its own: a sentence's "I"s are no bars.
_BAR_READ = re.compile(r"(?<= )[\[\]!lI](?= )")


def _cells(text: str) -> list[tuple[int, str]]:
    """A table row's cells between its bars, each with its offset on the line."""
    return [(m.start(), m.group()) for m in re.finditer(r"[^|]+", text)]


def _placed(heads: list[str], cells: list[tuple[int, str]], month_first: bool | None) -> list[str] | None:
    """The heads of a row that lost a cell ("December 3, 1979 | 1376196" under "Patient Name |
    Date of Birth | MRN": OCR moved the name off the line), each cell under the next head its
    value fits, in order (a date under a birth date's, a number under a record's, a name under
    a name's); None where a cell fits none."""
    placed, start = [], 0
    for _, cell in cells:
        value = cell.strip()
        if _date_at(value, 0, month_first):
            fits = _DOB_LABEL.search
        elif any(c.isdigit() for c in value):
            fits = _ID_HEAD.search
        elif len(value.split()) >= 2:
            fits = _NAME_HEAD.search
        else:
            return None
        index = next((i for i in range(start, len(heads)) if fits(heads[i])), None)
        if index is None:
            return None
        placed.append(heads[index])
        start = index + 1
    return placed


def _from_table(page: int, header: Line, row: Line, month_first: bool | None) -> Identity:
    heads = [cell.strip().lower() for _, cell in _cells(header.text)]
    if any(c.isdigit() for c in header.text):
        return Identity()  # values, not heads: a running header ("Eve Betterhalf | MRN 444222222 | Patient Summary")
    cells = _cells(row.text)
    if 2 <= len(cells) < len(heads):
        cells = _cells(_BAR_READ.sub("|", row.text))
    if len(heads) < 2 or not any(_NAME_HEAD.search(h) for h in heads):
        return Identity()  # a table has two columns at least ("... (MRN) |": a mark OCR read at a line's end)
    if not any(_DOB_LABEL.search(h) or _ID_HEAD.search(h) for h in heads):
        return Identity()  # a table of payers or providers names people too; a banner names the patient's birth or record
    # A row that lost a cell (OCR moved it off the line): each of its cells under the head it fits
    placed = _placed(heads, cells, month_first) if 2 <= len(cells) < len(heads) else heads
    if placed is None or len(placed) != len(cells):
        return Identity()
    name = dob = identifier = None
    for head, (offset, cell) in zip(placed, cells, strict=True):
        value = cell.strip()
        at = row.start + offset + cell.index(value) if value else 0
        span = Span(page, at, at + len(value))
        if _DOB_LABEL.search(head):
            found = _date_at(value, 0, month_first)
            dob = (found[0], span) if found else dob
        elif _ID_HEAD.search(head) and any(c.isdigit() for c in value):
            identifier = (value, span)
        elif _NAME_HEAD.search(head) and len(value.split()) >= 2:
            name = (value, span)
    return Identity(name, dob, identifier)
