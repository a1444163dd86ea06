"""Whether a page starts a new document: a small learned page-pair model over the page's
structure and the cues the other modules read.

Every cue of ``cues.py`` and ``identity.py`` is a vocabulary, and a vocabulary is silent on a
layout nobody here wrote. What separates documents in every family of real renders is the
structure of the pages: the top of a page looks like a first page (it opens as the document's
first page did, and the page before did not; a banner whose numbers changed), the text of
consecutive pages stops resembling each other, a page count restarts, the page before ends a
document. ``FEATURES`` reads these for a page against the encounter it may continue, together
with the vocabulary cues, as numbers in [0, 1].

``BoundaryModel`` is a logistic regression over them, trained offline on every development
family (``bench/encounters_train.py``, scikit-learn) and shipped as its weights in
``boundary_model.json``: inference is a weighted sum in plain Python (no numpy in the Lambda
zip). Two rules stand above it: another patient's banner always cuts, and a page that says it
continues ("Page 2 of 3", "continued") never does unless that banner says otherwise.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from shared.encounters import cues, identity

# grouping.Group and grouping.Page: grouping imports this module, so the types are named, not
# imported (the layer test counts an import under TYPE_CHECKING as an import).
Group = Any
Page = Any

HEAD_LINES = 5  # the top of a page: where a banner, letterhead or title sits
WIDE_HEAD = 10  # ... of the page it is compared with (a banner may sit a few lines lower)
THRESHOLD = 0.5  # the model's probability at which a page starts a document
STRONG = 0.8  # at or above: a boundary nobody needs to look at twice

_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[a-z]{4,}")
_ENDS = re.compile(
    r"end\s+of\s+(?:report|document|note)|electronically\s+signed|signed\s+by|\bsignature\b|\bsincerely\b|"
    r"yours\s+(?:sincerely|faithfully)|kind\s+regards|\bdictated\s+by\b|\bverified\s+by\b",
    re.I,
)
_FIELD = re.compile(r"^[^:]{2,30}:\s*\S")


_PUNCT = re.compile(r"[^\w/:\-#@ ]+|(?<!\w)[\w](?!\w)")


def norm(line: str) -> str:
    """A line as compared between pages: case, spacing, punctuation and the stray marks OCR
    adds ("‘Center", ": « Recovery") ignored."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", line.lower())).strip(" :-/")


@functools.lru_cache(maxsize=8192)
def same(a: str, b: str) -> bool:
    """Two normalised lines alike: equal, or a few characters apart as OCR reads one line twice.

    A document's heads repeat, and each page's is compared with several others: on the
    142-page scan 19,763 calls were 143 pairs. So the answer for a pair is kept until the
    discovery ends (``forget_lines``)."""
    if a == b:
        return True
    shorter, both = min(len(a), len(b)), len(a) + len(b)
    # The cheap upper bounds first, the same answer: the lengths' (SequenceMatcher's
    # real_quick_ratio, before a matcher is built for most pairs, which never get past it).
    if shorter < 8 or 2.0 * shorter / both < 0.88:
        return False
    if _DIGITS.findall(a) != _DIGITS.findall(b):
        return False  # another date or number is another line, however alike the words
    matcher = difflib.SequenceMatcher(None, a, b)
    return matcher.quick_ratio() >= 0.88 and matcher.ratio() >= 0.88


def forget_lines() -> None:
    """Drop the pairs of lines ``same`` kept: a discovery ends with it, so that no page's line
    outlives the discovery that read it (a warm Lambda runs the next patient's)."""
    same.cache_clear()


_MONTH = re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b")


def masked(line: str) -> str:
    """A normalised line with its digits and month names masked: a banner or title whose date
    or number changed."""
    return _MONTH.sub("@", _DIGITS.sub("#", line))


def _share(mine: Sequence[str], theirs: Sequence[str], read: bool = False) -> float:
    """The share of ``mine`` (non-empty lines) that ``theirs`` holds; ``read`` (by OCR): as
    ``held`` finds a line OCR read again, run together with another or with other marks."""
    mine = [m for m in mine if len(m) >= 3]
    if not mine:
        return 0.0
    if read:
        return sum(held(m, theirs) for m in mine) / len(mine)
    pool = set(theirs)
    return sum(m in pool for m in mine) / len(mine)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _head(page: Page, n: int = HEAD_LINES) -> list[str]:
    return page.normed[:n]


