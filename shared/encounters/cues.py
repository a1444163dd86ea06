"""Cues a page gives about where a document starts: titles, page markers, letterheads,
salutations, section headings, running headers and footers, fax cover sheets; and the
provider and facility a page names.

Structural cues come first: "Page 1 of N", a title line in the letterhead, a running header
or footer that changes, a section sequence that starts again. Keyword lists only name a
title's kind, and type an untitled encounter by counting.

Where a page was read with Textract's LAYOUT, the lines Textract named title, section header,
header, footer and page number (``Layout``) are read for those cues first, wherever they
stand; a cue the layout does not give, and every page read without LAYOUT, is inferred from
the text as before.

Just over 400 lines because each cue is a small pattern with the function that reads it, and
they are read together (``grouping.boundary`` weighs them against each other).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence

from shared.encounters.dates import digits
from shared.encounters.text import HEADING_WORDS, Found, Line, Span, heading_words
from shared.models import EncounterType, LayoutBlock

TITLE_LINES = 8  # a document title sits in the letterhead, within this many first lines
BANNER_TITLE_LINES = 14  # ... or below the patient banner, within this many
LETTERHEAD_LINES = 4  # a facility change or a page marker must be this close to an edge
SALUTATION_LINES = 16  # "Dear Dr ..." within this many first lines opens a letter

_ET = EncounterType

# A summary of the patient's care (a CCD, a chart summary, a care plan): a record of many
# encounters, of none in particular. Its type is "other", and it has no encounter date.
SUMMARY_TITLE = re.compile(
    r"continuity\s+of\s+care|summary\s+of\s+care|(?:patient\s+)?chart\s+summary|(?:clinical|health)\s+summary|"
    r"\bcare\s+plan\b|plan\s+of\s+care\s+document|care\s+record\s+summary|summary\s+of\s+(?:the\s+)?patient\s+(?:chart|record)",
    re.I,
)

# Ordered: the first pattern that matches a title line decides, so "Emergency Department
# Discharge Letter" is an emergency visit, not an inpatient stay.
_TITLES: list[tuple[EncounterType, re.Pattern[str]]] = [
    (_ET.OTHER, SUMMARY_TITLE),
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
            r"clinic\s+(?:visit|note|letter|consultation|review)|out-?patient|consultation(?!s)|consult\s+note|(?-i:\bGP\b)|"
            r"progress\s+note|office\s+visit|follow-?\s?up\s+(?:visit|note)|visit\s+note|general\s+practice|"
            r"appointment\s+(?:letter|confirmation|reminder)",
            re.I,
        ),
    ),
]

# The encounter's type as a record prints it in a field ("Type: Office Visit" in the CDA
# stylesheet's Encounter block, "Encounter Type:", "Visit type:", "Patient class:"): its value
# read with these, in order (an "Emergency room admission" is an emergency visit).
TYPE_FIELD = re.compile(
    r"(?:^|[,;|]\s*|\s{2,})(?:encounter\s+|visit\s+|patient\s+)?(?:type|class)[ \t]*:[ \t]*(?P<value>[^,;|\n]{3,80})",
    re.I | re.M,
)
_TYPE_VALUES: list[tuple[EncounterType, re.Pattern[str]]] = [
    (_ET.EMERGENCY, re.compile(r"emergency|(?-i:\bED\b)|(?-i:\bEMER\b)|casualty", re.I)),
    (_ET.TELEHEALTH, re.compile(r"tele|phone|virtual|video|(?-i:\bVR\b)", re.I)),
    (_ET.INPATIENT, re.compile(
        r"in-?patient|hospitali[sz]|admission|admitted|(?-i:\bIMP\b)|(?-i:\bACUTE\b)|\bstay\b|hospice|"
        r"skilled\s+nursing", re.I)),
    (_ET.ADMINISTRATIVE, re.compile(r"certificat|administrative|paperwork", re.I)),
    # an encounter named for what was done in it, before the words "procedure" or "examination"
    (_ET.OUTPATIENT, re.compile(
        r"office|out-?patient|ambulatory|(?-i:\bAMB\b)|well(?:ness|\s+child)|check-?\s?up|clinic|consult|\bvisit\b|"
        r"urgent|home|domicil|follow-?\s?up|general\s+exam|encounter\s+for|patient\s+encounter|vaccin|immuni[sz]",
        re.I)),
    (_ET.PROCEDURE, re.compile(r"procedure|surgery|operation", re.I)),
    (_ET.LAB, re.compile(r"laborator|\blab\b|pathology", re.I)),
    (_ET.IMAGING, re.compile(r"imaging|radiology", re.I)),
]
# SNOMED CT's semantic tag after a term ("General examination of patient (procedure)") says what
# kind of concept the term is, not what kind of encounter; a line that ends in one is a coded
# term, a row of a list ("Care plan (record artifact)"), never a document's title.
_TAGS = (r"\((?:procedure|finding|disorder|environment|regime/therapy|situation|event|record artifact|"
         r"observable entity|qualifier value|body structure|substance|product|specimen|morphologic abnormality)\)")
_SEMANTIC_TAG = re.compile(r"\s*" + _TAGS, re.I)
_CODED_TERM = re.compile(_TAGS + r"\s*$", re.I)
TYPE_FIELD_LINES = 16  # the field sits in the document's head


def type_field(page: int, text: str, lines: Sequence[Line]) -> tuple[EncounterType, Span] | None:
    """The encounter type a field in the page's head names, and where."""
    if not lines:
        return None
    end = lines[min(TYPE_FIELD_LINES, len(lines)) - 1].end
    for m in TYPE_FIELD.finditer(text, 0, end):
        value = _SEMANTIC_TAG.sub("", m.group("value"))
        for kind, pattern in _TYPE_VALUES:
            if pattern.search(value):
                return kind, Span(page, m.start("value"), m.end("value"))
    return None


