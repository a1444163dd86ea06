"""What the model claims, checked against the page text: a quote becomes an ``Evidence`` span
only where it is printed, a date is kept only when its quote (or its page) shows the date's
year, and the patient's name and identifier only where the encounter's own pages print them.
Nothing here trusts the answer; everything it cannot find is dropped."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from shared.encounters.openai.schema import WindowEncounter
from shared.models import Evidence

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def locate(quote: str, text: str) -> tuple[int, int] | None:
    """Where ``quote`` is in ``text``: exactly, else ignoring case and runs of whitespace."""
    quote = quote.strip()
    if not quote:
        return None
    at = text.find(quote)
    if at >= 0:
        return at, at + len(quote)
    tokens = quote.split()
    pattern = r"\s+".join(re.escape(t) for t in tokens)
    m = re.search(pattern, text, re.I)
    return (m.start(), m.end()) if m else None


def parse_date(value: str | None) -> dt.date | None:
    """A YYYY-MM-DD the model gave, if it is one (and a plausible year)."""
    if not value or not _ISO.match(value.strip()):
        return None
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        return None
    return day if 1900 <= day.year <= 2099 else None


def grounded_date(
    value: dt.date | None, evidence: Evidence | None, texts: Mapping[int, str]
) -> tuple[dt.date, Evidence] | None:
    """The date with its evidence, only if the quote is on the page and shows the year."""
    if value is None or evidence is None:
        return None
    text = texts.get(evidence.page_number, "")
    quote = text[evidence.start : evidence.end]
    years = (str(value.year), f"{value.year % 100:02d}")
    if any(y in quote for y in years) or str(value.year) in text:
        return value, evidence
    return None


def patient_fields(
    enc: WindowEncounter, pages: set[int], located: dict[str, Evidence], texts: Mapping[int, str]
) -> dict[str, tuple[Any, Evidence | None]]:
    """The patient fields the model read, each kept only where it is printed on the encounter's pages."""
    out: dict[str, tuple[Any, Evidence | None]] = {}
    for name in ("patient_name", "patient_identifier"):
        value = " ".join((getattr(enc, name) or "").split())[:200]
        if not value:
            continue
        for n in sorted(pages):
            span = locate(value, texts.get(n, ""))
            if span:
                out[name] = (value, Evidence(field=name, page_number=n, start=span[0], end=span[1]))
                break
    dob = grounded_date(parse_date(enc.patient_dob), located.get("patient_dob"), texts)
    if dob is not None and dob[1].page_number in pages:
        out["patient_dob"] = dob
    return out
