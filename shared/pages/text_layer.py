"""A PDF page's text layer: its words and lines with boxes on the page as displayed (after
/Rotate), in reading order (blocks top to bottom as the text itself runs, which may be
sideways), or None when the layer is no good (too little text, a broken font mapping, a scan
with a stamp of text on top) and the page needs OCR."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterable

import pymupdf

from shared.models import Box, Line, PageText, Word
from shared.pages.page import Limits
from shared.pages.prepare import characters

# PyMuPDF's default word flags less two: without TEXT_PRESERVE_LIGATURES a ligature
# glyph reads as its letters ("fi", not U+FB01), so "fibrillation" matches downstream;
# without TEXT_CID_FOR_UNKNOWN_UNICODE a glyph with no Unicode mapping reads as U+FFFD
# and counts against the text layer instead of passing for a plausible character.
_WORD_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP

# A text layer with more than this share of unmapped, private-use or control characters
# comes from a broken font mapping: OCR the page instead.
_MAX_GARBAGE_SHARE = 0.1
_GARBAGE_CATEGORIES = frozenset({"Cc", "Co", "Cs", "Cn"})

# A scanned page with a little real text on top (a fax header, a stamped page number, a
# Bates number) must still be OCRed: its text is not the page's content.
_SCAN_IMAGE_COVER = 0.5
_STAMP_TEXT_COVER = 0.02

_Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in points; plain floats are
# an order of magnitude faster than pymupdf.Rect for the thousands of words on a page.


def native_text(page: pymupdf.Page, number: int, images: list[dict], limits: Limits) -> PageText | None:
    started = time.perf_counter()
    try:
        raw_words = page.get_text("words", flags=_WORD_FLAGS)
    except Exception:
        # The text layer is an optimisation: a page that rendered but whose text cannot
        # be extracted is still a page, and OCR will read it.
        return None

    # Word coordinates are in the unrotated page, from the top-left of the cropbox; the
    # rotation matrix (a multiple of 90 degrees) takes them to the page as displayed,
    # which is what was rendered.
    a, b, c, d, e, f = page.rotation_matrix
    width, height = page.rect.width, page.rect.height
    lines: dict[tuple[int, int], list[tuple[_Rect, str]]] = {}
    text_area = 0.0
    for x0, y0, x1, y1, text, block_no, line_no, _word_no in raw_words:
        u0, v0 = a * x0 + c * y0 + e, b * x0 + d * y0 + f
        u1, v1 = a * x1 + c * y1 + e, b * x1 + d * y1 + f
        rect = (min(u0, u1), min(v0, v1), max(u0, u1), max(v0, v1))
        if not text.strip() or not (0 <= (rect[0] + rect[2]) / 2 <= width and 0 <= (rect[1] + rect[3]) / 2 <= height):
            continue  # drawn outside the visible page
        text_area += (rect[2] - rect[0]) * (rect[3] - rect[1])
        lines.setdefault((block_no, line_no), []).append((rect, text))

    blocks: dict[int, list[list[tuple[_Rect, str]]]] = {}
    for (block_no, _), line_words in lines.items():
        blocks.setdefault(block_no, []).append(line_words)
    # Reading order: blocks top to bottom, then left to right, as the text itself stands
    # (a page may show its text sideways); lines and words within a block in the order
    # the page draws them.
    key = _READING_ORDER[_writing_direction(lines.values())]
    ordered = sorted(blocks.values(), key=lambda block: key(_union(r for line in block for r, _ in line)))
    text = "\n\n".join("\n".join(" ".join(t for _, t in line) for line in block) for block in ordered)

    if not _is_usable(text, limits.native_text_min_chars):
        return None
    image_cover = max((_cover(image["bbox"], page) for image in images), default=0.0)
    if image_cover >= _SCAN_IMAGE_COVER and text_area / (width * height) < _STAMP_TEXT_COVER:
        return None

    out_lines: list[Line] = []
    out_words: list[Word] = []
    for block in ordered:
        for line in block:
            line_box = _box(_union(r for r, _ in line), width, height)
            out_lines.append(Line(text=" ".join(t for _, t in line), box=line_box))
            out_words.extend(Word(text=t, box=_box(r, width, height)) for r, t in line)
    return PageText(
        page_number=number,
        text=text,
        lines=out_lines,
        words=out_words,
        confidence=None,
        engine="native",
        duration_ms=(time.perf_counter() - started) * 1000,
    )


def _is_usable(text: str, min_chars: int) -> bool:
    if characters(text) < min_chars:
        return False
    chars = [c for c in text if not c.isspace()]
    garbage = sum(c == "\ufffd" or unicodedata.category(c) in _GARBAGE_CATEGORIES for c in chars)
    return garbage <= _MAX_GARBAGE_SHARE * len(chars)


def _cover(bbox: Iterable[float], page: pymupdf.Page) -> float:
    """The share of the page an image covers (in unrotated coordinates, like its bbox)."""
    x0, y0, x1, y1 = bbox
    page_width, page_height = page.cropbox.width, page.cropbox.height
    w = max(0.0, min(x1, page_width) - max(x0, 0.0))
    h = max(0.0, min(y1, page_height) - max(y0, 0.0))
    return w * h / (page_width * page_height)


def _union(rects: Iterable[_Rect]) -> _Rect:
    x0s, y0s, x1s, y1s = zip(*rects)
    return (min(x0s), min(y0s), max(x1s), max(y1s))


def _writing_direction(lines: Iterable[list[tuple[_Rect, str]]]) -> str:
    """Which way most lines run on the displayed page: right, down, left or up."""
    votes = dict.fromkeys(_READING_ORDER, 0)
    for line in lines:
        if len(line) < 2:
            continue
        (first, _), (last, _) = line[0], line[-1]
        dx = (last[0] + last[2] - first[0] - first[2]) / 2
        dy = (last[1] + last[3] - first[1] - first[3]) / 2
        votes[max((dx, "right"), (dy, "down"), (-dx, "left"), (-dy, "up"))[1]] += 1
    return max(votes, key=lambda direction: (votes[direction], direction == "right"))


# Sort keys of a block's rect (x0, y0, x1, y1) that put blocks in reading order for text
# running that way: the next line of text is below (right), to the left (down), above
# (left) or to the right (up) of the previous one.
_READING_ORDER: dict[str, Callable[[_Rect], tuple[float, float]]] = {
    "right": lambda r: (r[1], r[0]),
    "down": lambda r: (-r[2], r[1]),
    "left": lambda r: (-r[3], -r[2]),
    "up": lambda r: (r[0], -r[3]),
}


def _box(rect: _Rect, width: float, height: float) -> Box:
    return Box.from_pixels(*rect, width, height)