def words_of(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def _fields(lines: Sequence[str]) -> float:
    return sum(bool(_FIELD.match(line)) for line in lines) / max(1, len(lines))


def _head_shift(page: Page, other: Page) -> float:
    """Lines of the page's head that ``other``'s head holds with other digits (the same banner
    or title with another date, number or page count)."""
    mine = _head(page)
    exact = set(_head(other, WIDE_HEAD))
    shapes = {masked(line) for line in exact}
    lines = [m for m in mine if len(m) >= 3 and _DIGITS.search(m)]
    if not lines:
        return 0.0
    return sum(m not in exact and masked(m) in shapes for m in lines) / len(lines)


_TITLE_WORD = re.compile(r"[A-Z][A-Za-z'&\-]*|[a-z]{1,3}")


def _title_line(line: str) -> bool:
    """A line that reads as a document's title: a few capitalised words, no field's value, no
    sentence ("Encounter Summary (June 2, 2025)", "Community Health: Progress Note")."""
    text = re.sub(r"\s*\([^()]*\)\s*$", "", line.strip())  # the document's time after it
    if ":" in text:
        text = text.rsplit(":", 1)[1]  # "Facility: Title"
    words = re.findall(r"[A-Za-z][A-Za-z'&\-]*", text)
    if not 2 <= len(words) <= 8 or text.rstrip().endswith((".", ",")) or re.search(r"\d", text):
        return False
    return sum(w[0].isupper() for w in words) >= max(2, len(words) - 2)


def _opening(page: Page, running: set[str]) -> list[str]:
    """The page's first lines that are not a running head (not on the previous page's top),
    digits masked: how the page opens once the banner every page repeats is set aside."""
    out = []
    for line in page.lines[:WIDE_HEAD]:
        n = norm(line.text)
        if len(n) >= 3 and n not in running:
            out.append(masked(n))
        if len(out) == 4:
            break
    return out


_DATE_LIKE = re.compile(r"\b\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}\b|\b\d{4}-\d{2}-\d{2}\b|"
                        r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4}\b", re.I)


def _running(a: Page, b: Page) -> set[str]:
    """The head two consecutive pages of a document share, from their first line on: its
    running head (empty when their first lines differ)."""
    top_a, top_b = _head(a, WIDE_HEAD), _head(b, WIDE_HEAD)
    if not top_a or not top_b or top_a[0] != top_b[0]:
        return set()  # a running head opens both pages alike
    shared = {line for line in top_a if len(line) >= 3} & set(top_b)
    # ... with two lines of words at least, in any order (a two-column head prints its blocks
    # in the order they fit)
    return shared if sum(map(_wordy, shared)) >= 2 else set()


def _running_stopped_read(before: Page, last: Page, first: Page, page: Page) -> bool:
    """``running_stopped`` on pages OCR read, where a running head reads another way on each
    page (a two-column head's lines run together, split or reordered, with stray marks), so
    judged by its words: four words at least that the tops of the document's last three pages
    all print (two pages' tops alone may share a table's heading, or a block of the banner the
    next page prints again), fewer than half of which the page prints anywhere."""
    if before is first:
        return False
    kept = _top_words(last) & _top_words(before) & _top_words(first, WIDE_HEAD)
    return len(kept) >= 4 and len(kept & page.words) < 0.5 * len(kept)


def _top_words(page: Page, n: int = HEAD_LINES) -> set[str]:
    return {w for line in _head(page, n) for w in _WORD.findall(line)}


def _kept_share(kept: set[str], page: Page) -> float:
    """The share of a running head ``kept`` that the page's top prints; read by OCR, anywhere
    on the page and give or take a few characters (OCR reads a two-column head in any order)."""
    if page.ocr_confidence is None:
        return _share(sorted(kept), _head(page, WIDE_HEAD))
    return sum(any(same(k, n) or k in n for n in page.normed) for k in kept) / len(kept)


def _opened_like(page: Page, first: Page) -> bool:
    """Half the page's head at least is ``first``'s head; read by OCR, its words are (OCR reads
    a two-column head in another order, or runs its lines together, page by page)."""
    if page.ocr_confidence is None:
        return _share(_head(page), _head(first, WIDE_HEAD)) >= 0.5
    mine = _top_words(page)
    return bool(mine) and len(mine & _top_words(first, WIDE_HEAD)) >= 0.5 * len(mine)


_LINE_WORD = re.compile(r"[a-z]{3,}|\d[\d/]*")


def held(line: str, lines: Sequence[str], part: float = 0.0) -> bool:
    """Whether ``lines`` hold the line as OCR reads it again: alike, run together with another
    line of the head ("walter abernathy" in "healthcare walter abernathy"; with ``part``, the
    one within at least that share of the other's length: not "encounter" in "encounter
    summary (...)"), or four words in five of it in one line, whatever marks OCR put between
    them."""
    words = set(_LINE_WORD.findall(line))
    return any(same(line, other)
               or (min(len(line), len(other)) >= max(8, part * max(len(line), len(other)))
                   and (line in other or other in line))
               or (len(words) >= 3 and len(words & set(_LINE_WORD.findall(other))) >= 0.8 * len(words))
               for other in lines)


OPENING = 2  # a page opens as another did with at most this many lines of its own above the line they share


def _reopens_read(page: Page, first: Page, last: Page) -> bool:
    """``reopens`` on pages OCR read, whose running head it reads another way on each page (its
    lines run together with the banner's, in another order, with stray marks): the document's
    head repeats (at the top of its last page, two lines of words or three lines of a word at
    least are at its first's: two labels alike, "Patient" and "Guardian", are no running head),
    and the page's head prints a line of words of the first page's head again, a line of its own,
    without a number (a heading, not a date or a value), that the last page's head does not hold,
    under at most ``OPENING`` lines that neither head holds (the stylesheet's closing block prints
    a line of the first page's banner again, far down its head)."""
    firsts, lasts = _head(first, WIDE_HEAD), _head(last, WIDE_HEAD)
    repeated = [line for line in _head(last) if (_wordy(line) or len(line) >= 6) and held(line, _head(first))]
    if sum(map(_wordy, repeated)) < 2 and len(repeated) < 3:
        return False
    own = 0  # lines above it that neither head holds: the page opened otherwise
    for line in _head(page, WIDE_HEAD):
        if len(line) < 3 or held(line, lasts):
            continue
        if _wordy(line) and not _DIGITS.search(line) and any(same(line, other) for other in firsts):
            return True
        own += not held(line, firsts)
        if own > OPENING:
            return False
    return False


def _first_line_again(page: Page, first: Page, last: Page) -> bool:
    """The page opens with the document's first line (a title with its time, alike as OCR reads
    it twice), which its last page's head does not hold: the next document of the same export.
    (``first``: the document's first page, or the one before's.)"""
    if not page.lines or not first.lines or not last.lines:
        return False
    mine = page.normed[0]
    return _wordy(mine) and same(mine, first.normed[0]) and not held(mine, _head(last, WIDE_HEAD), 0.5)


def _repeated_first_line(group: Group) -> bool:
    """The document's first line is its running head: a later page's head holds it too."""
    pages = group.pages
    if not pages[0].lines:
        return False
    line = pages[0].normed[0]
    return any(held(line, _head(p, WIDE_HEAD), 0.5) for p in pages[1:])


def _wordy(line: str) -> bool:
    """Two words or more: a line that can be a running head or foot, not a table's cell."""
    return len(re.findall(r"[a-z]{2,}", line)) >= 2


def _foot_words(page: Page, n: int = 3) -> set[str]:
    """The words of the page's last ``n`` lines, numbers masked (OCR may part a foot in two)."""
    return {w for line in page.lines[-n:] for w in masked(norm(line.text)).split() if len(w) >= 2}


def _foot_stopped(before: Page, last: Page, page: Page) -> bool:
    """A running foot (the last line two pages of the document end with, numbers aside) that
    this page does not print: fewer than half its words at the page's foot."""
    if not before.lines or not last.lines:
        return False
    end = masked(norm(last.lines[-1].text))
    words = {w for w in end.split() if len(w) >= 2}
    if len(words) < 3 or len(words & _foot_words(before)) < 0.8 * len(words):
        return False  # a foot of a few words at least, that the page before ended with too
    if page.ocr_confidence is not None:  # OCR reads a two-column foot where it likes: anywhere on the page
        return len(words & _foot_words(page, len(page.lines))) < 0.5 * len(words)
    return len(words & _foot_words(page)) < 0.5 * len(words)


_COUNTER = re.compile(r"\bpage\b|\bp\.\s?#|#\s*(?:/|of)\s*#|\bfrom\b.*\bto\b", re.I)


def _first_line_shifted(page: Page, other: Page) -> bool:
    """The page's first line is ``other``'s with another date or number: the same banner or
    title of another document ("Encounter Summary (May 14, 2024)" after "(July 17, 2025)"), not
    a page count or a fax machine's line."""
    if not page.lines or not other.lines:
        return False
    mine, theirs = norm(page.lines[0].text), norm(other.lines[0].text)
    if mine == theirs or not _DIGITS.search(mine) or _COUNTER.search(masked(mine)):
        return False
    return len(re.findall(r"[a-z]{3,}", mine)) >= 2 and masked(mine) == masked(theirs)


_KEY = re.compile(r"(?<![\w/])([A-Za-z][A-Za-z/\-]*(?: [A-Za-z][A-Za-z/\-]*){0,2}):(?=\s|$)")
FORM_LINES = 16  # the head where a document's form (its labelled fields) is compared
FORM_FIELDS = 4  # ... over at least this many fields


def head_form(page: Page) -> list[tuple[str, str]]:
    """The labelled fields of the page's head in reading order, (label, value): every "Label:"
    of a line, so fields OCR ran together on one line ("... Date of Birth: ... Gender: F") or a
    label after a name or a stray mark still count; a value ends where the next label starts."""
    out = []
    for line in page.lines[:FORM_LINES]:
        keys = list(_KEY.finditer(line.text))
        for key, after in zip(keys, keys[1:] + [None]):
            value = line.text[key.end() : after.start() if after else len(line.text)]
            out.append((norm(key.group(1)), norm(value)))
    return out


def _differ(a: str, b: str, ocr: bool) -> bool:
    """Two values of one field differ: any change in a text layer; read by OCR, more than the
    few characters OCR reads differently twice (a page count is never a document's value)."""
    if not a or not b or a == b or _COUNTER.search(masked(a)) or _COUNTER.search(masked(b)):
        return False
    return not ocr or difflib.SequenceMatcher(None, a, b).ratio() < 0.75


def _form_again(page: Page, other: Page) -> bool | None:
    """Whether the page's head fills ``other``'s form (the same labelled fields in the same order,
    four at least) with other values (True: the same kind of document again, not its next page)
    or with the same ones (False: a banner its next page repeats); None when it is no such form."""
    mine, theirs = page.form, other.form
    matcher = difflib.SequenceMatcher(None, [k for k, _ in mine], [k for k, _ in theirs], autojunk=False)
    pairs = [(mine[block.a + i][1], theirs[block.b + i][1])
             for block in matcher.get_matching_blocks() for i in range(block.size)]
    if len(pairs) < FORM_FIELDS:
        return None
    ocr = page.ocr_confidence is not None or other.ocr_confidence is not None
    return any(_differ(a, b, ocr) for a, b in pairs)


def _new_form(page: Page, group: Group, prior: Group | None) -> bool:
    """The page fills again the form of the document's last or first page with other values; or,
    when it fills neither, that of the document before's first page (a cut that split that
    document left its first page as the form's last sight)."""
    last, first = group.pages[-1], group.pages[0]
    here = [_form_again(page, last), _form_again(page, first) if len(group.pages) > 1 else None]
    if any(here):
        return True
    return here == [None, None] and prior is not None and bool(_form_again(page, prior.pages[0]))


def _opens_as(page: Page, other: Page) -> bool:
    """The page's first three lines are ``other``'s, numbers and months aside, two of them at
    least, each where ``other`` has it (give or take a line)."""
    mine = [masked(h) for h in _head(page, 3)]
    theirs = [masked(h) for h in _head(other, 4)]
    if not mine or not theirs or mine[0] != theirs[0]:
        return False  # the first line above all: a title, a letterhead, a banner
    hits = sum(any(m == t for t in theirs[max(0, i - 1) : i + 2]) for i, m in enumerate(mine) if len(m) >= 3)
    return hits >= 2


def _head_repeated(page: Page, last: Page) -> bool:
    """The page's head is the previous page's, line for line, numbers and dates included, and
    some of those numbers are the document's own (an accession number, a collection date; not
    only the patient's birth date or record number, which every document of the patient
    prints): a report's banner repeated on its next page.

    The patient's birth date and number (either page's) are left out of the lines compared: they
    are the identity's to compare, which allows OCR's slips in them (88777723 read 88777728 under
    one name and birth date), and a page of another patient is cut before this is asked."""
    head, before = page.lines[:HEAD_LINES], last.lines[:HEAD_LINES]
    values = _patient_values(page) | _patient_values(last)
    if len(head) < 2 or len(head) != len(before) or not all(
            same(norm(_without(a.text, values)), norm(_without(b.text, values)))
            for a, b in zip(head, before, strict=True)):
        return False
    patient = [v[1] for v in (page.patient.dob, page.patient.identifier) if v]
    for line in head:
        numbers = [m for m in _DIGITS.finditer(line.text)]
        own = [m for m in numbers if not any(s.start <= line.start + m.start() < s.end for s in patient)]
        if own:
            return True
    return False


def _patient_values(page: Page) -> set[str]:
    """The patient's birth date and number as the page prints them, where it read them."""
    return {page.text[v[1].start : v[1].end] for v in (page.patient.dob, page.patient.identifier) if v}


def _without(text: str, values: set[str]) -> str:
    """The text less these values, wherever it prints them (on both pages of a pair: a number
    read on one page only, behind a mark OCR put before its label, is left out of both)."""
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, " ")
    return text


