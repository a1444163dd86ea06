"""The document read in windows of pages, and the encounters reconciled across them.

``Document`` is the page texts once per page number, with the readable ones (the blank-page
rule of ``shared.encounters.text``). Two ways to read it, one reconciliation:

- ``read_windows`` (sequential) walks the windows in order, carrying the last encounter found
  (a ``Draft``) into the next window's request; the model says whether the window's first
  encounter continues it.
- ``read_windows_concurrently`` asks every window at once (at most ``max_concurrency`` in
  flight), each shown the readable page(s) before it as context (``context_before``), not to be
  assigned; the model says whether the window's first encounter continues the one on them.

Either way ``Reconciler`` places the answered windows in page order, after the answers, never in
the order they came back: a continuing encounter is merged into the encounter holding the last
page claimed before the window (dates: the earliest start and latest end; type, provider,
facility and patient: the first part's, a part typed ``other`` taking the next part's type;
evidence and review reasons of every part), blank pages belong to no encounter and a window
with nothing readable is not asked (the join carries over the gap). A window that does not fit
(``TooLong``) is read as two halves. ``check`` turns one window's answer into drafts: page
numbers must be the window's own (else ``BadAnswer``), pages claimed twice stay with the first
encounter, readable pages the model skipped join the encounter on the page before them, and
every quote, date and patient field goes through ``grounding``."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

from shared.encounters.openai.grounding import grounded_date, locate, parse_date, patient_fields
from shared.encounters.openai.schema import BadAnswer, TooLong, WindowAnswer
from shared.encounters.text import is_blank
from shared.errors import ModelAnswerInvalidError
from shared.models import Encounter, EncounterType, Evidence, PageText, Timing, page_ranges
from shared.observability import logger

_FIELDS = ("date_start", "date_end", "provider", "facility")
_PATIENT = ("patient_name", "patient_dob", "patient_identifier")


class Document:
    def __init__(self, pages: Sequence[PageText]) -> None:
        unique: dict[int, str] = {}
        layout: dict[int, list] = {}
        for page in sorted(pages, key=lambda p: p.page_number):
            unique.setdefault(page.page_number, page.text)
            if page.layout:
                layout.setdefault(page.page_number, page.layout)
        self.texts = unique
        self.layout = layout  # page number -> its Textract LAYOUT blocks (title, header, footer, ...)
        self.pages = list(pages)
        self.numbers = list(unique)
        self.readable = {n for n, text in unique.items() if not is_blank(text)}
        self.page_count = max(unique) if unique else 0


@dataclasses.dataclass
class Draft:
    """An encounter being assembled, possibly across windows."""

    encounter_type: EncounterType
    timing: Timing
    pages: set[int]
    confidence_pages: float  # confidence weighted by pages, for the merged average
    fields: dict[str, tuple[Any, Evidence | None]]  # date_start/date_end/provider/facility
    type_evidence: Evidence | None
    reasons: set[str] = dataclasses.field(default_factory=set)
    open: bool = False

    @property
    def confidence(self) -> float:
        return self.confidence_pages / max(1, len(self.pages))

    def merge(self, other: Draft) -> None:
        if self.encounter_type == EncounterType.OTHER:
            self.encounter_type, self.type_evidence = other.encounter_type, other.type_evidence
        self.pages |= other.pages
        self.confidence_pages += other.confidence_pages
        self.reasons |= other.reasons
        for name, (value, evidence) in other.fields.items():
            mine = self.fields.get(name)
            if mine is None:
                self.fields[name] = (value, evidence)
            elif name == "date_start" and value < mine[0]:
                self.fields[name] = (value, evidence)
            elif name == "date_end" and value > mine[0]:
                self.fields[name] = (value, evidence)

    def summary(self) -> dict[str, Any]:
        """The hand-off the next window sees."""
        return {
            "pages": _ranges_text(sorted(self.pages)),
            "encounter_type": self.encounter_type.value,
            "timing": self.timing.value,
            **{name: _plain(self.fields[name][0]) if name in self.fields else None for name in _FIELDS + _PATIENT},
            "previous_window_says_it_continues": self.open,
        }

    def encounter(self) -> Encounter:
        evidence = [e for e in (self.type_evidence,) if e]
        evidence += [ev for _, (_, ev) in sorted(self.fields.items()) if ev is not None]
        start = self.fields.get("date_start", (None, None))[0]
        end = self.fields.get("date_end", (None, None))[0]
        if start and end and end < start:
            end = None
            evidence = [e for e in evidence if e.field != "date_end"]
        return Encounter(
            encounter_type=self.encounter_type,
            timing=self.timing,
            date_start=start,
            date_end=end,
            provider=self.fields.get("provider", (None, None))[0],
            facility=self.fields.get("facility", (None, None))[0],
            page_ranges=page_ranges(sorted(self.pages)),
            confidence=round(min(1.0, max(0.0, self.confidence)), 3),
            evidence=_unique(evidence),
            patient_name=self.fields.get("patient_name", (None, None))[0],
            patient_dob=self.fields.get("patient_dob", (None, None))[0],
            patient_identifier=self.fields.get("patient_identifier", (None, None))[0],
            review_reasons=sorted(self.reasons),
        )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _unique(evidence: list[Evidence]) -> list[Evidence]:
    seen, out = set(), []
    for item in evidence:
        key = (item.field, item.page_number, item.start, item.end)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _ranges_text(numbers: Sequence[int]) -> str:
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in page_ranges(numbers))


# An answered window: its drafts, each tagged "continues" (merge into the encounter before the
# window) or "new", and whether the last one runs on past the window.
Answered = tuple[list[tuple[str, Draft]], bool]


class Reconciler:
    """The answered windows placed in page order: what both ways of reading share."""

    def __init__(self) -> None:
        self.drafts: list[Draft] = []
        self.carried: Draft | None = None  # the encounter holding the last page claimed so far

    def place(self, answer: Answered, shown: int | None = None) -> None:
        """The window's drafts, a continuing one merged into the encounter before the window; with
        ``shown`` (the last context page the window was shown) only into the encounter holding
        that page: a window that says it continues an unassigned page (a cover sheet) starts anew."""
        found, open_after = answer
        for role, draft in found:
            joinable = self.carried is not None and (shown is None or shown in self.carried.pages)
            if role == "continues" and joinable:
                self.carried.merge(draft)
            else:
                self.drafts.append(draft)
        last = max(self.drafts, key=lambda d: max(d.pages)) if self.drafts else None
        if last is not None:
            last.open = open_after
        self.carried = last

    def result(self) -> list[Draft]:
        return sorted(self.drafts, key=lambda d: min(d.pages))


def plan_windows(doc: Document, pages_per_window: int) -> list[list[int]]:
    """The windows with something readable, in page order (a blank window is never asked)."""
    chunks = (doc.numbers[i : i + pages_per_window] for i in range(0, len(doc.numbers), pages_per_window))
    return [w for w in chunks if any(n in doc.readable for n in w)]


def context_before(doc: Document, window: Sequence[int], count: int) -> list[int]:
    """The last ``count`` readable pages before the window: what it is shown of the one before."""
    before = [n for n in doc.numbers if n < window[0] and n in doc.readable]
    return before[-count:] if count > 0 else []


def _halves(window: list[int]) -> list[list[int]]:
    if len(window) == 1:
        raise ModelAnswerInvalidError("a single page does not fit the model's answer or context") from None
    logger.info("window split", extra={"first_page": window[0], "last_page": window[-1]})
    half = len(window) // 2
    return [window[:half], window[half:]]


def read_windows(
    doc: Document, pages_per_window: int, ask: Callable[[list[int], Draft | None], Answered]
) -> tuple[list[Draft], int]:
    """Every window asked in page order (``ask(window, carried)``); the drafts in page order and
    the number of windows answered. A window with nothing readable is not asked: the hand-off
    carries over the gap."""
    reconciler = Reconciler()
    windows = collections.deque(plan_windows(doc, pages_per_window))
    window_count = 0
    while windows:
        window = windows.popleft()
        if not any(n in doc.readable for n in window):
            continue  # a half of a split window with nothing to read
        try:
            answer = ask(window, reconciler.carried)
        except TooLong:
            windows.extendleft(reversed(_halves(window)))
            continue
        window_count += 1
        reconciler.place(answer)
    return reconciler.result(), window_count


# A window answered side by side: its pages, the context pages it was shown, its answer.
Read = tuple[list[int], list[int], Answered]


def read_windows_concurrently(
    doc: Document,
    pages_per_window: int,
    ask: Callable[[list[int], list[int]], Answered],
    max_concurrency: int,
    context_pages: int = 1,
) -> tuple[list[Draft], int]:
    """``ask_windows_concurrently`` then ``reconcile``: the drafts in page order and the number
    of windows answered."""
    answers = ask_windows_concurrently(doc, pages_per_window, ask, max_concurrency, context_pages)
    return reconcile(answers), len(answers)


def ask_windows_concurrently(
    doc: Document,
    pages_per_window: int,
    ask: Callable[[list[int], list[int]], Answered],
    max_concurrency: int,
    context_pages: int = 1,
) -> list[Read]:
    """Every window asked at once, at most ``max_concurrency`` in flight (``ask(window,
    context)``); the answered windows in page order.

    The first failure stops windows not yet started; those in flight finish (their answers are
    paid for, and kept by ``ask``), then it is raised. A window too long for the model is asked
    again as two halves, each with its own context."""
    answers: dict[int, Read] = {}  # by first page
    failure: BaseException | None = None
    with concurrent.futures.ThreadPoolExecutor(max(1, max_concurrency), thread_name_prefix="window") as pool:
        running: dict[concurrent.futures.Future, tuple[list[int], list[int]]] = {}

        def start(window: list[int]) -> None:
            if any(n in doc.readable for n in window):
                context = context_before(doc, window, context_pages)
                running[pool.submit(ask, window, context)] = (window, context)

        for window in plan_windows(doc, pages_per_window):
            start(window)
        while running:
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                window, context = running.pop(future)
                if future.cancelled():
                    continue
                try:
                    answers[window[0]] = (window, context, future.result())
                except TooLong:
                    if failure is None:
                        try:
                            for half in _halves(window):
                                start(half)
                        except ModelAnswerInvalidError as exc:
                            failure = exc
                except BaseException as exc:  # noqa: BLE001 - raised below, after the windows in flight
                    failure = failure or exc
                if failure is not None:
                    for other in running:
                        other.cancel()
    if failure is not None:
        raise failure
    return [answers[first] for first in sorted(answers)]


def reconcile(answers: Sequence[Read]) -> list[Draft]:
    """The windows read side by side, placed in page order (whatever order they came back in)."""
    reconciler = Reconciler()
    for _, context, answer in sorted(answers, key=lambda read: read[0][0]):
        reconciler.place(answer, context[-1] if context else None)
    return reconciler.result()


def check(
    answer: WindowAnswer, window: Sequence[int], doc: Document, can_continue: bool
) -> tuple[list[Draft], int, int | None]:
    """The window's drafts, repaired; the number of repairs; the index of the continuing draft
    (only when there is an encounter before the window to continue: ``can_continue``).

    Raises ``BadAnswer`` when the answer is not about this window's pages at all.
    """
    in_window = set(window)
    readable = [n for n in window if n in doc.readable]
    claimed: dict[int, int] = {}
    stray = 0
    pages_of: list[set[int]] = []
    for index, enc in enumerate(answer.encounters):
        pages: set[int] = set()
        for r in enc.page_ranges:
            first, last = sorted((r.first_page, r.last_page))
            for n in range(first, min(last, first + 10_000) + 1):
                if n not in in_window:
                    stray += 1
                elif n in doc.readable and n not in claimed:
                    claimed[n] = index
                    pages.add(n)
        pages_of.append(pages)
    said_unassigned = {n for n in answer.unassigned_pages if n in in_window}
    covered = set(claimed) | (said_unassigned & set(readable))
    if readable and (len(covered) * 2 < len(readable) or stray > len(covered)):
        raise BadAnswer(
            f"the answer does not account for this window's pages: use absolute page numbers "
            f"{window[0]} to {window[-1]} and put every page in one encounter or in unassigned_pages"
        )

    repairs = 0
    for n in readable:
        if n in claimed or n in said_unassigned:
            continue
        # A page the model skipped: most often the continuation of the page before it.
        before = [claimed[m] for m in readable if m < n and m in claimed]
        after = [claimed[m] for m in readable if m > n and m in claimed]
        owner = before[-1] if before else (after[0] if after else None)
        if owner is not None:
            claimed[n] = owner
            pages_of[owner].add(n)
            repairs += 1

    drafts: list[Draft] = []
    continuing: int | None = None
    for enc, pages in zip(answer.encounters, pages_of, strict=True):
        if not pages:
            continue
        fields: dict[str, tuple[Any, Evidence | None]] = {}
        located: dict[str, Evidence] = {}
        for item in enc.evidence:
            if item.field in located or item.page_number not in in_window:
                continue
            span = locate(item.quote, doc.texts.get(item.page_number, ""))
            if span:
                located[item.field] = Evidence(
                    field=item.field, page_number=item.page_number, start=span[0], end=span[1]
                )
        start = grounded_date(parse_date(enc.date_start), located.get("date_start"), doc.texts)
        end_evidence = located.get("date_end")
        end = parse_date(enc.date_end)
        if end is not None and end_evidence is None and start is not None and end == start[0]:
            end = start  # a one-day encounter: the start's quote stands for both
        else:
            end = grounded_date(end, end_evidence, doc.texts)
        if start is not None:
            fields["date_start"] = start
        if end is not None:
            fields["date_end"] = (end[0], end[1] if end[1] and end[1].field == "date_end" else None)
        for name in ("provider", "facility"):
            value = getattr(enc, name)
            if value and value.strip():
                fields[name] = (" ".join(value.split())[:200], located.get(name))
        fields.update(patient_fields(enc, pages, located, doc.texts))
        confidence = enc.confidence if math.isfinite(enc.confidence) else 0.5
        drafts.append(
            Draft(
                encounter_type=enc.encounter_type,
                timing=enc.timing,
                pages=pages,
                confidence_pages=min(1.0, max(0.0, confidence)) * len(pages),
                fields=fields,
                type_evidence=located.get("encounter_type"),
                reasons=set(enc.review_reasons),
            )
        )
        first_readable = readable[0] if readable else None
        if can_continue and continuing is None and enc.continues_open_encounter and first_readable in pages:
            continuing = len(drafts) - 1
    return drafts, repairs, continuing
