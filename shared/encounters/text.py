"""Page text as lines, and the spans and ranked values read from it (shared by every cue)."""

from __future__ import annotations

import dataclasses
import re

from shared.models import Evidence

MIN_WORDS = 3  # fewer words of 3+ letters than this: a blank page


@dataclasses.dataclass(frozen=True)
class Line:
    start: int
    end: int
    text: str


def lines_of(text: str) -> list[Line]:
    return [Line(m.start(), m.end(), m.group()) for m in re.finditer(r"[^\r\n]+", text) if m.group().strip()]


HEADING_WORDS = re.compile(r"[A-Za-z][A-Za-z'/&\-]*")


def heading_words(text: str) -> list[str] | None:
    """A line that reads as a section heading (upper case, a few words, no digits, no table
    cells), as its words; None for any other line."""
    text = text.strip()
    words = HEADING_WORDS.findall(text)
    if not 1 <= len(words) <= 8 or len(text) > 60 or "|" in text or any(c.isdigit() for c in text):
        return None
    letters = "".join(words)
    if len(letters) < 4 or not letters.isupper() or text.endswith(","):
        return None
    if all(len(w) <= 3 for w in words):
        return None  # "AM EDT", "PM", "N/A": a time's end or a cell, not a heading
    return words


def is_blank(text: str) -> bool:
    return len(re.findall(r"[A-Za-z]{3,}", text)) < MIN_WORDS


@dataclasses.dataclass(frozen=True)
class Span:
    page: int
    start: int
    end: int

    def evidence(self, field: str) -> Evidence:
        return Evidence(field=field, page_number=self.page, start=self.start, end=self.end)


@dataclasses.dataclass(frozen=True)
class Found:
    """A value read from a page, ranked: lower ranks are better-labelled."""

    value: str
    span: Span
    rank: int

