"""The words the model reads: the system prompt (the rules), the user message for one window
(its page texts, cut at ``MAX_PAGE_CHARS``, each after its Textract layout blocks where it has
them, and the carried-forward encounter), and the re-ask after an unusable answer.

Two variants of the window message, one per way of reading (``windows``): sequential, with a
summary of the encounter carried forward from the window before; concurrent, with the readable
page(s) just before the window as context (``<page ... context="true">``, never to be assigned),
the carried-forward encounter being the one on them. The window cache is keyed by these exact
messages: a change here makes every cached answer stale."""

from __future__ import annotations

import json
from collections.abc import Sequence

from shared.encounters.openai.windows import Document, Draft
from shared.models import EncounterType

MAX_PAGE_CHARS = 12_000  # a page's text beyond this is cut (OCR of a dense table, a runaway layer)

_TYPES = "; ".join(f"{t.value}" for t in EncounterType)

SYSTEM_PROMPT = f"""You split medical documents into healthcare encounters.
A patient's upload often concatenates several source documents (hospital discharge summaries, GP
visit notes, lab reports, imaging reports, letters). Find each encounter and its pages.

You see one window of pages at a time, with absolute page numbers. Rules:
- Every page of the window is in exactly one encounter, or listed in unassigned_pages (blank pages,
  fax cover sheets with no clinical content). Use absolute page numbers, as given.
- A multi-page document about one visit, stay, test or letter is ONE encounter. A new document
  starts with a new letterhead or title, "Page 1 of N" restarting, another facility, or another
  date of service.
- encounter_type is one of: {_TYPES}. inpatient_stay: admission or discharge summary;
  emergency: emergency department attendance; outpatient_visit: clinic or GP visit; telehealth:
  phone or video consultation; lab_report: pathology or laboratory results; imaging_report:
  radiology (X-ray, CT, MRI, ultrasound); procedure: operation or procedure report;
  medication_list; referral_letter: referral or letter between clinicians; administrative;
  other.
- Dates: only dates printed in the pages, as YYYY-MM-DD. Never invent a date, never use today's
  date, never use a date of birth, a print or fax date. null when the pages give none.
- Patient: the name, date of birth and identifier (MRN, patient ID) the encounter's banner shows,
  exactly as printed; null when not printed. A page showing another patient than the pages
  around it is a separate encounter (a misfiled page): never merge two patients' pages.
- review_reasons: weak_boundary when you are unsure where the encounter starts or ends;
  conflicting_identity when its patient differs from another encounter's; no_date when no date.
- Evidence: for each filled field, quote the exact words as printed and give their page.
- The carried-forward encounter is the last one found before this window. If the first pages of
  this window continue it, set continues_open_encounter on that encounter.
- Set open_encounter_continues if the last encounter seems to continue after this window.
"""

# Concurrent windows: the same rules, but what came before is shown as pages, not summarised.
CONTEXT_SYSTEM_PROMPT = SYSTEM_PROMPT.replace(
    """- The carried-forward encounter is the last one found before this window. If the first pages of
  this window continue it, set continues_open_encounter on that encounter.
""",
    """- Pages marked context="true" are the last pages before this window, read with the window before
  it and shown only so you can see whether this window's first pages continue them. Never put a
  context page in an encounter or in unassigned_pages, and take no field or evidence from it.
- The carried-forward encounter is the one on the context pages. If the first pages of this window
  continue it (the same document: same stay, visit, test or letter, same patient), set
  continues_open_encounter on that encounter; a new letterhead, title, "Page 1 of N" or patient
  starts a new one.
""",
)


def window_messages(
    window: Sequence[int], doc: Document, carried: Draft | None, max_page_chars: int
) -> list[dict[str, str]]:
    """The system prompt and the window's user message (sequential: the hand-off)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": window_prompt(window, doc, carried, max_page_chars)},
    ]


def context_window_messages(
    window: Sequence[int], doc: Document, context: Sequence[int], max_page_chars: int
) -> list[dict[str, str]]:
    """The system prompt and the window's user message (concurrent: the pages before as context)."""
    parts = [
        f"The document has {doc.page_count} pages. This window holds pages {window[0]} to {window[-1]}.",
        "Context (the last pages before this window, not to be assigned; none at the start):",
        *[_page(n, doc, max_page_chars, context=True) for n in context],
        "Pages:",
        *[_page(n, doc, max_page_chars) for n in window],
    ]
    return [{"role": "system", "content": CONTEXT_SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(parts)}]


def window_prompt(window: Sequence[int], doc: Document, carried: Draft | None, max_page_chars: int) -> str:
    parts = [
        f"The document has {doc.page_count} pages. This window holds pages {window[0]} to {window[-1]}.",
        "Carried-forward encounter (the last one found before this window; null at the start):",
        f"<carried>{json.dumps(carried.summary() if carried else None)}</carried>",
        "Pages:",
    ]
    parts += [_page(n, doc, max_page_chars) for n in window]
    return "\n".join(parts)


def _page(n: int, doc: Document, max_page_chars: int, context: bool = False) -> str:
    text = doc.texts[n]
    if n not in doc.readable:
        return f'<page number="{n}" blank="true"></page>'
    if len(text) > max_page_chars:
        text = text[:max_page_chars] + "\n[... rest of page cut]"
    mark = ' context="true"' if context else ""
    return f'<page number="{n}"{mark}>\n{_layout(doc.layout.get(n))}{text}\n</page>'


def _layout(blocks) -> str:
    """What Textract's LAYOUT says the page's title, headers, footers and page number are
    (boundary cues), before its text; nothing for a page read without it."""
    if not blocks:
        return ""
    lines = "\n".join(f"{b.kind}: {' '.join(b.text.split())[:200]}" for b in blocks)
    return f"<layout>\n{lines}\n</layout>\n"


def reask_messages(messages: list[dict[str, str]], reason: object) -> list[dict[str, str]]:
    """The window's messages again, with why the previous answer could not be used."""
    return [
        *messages[:2],
        {"role": "user", "content": f"Your previous answer could not be used: {reason}. Answer again."},
    ]