def _marker(page: Page) -> tuple[int, int | None] | None:
    return page.marker


def _title_kind(page: Page):
    return page.top_title[0] if page.top_title else None


def features(group: Group, page: Page, prior: Group | None = None) -> list[float]:
    """The page-pair features of ``page`` after ``group``'s pages, in the order of ``FEATURES``;
    ``prior``: the document before ``group``, whose first page's form the page may fill
    again (after a cut that split a document, its first page is the form's last sight)."""
    last, first = group.pages[-1], group.pages[0]
    head = _head(page)
    last_head, first_head = _head(last, WIDE_HEAD), _head(first, WIDE_HEAD)
    masked_head = [masked(h) for h in head]
    marker, last_marker = _marker(page), _marker(last)
    group_title = group.title
    kind = _title_kind(page)
    anchor, span = page.anchor, group.span()
    outside = bool(anchor and span and (anchor < span[0] or (span[1] is not None and anchor > span[1])))
    facility, previous = page.letterhead_facility, group.letterhead_facility
    first_heading = next((h for p in group.pages for h in p.headings), None)
    last_opened_like_first = len(group.pages) > 1 and _opened_like(last, first)
    before = group.pages[-2] if len(group.pages) > 1 else None
    kept = _running(before, last) if before else set()  # the head every page of the document repeats
    if kept and before is not first and not kept <= set(_head(first, WIDE_HEAD)):
        kept = set()  # a table's heading that two pages repeat, not the document's running head
    reopens = False
    if kept:  # below the running head, the page opens as the document's first page did
        mine, firsts, lasts = (set(_opening(p, kept)[:3]) for p in (page, first, last))
        reopens = any(_wordy(line) for line in (mine & firsts) - lasts)
    elif page.ocr_confidence is not None and len(group.pages) > 1:
        reopens = _reopens_read(page, first, last)
    reopens = reopens or (len(group.pages) > 1 and _first_line_again(page, first, last)) \
        or (prior is not None and _first_line_again(page, prior.pages[0], last)
            and not _repeated_first_line(prior))  # where OCR garbled the group's own first line
    banner = page.patient.banner
    read = page.ocr_confidence is not None  # a head OCR read again: its lines in another order, run together
    values = {
        # the vocabulary's cues
        "conflict": identity.cuts(group.patient, page.patient),
        "continues": page.continues or last.continues_next,
        "marker_ended": bool(last_marker and last_marker[1] and last_marker[0] >= last_marker[1]),
        "marker_one": bool(marker and marker[0] == 1),
        "marker_next": bool(marker and marker[0] > 1),
        "marker_follows": bool(marker and last_marker and marker[0] == last_marker[0] + 1),
        "first_page": page.first_page,
        "title_other": bool(kind and (group_title is None or kind != group_title[0])),
        "title_same": bool(kind and group_title and kind == group_title[0]),
        "titled": page.title is not None,
        "salutation": page.salutation,
        "facility_other": bool(facility and previous and not cues.same_facility(facility, previous)),
        "letterhead_new": bool(facility and previous is None),
        "date_outside": outside,
        "date_inside": bool(anchor and span and not outside),
        "headings_restart": bool(first_heading and page.headings and page.headings[0] == first_heading),
        "footer_other": bool(last.footer and page.footer and not cues.same_footer(last.footer, page.footer)),
        "first_line_title": bool(page.lines) and _title_line(page.lines[0].text),
        "head_dated": any(_DATE_LIKE.search(line.text) for line in page.lines[:3]),
        # the page's structure: no vocabulary
        "running_stopped": (_kept_share(kept, page) < 0.5 if kept else
                            bool(read and before and before.ocr_confidence is not None
                                 and _running_stopped_read(before, last, first, page))),
        "foot_stopped": bool(before) and _foot_stopped(before, last, page),
        "reopens": reopens,
        "first_line_shifted": _first_line_shifted(page, last) or (len(group.pages) > 1
                                                                  and _first_line_shifted(page, first)),
        "banner_new": bool(banner and not any(p.patient.labelled for p in group.pages)),
        "new_form": _new_form(page, group, prior),
        "head_repeated": _head_repeated(page, last),
        "head_as_last": _share(head, last_head, read),
        "head_shape_as_last": _share(masked_head, [masked(h) for h in last_head], read),
        "head_as_first": _share(head, first_head if len(group.pages) > 1 else last_head, read),
        "head_shape_as_first": _share(masked_head, [masked(h) for h in first_head], read),
        # ... and, read by OCR, whose misreadings may part the last page's head from the first's:
        # not as the last page did either
        "opens_as_first_not_last": len(group.pages) > 1 and not last_opened_like_first and _opens_as(page, first)
        and not (read and _opened_like(page, last)),
        "head_shifted": _head_shift(page, last),
        "head_fields": _fields(head),
        "last_head_fields": _fields(_head(last)),
        "words_as_last": _jaccard(page.words, last.words),
        "last_ends": any(_ENDS.search(line.text) for line in last.lines[-6:]),
        "starts_lower": bool(page.lines) and page.lines[0].text.lstrip()[:1].islower(),
        "ocr": page.ocr_confidence is not None,
    }
    return [float(values[name]) for name in FEATURES]