# Counted over an encounter's text when no page has a title; ties go to the earlier type.
KEYWORDS: list[tuple[EncounterType, re.Pattern[str]]] = [
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
SALUTATION = re.compile(r"^[ \t.,:;*'|\-]*dear\s+(?:dr\b|doctor\b|colleague|prof)", re.I | re.M)

APPOINTMENT = re.compile(r"appointment|you\s+have\s+been\s+booked|please\s+attend|scheduled\s+for", re.I)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The page's lines that Textract's LAYOUT named, by kind (``LayoutBlock.kind``)."""

    kinds: dict[str, tuple[Line, ...]] = dataclasses.field(default_factory=dict)

    def lines(self, *kinds: str) -> list[Line]:
        """The lines of these kinds in page order; empty when the page has no block of them."""
        return sorted((line for kind in kinds for line in self.kinds.get(kind, ())), key=lambda line: line.start)


NO_LAYOUT = Layout()


def layout_of(blocks: Sequence[LayoutBlock], lines: Sequence[Line]) -> Layout:
    """Each layout block's lines found among the page's lines (a block's text is its lines, one
    a line, as the page text has them); a line is claimed by one block only."""
    if not blocks:
        return NO_LAYOUT  # every page not read with LAYOUT: nothing to index
    by_text: dict[str, list[Line]] = {}
    for line in lines:
        by_text.setdefault(line.text.strip(), []).append(line)
    kinds: dict[str, list[Line]] = {}
    for block in blocks:
        for part in block.text.splitlines():
            free = by_text.get(part.strip())
            if free:
                kinds.setdefault(block.kind, []).append(free.pop(0))
    return Layout({kind: tuple(found) for kind, found in kinds.items()})


_ADDRESSEE = re.compile(r",\s*[A-Z][\w' ]*(?:Hospital|Clinic|Cent(?:re|er)|Practice|Surgery|Infirmary)\b")


# A title followed by the document's own time in parentheses, as the CDA stylesheet prints it:
# "Progress Note (September 16, 2012, 7:11PM -0400)".
TITLE_TIME = re.compile(r"\s*\((?=[^()]*\d{4})[^()]*\)[^\w()]*$")  # and the stray marks OCR adds after it


# A section's heading or a field that names a kind of encounter is no title: "REASON FOR
# REFERRAL", "HISTORY OF PRESENT ILLNESS", "Type Office or other outpatient visit".
_SECTION_LEAD = re.compile(
    r"^\W*(?:reason\s+for|history\s+of|hospital\s+course|chief\s+complaint|type|class|date|time|past|prior|"
    r"previous|planned|pending|ordered|encounters?\b|results?\b|instructions?\b|indications?\b)",
    re.I,
)


_MARK_AFTER = re.compile(r"\s+[^\w\s]+\s*$")  # a mark OCR read at a line's end, apart from its words


_LEAD_WORDS = 8  # a facility's or department's name before a title's colon is no longer


def is_title_line(text: str) -> bool:
    if _SECTION_LEAD.match(text):
        return False
    text = TITLE_TIME.sub("", text)
    text = _MARK_AFTER.sub("", text)  # a mark OCR read apart after the title: "PATHOLOGY REPORT ."
    if _CODED_TERM.search(text):
        return False  # a coded term: "Care plan (record artifact)"
    if ":" in text and text.rsplit(":", 1)[1].strip():
        lead, text = text.rsplit(":", 1)  # "Community Health and Hospitals: Discharge Summary"
        if re.search(r"\d[/.\-]\d", lead) or len(re.findall(r"[A-Za-z]+", lead)) > _LEAD_WORDS:
            # A field and its date ("MRI brain, 03/04/2021: The MRI reveals a"), a sentence ("...
            # see procedure note above: We will arrange for x-ray"): a line of a report, no name.
            return False
    if re.search(r"\d[/.\-]\d|\d{4}", text) or text.rstrip().endswith((".", ",")):
        return False  # "CT of Abdomen, 01/23/2020." is a line of a report, not its title
    if re.search(r"\b[a-z]{3,}\.\s+\S", text):
        return False  # a sentence ended, then more: "Referral to physical therapy. Lo" (OCR read a mark on)
    words = re.findall(r"[A-Za-z][A-Za-z'\-]*", text)
    if not words or _ADDRESSEE.search(text):
        return False  # "Cardiology Outpatients, Kingsbridge Hospital" addresses a letter, it is no title
    letters = "".join(words)
    return len(words) <= 6 or letters.isupper()


def _item(text: str) -> bool:
    """A line as a list or a table's column prints its rows: a few words, no field, no number,
    no sentence, no kind's title ("Pulmonary Function Test", "ECG")."""
    text = _MARK_AFTER.sub("", text)  # a mark OCR read after the row: "ECG ."
    words = re.findall(r"[A-Za-z][A-Za-z'\-]*", text)
    return 0 < len(words) <= 5 and ":" not in text and not re.search(r"\d", text) \
        and not text.rstrip().endswith((".", ",")) and not any(p.search(text) for _, p in _TITLES)


def _listed(lines: Sequence[Line], index: int) -> bool:
    """Whether the line is a row among rows: a row like it directly above, two directly below
    (a tests table that OCR read column by column: "Pulmonary Function Test / Chest X-Ray /
    Blood Glucose / ECG"). A title stands apart from what follows it: a banner's fields, a
    date, the text."""
    above, below = lines[index - 1 : index], lines[index + 1 : index + 3]
    return bool(above) and len(below) == 2 and all(_item(line.text) for line in (*above, *below))


# A letterhead ends with its contact lines: a telephone or fax number, a street address.
_CONTACT = re.compile(r"\b(?:tel|phone|fax|ph)\b\.?:?\s*[(+\d]|\(\d{3}\)\s*\d{3}|^\W*\d+\s+\w+.*,\s*\w+", re.I)


# A page that opens mid-sentence, below its running head at most, carries on the text of the page
# before: its short lines below are headings and items of that text ("ORDERS / MRI, right knee").
CARRIED_LINES = 3
SENTENCE_WORDS = 8  # a line of this many words, or more, may be a sentence of the text
_CARRIED = re.compile(rf"^\s*[a-z]{{2,}}\b(?:\W+\w+){{{SENTENCE_WORDS - 1},}}")


def carries_a_sentence(text: str) -> bool:
    """A line of ``SENTENCE_WORDS`` words or more whose first word is in lower case: a sentence
    carried on."""
    return bool(_CARRIED.match(text))


def find_title(
    page: int, text: str, lines: Sequence[Line], reach: int = TITLE_LINES, layout: Layout = NO_LAYOUT
) -> tuple[EncounterType, Span] | None:
    """The title line within ``reach`` first lines, by kind, with its span.

    A title above the letterhead's last contact line is a department's name ("Outpatient
    Services"), taken only when no title follows the letterhead; none below a sentence the page
    opens with, carried on from the page before (``carries_a_sentence``). On a page with LAYOUT, its
    titles come first, wherever they stand (and its section headers within ``reach``); a page
    whose layout names no title of a kind is read as any other.
    """
    named = [*layout.lines("title"), *(line for line in layout.lines("section_header") if line in lines[:reach])]
    for line in sorted(named, key=lambda line: line.start):
        for kind, pattern in _TITLES:
            match = pattern.search(line.text)
            if match:
                return kind, Span(page, line.start + match.start(), line.start + match.end())
    top = lines[:reach]
    carried = next((i for i, line in enumerate(top[:CARRIED_LINES]) if carries_a_sentence(line.text)), None)
    if carried is not None:
        top = top[:carried]  # below a sentence the page before began: the document's text, no title
    contact_end = max((i for i, line in enumerate(top[:TITLE_LINES]) if _CONTACT.search(line.text)), default=-1)
    found = []
    for index, line in enumerate(top):
        if not is_title_line(line.text) or _listed(lines, index):
            continue
        # The title is what follows a "Facility:" lead, not a sentence before a colon.
        bare = TITLE_TIME.sub("", line.text)
        lead = bare.rsplit(":", 1)[0] + ":" if ":" in bare else ""
        for kind, pattern in _TITLES:
            match = pattern.search(line.text, len(lead))
            if match:
                found.append((index > contact_end, kind, Span(page, line.start + match.start(), line.start + match.end())))
                break
    after = [f for f in found if f[0]] or found
    return (after[0][1], after[0][2]) if after else None


# --- page markers --------------------------------------------------------------------------

# A count's digits, or the letters OCR reads for them ("Page l of 2"), case-sensitive in patterns
# that are not: "Page L" is no count.
_COUNT = r"((?-i:[0-9Il]){1,3})"
_PAGE_OF = re.compile(rf"\bpage[^\w\n]{{0,3}}{_COUNT}(?:[^\w\n]{{0,3}}(?:of|/)[^\w\n]{{0,3}}{_COUNT})?\b", re.I)
_CONTINUED_TOP = re.compile(
    r"\(\s*cont(?:inued|'d|’d|d)?\.?\s*\)|continued\s+from|\bcont(?:'|’)d\b|\bcontinuation\b", re.I
)
_CONTINUED_WORD = re.compile(r"\bcontinued\b", re.I)
CONTINUED_BOTTOM = re.compile(r"continued\s+(?:on|over|overleaf)|\bP\.?T\.?O\b|\boverleaf\b|see\s+over", re.I)
_FAX = re.compile(r"\bfax\b", re.I)


_CONTINUED_LINE = re.compile(r"^\W*(?:continued|cont(?:'|’)?d)\W*$", re.I)


def continued_line(line: str) -> bool:
    """A line that says "(continued)" and nothing else: under a report's title on its next
    pages, as far down as a title sits."""
    return bool(_CONTINUED_LINE.match(line))


def says_continued(line: str) -> bool:
    # A bare "continued" only in a short running header: "Metformin continued at 1 g bd" is not one.
    return bool(_CONTINUED_TOP.search(line)) or (bool(_CONTINUED_WORD.search(line)) and is_title_line(line))


FOOT_LINES = 12  # "Page 2 of 3" on a line of its own counts this far up from the page's end
_PAGE_LINE = re.compile(rf"^\W*page\W{{0,3}}{_COUNT}\W{{0,3}}(?:of|/)\W{{0,3}}{_COUNT}\W*$", re.I)


def page_marker(lines: Sequence[Line], layout: Layout = NO_LAYOUT) -> tuple[int, int | None] | None:
    # What LAYOUT named the page's number, header and footer (wherever Textract's reading order
    # put them), then the page's edges. Fax headers count the pages of the transmission, not
    # of the document.
    edges = [*layout.lines("page_number", "header", "footer"), *lines[:LETTERHEAD_LINES], *lines[-LETTERHEAD_LINES:]]
    for line in edges:
        if _FAX.search(line.text):
            continue
        match = _PAGE_OF.search(line.text)
        if match:
            total = digits(match.group(2)) if match.group(2) else None
            return digits(match.group(1)), total
    for line in reversed(lines[-FOOT_LINES:]):  # a foot's count with a disclaimer and a version below it
        match = _PAGE_LINE.match(line.text)
        if match:
            return digits(match.group(1)), digits(match.group(2))
    return None


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


def providers_on(page: int, text: str, lines: Sequence[Line]) -> list[Found]:
    found: list[Found] = []
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
                found.append(Found(trimmed[0], Span(page, trimmed[1], trimmed[2]), rank))
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
        found.append(Found(trimmed[0], Span(page, trimmed[1], trimmed[2]), rank))
    return found


def facilities_on(page: int, text: str, lines: Sequence[Line]) -> list[Found]:
    found: list[Found] = []
    wrapped: set[int] = set()  # where a line continues a labelled value that ran to the line's end
    for m in _FACILITY_LABELLED.finditer(text):
        value = _cut_at_next_label(m.group(1))
        if len(value) >= 3:
            found.append(Found(value, Span(page, m.start(1), m.start(1) + len(value)), 0))
            if not text[m.end(1) : m.end(1) + 1].strip():
                wrapped.add(next((line.end for line in lines if line.start <= m.start(1) < line.end), -1))
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
        # "Organization: CARDIOVASCULAR" with the name's rest on the next line, as OCR wraps a
        # field: the label's value, not a letterhead.
        above = next((line.end for line in reversed(lines) if line.end < start), None)
        rank = 1 if start < letterhead_end and above not in wrapped and not _in_a_sentence(text, lines, start) else 2
        found.append(Found(" ".join(value.split()), Span(page, start, m.end(1)), rank))
    return found


def _in_a_sentence(text: str, lines: Sequence[Line], start: int) -> bool:
    """Whether the facility at ``start`` is named in a sentence: after a word in lower case, on a
    line of ``SENTENCE_WORDS`` words or more ("consider a referral to our Hand Clinic possibly
    for injections"). A letterhead prints it on a line of its own, or after a short lead."""
    line = next((line for line in lines if line.start <= start < line.end), None)
    if line is None:
        return False
    return len(line.text.split()) >= SENTENCE_WORDS and bool(re.search(r"\b[a-z]{2,}\b", text[line.start : start]))


def same_facility(a: str, b: str) -> bool:
    def norm(value: str) -> str:
        return re.sub(r"[^a-z0-9]", "", value.lower())

    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio() >= 0.8




# --- page structure: cover sheets, section headings, running footers ---------------------------

COVER_LINES = 4  # a cover sheet says so in its first lines
_COVER_TITLE = re.compile(r"^\W*(?:fax|facsimile|fax\s+cover(?:\s+sheet)?|fax\s+transmittal|transmittal|cover\s+sheet)\W*$", re.I)
_COVER_FIELD = re.compile(r"^\W*(?:to|from|attn|attention|pages?|re|subject|date|fax|phone|cc)\b[^:\n]{0,20}:", re.I)


def is_cover(lines: Sequence[Line]) -> bool:
    """A fax cover sheet: titled as one, and mostly To/From/Pages/Re fields. It is no record."""
    fields = sum(bool(_COVER_FIELD.match(line.text)) for line in lines[:16])
    if fields < 3 or len(lines) > 30:
        return False
    titled = any(_COVER_TITLE.match(line.text) for line in lines[:COVER_LINES])
    # OCR can lose the big "FAX" of a cover sheet; its fields and its notice remain.
    return titled or any(_FAX_WORDS.search(line.text) for line in lines)


_FAX_WORDS = re.compile(r"\bfacsimile\b|including\s+cover|\bcover\s+(?:sheet|page)\b|\btransmittal\b", re.I)


def section_headings(lines: Sequence[Line], layout: Layout = NO_LAYOUT) -> list[str]:
    """Lines that read as section headings: upper case, a few words, no value after a colon;
    on a page with LAYOUT section headers, those."""
    named = layout.lines("section_header")
    if named:
        return [" ".join(w.upper() for w in HEADING_WORDS.findall(line.text)) for line in named]
    return [" ".join(words) for words in map(heading_words, (line.text for line in lines)) if words]


_FOOTER = re.compile(r"\bpage\b|\bprinted\b|\bconfidential\b|\bfax\b|\bgenerated\b", re.I)


def same_footer(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8  # OCR reads one footer a little differently each page


def footer_signature(lines: Sequence[Line], layout: Layout = NO_LAYOUT) -> str | None:
    """A running footer with its numbers blanked ("Page # of # Printed #/#/# ..."), or None.
    On a page with a LAYOUT footer, that footer, whatever it says."""
    footer = layout.lines("footer")
    if footer:
        return _numbers_blanked(" ".join(line.text.strip() for line in footer))
    for line in lines[-2:]:
        if _FOOTER.search(line.text) and len(line.text) < 120:
            return _numbers_blanked(line.text.strip())
    return None


def _numbers_blanked(footer: str) -> str:
    return re.sub(r"[0-9OIl]+(?=\W|$)|\d+", "#", footer.lower())