FEATURES = (
    "conflict", "continues", "marker_ended", "marker_one", "marker_next", "marker_follows", "first_page",
    "title_other", "title_same", "titled", "salutation", "facility_other", "letterhead_new", "date_outside",
    "date_inside", "headings_restart", "footer_other", "first_line_title",
    "head_dated", "running_stopped", "foot_stopped", "reopens", "first_line_shifted", "banner_new",
    "new_form", "head_repeated",
    "head_as_last", "head_shape_as_last", "head_as_first", "head_shape_as_first", "opens_as_first_not_last",
    "head_shifted", "head_fields", "last_head_fields", "words_as_last", "last_ends", "starts_lower", "ocr",
)


class BoundaryModel:
    """A logistic regression over ``FEATURES``: its bias and one weight per feature."""

    def __init__(self, weights: dict[str, float], bias: float, meta: dict | None = None) -> None:
        unknown = set(weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"weights for unknown features: {sorted(unknown)}")
        self.weights = [weights.get(name, 0.0) for name in FEATURES]
        self.bias = bias
        self.meta = meta or {}

    @classmethod
    def from_json(cls, text: str) -> BoundaryModel:
        data = json.loads(text)
        return cls(data["weights"], data["bias"], data.get("meta"))

    def to_json(self) -> str:
        return json.dumps({"bias": self.bias, "weights": dict(zip(FEATURES, self.weights, strict=True)),
                           "meta": self.meta}, indent=1)

    def probability(self, x: Sequence[float]) -> float:
        z = self.bias + sum(w * v for w, v in zip(self.weights, x, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


_SHIPPED: BoundaryModel | None = None


def shipped() -> BoundaryModel:
    """The model trained on every development family (``boundary_model.json`` in this package)."""
    global _SHIPPED
    if _SHIPPED is None:
        _SHIPPED = BoundaryModel.from_json(
            resources.files("shared.encounters").joinpath("boundary_model.json").read_text())
    return _SHIPPED


_CONFLICT, _CONTINUES, _MARKER_NEXT, _MARKER_ONE = (FEATURES.index(n) for n in
                                                    ("conflict", "continues", "marker_next", "marker_one"))
# The page's structure says a document starts, whatever its words: it cuts as a strong rule does.
STRUCTURE = ("running_stopped", "reopens", "foot_stopped", "opens_as_first_not_last", "first_line_shifted",
             "banner_new", "new_form")
_STRUCTURE = tuple(FEATURES.index(n) for n in STRUCTURE)
_HEAD_REPEATED, _NEW_FORM, _TITLE_OTHER, _REOPENS, _DATE_OUTSIDE = (
    FEATURES.index(n) for n in ("head_repeated", "new_form", "title_other", "reopens", "date_outside"))
SUPPORT = 0.2  # a rule's cue cuts unless the model gives the cut less than this ...
VETO = -2.5  # ... and the page's evidence against a cut weighs at least this much
WEAK_SUPPORT = 0.35  # a weak rule's cue cuts from this probability


# What says a page continues the one before, whatever the words: its top repeats the previous
# page's (a running banner, a report's heading), its words are the previous page's.
CONTINUATION = ("head_as_last", "head_shape_as_last", "words_as_last", "starts_lower", "marker_follows")
_CONTINUATION = tuple(FEATURES.index(n) for n in CONTINUATION)


def against(x: Sequence[float], model: BoundaryModel) -> float:
    """The continuation features' evidence against a cut: their negative contributions."""
    return sum(min(0.0, model.weights[i] * x[i]) for i in _CONTINUATION)


MODES = ("hybrid", "model", "rules")  # how pages are cut: the default; the model alone; the rules alone


def decide(x: Sequence[float], rule: str | None, model: BoundaryModel, mode: str = "hybrid") -> tuple[bool, float]:
    """(starts a document, the model's probability) for a page's features and the cue the
    rules of ``grouping.boundary`` read ("certain", "strong", "weak" or None).

    Another patient's banner always cuts; a page that says it continues never does. A page count
    that restarts or a title Textract's LAYOUT names cuts, and so does the same form filled again
    with other values (no next page does that). A report's own banner repeated, numbers and all,
    holds the page unless it is titled as another kind, dates itself outside the document's days
    (the same clinic's next visit under its letterhead and the patient's banner), or opens, below
    that banner, as the document's first page did (``reopens``: the same patient's next record).
    A strong cue, or the page's structure (``STRUCTURE``), cuts unless the model finds the cut
    unlikely and the page's continuation features speak against it; a weak cue needs some
    support from the model; without a cue, the model alone decides.
    ``mode`` "model" and "rules" are the two halves alone, for the bench's comparison.
    """
    p = model.probability(x)
    if mode == "rules":
        return rule is not None, p  # any cue of the rules cuts (they read conflicts and continuations)
    if x[_CONFLICT]:
        return True, 1.0  # another patient's banner: never the same record
    if x[_CONTINUES] or (x[_MARKER_NEXT] and not x[_MARKER_ONE]):
        return False, p  # the page says it continues the document before it
    if mode == "model":
        return p >= THRESHOLD, p
    if rule == "certain":
        return True, 1.0  # a page count that restarts or ended, a title LAYOUT names: the page says so
    if x[_NEW_FORM]:
        return True, max(p, STRONG)  # the same form filled again with other values: another document
    if x[_HEAD_REPEATED] and not x[_MARKER_ONE] and not x[_TITLE_OTHER] and not x[_REOPENS] and not x[_DATE_OUTSIDE]:
        return False, p  # the report's own banner again, numbers and all, no other kind's title or day: its next page
    if rule is None and any(x[i] for i in _STRUCTURE):
        rule = "strong"  # the running head or foot stopped, the first page's opening again, a new banner
    if rule == "strong":
        return p >= SUPPORT or against(x, model) > VETO, max(p, STRONG)
    if rule == "weak":
        return p >= WEAK_SUPPORT, p
    return p >= THRESHOLD, p
