"""``OpenAiEncounters``: Pass 0.5 through an OpenAI-compatible chat model with structured output.

The document is read in windows of ``pages_per_window`` pages, in order. Each request carries
the window's page texts and a summary of the last encounter found so far (the hand-off), and
the answer is bound to ``WindowAnswer``'s JSON schema (``response_format``, strict). The model
says, per window, which encounters it sees with absolute page numbers, whether the first of
them continues the carried-forward encounter, and whether the last one runs on past the
window; continuations are merged here, so a hospital stay that crosses a window boundary comes
back as one encounter, not two.

The answer is then checked against the document, never trusted:

- page numbers must be the window's own (a window answered with 1..N instead of 41..60, or an
  unparseable answer, is asked once more with the reason, then is a ``ModelAnswerInvalidError``);
  pages claimed twice stay with the first encounter, readable pages the model skipped join the
  encounter on the page before them, blank pages belong to no encounter;
- a date is kept only when its evidence quote is found on a page of the window and shows the
  date's year (or its page does): dates the document does not give are never invented;
- evidence quotes become ``Evidence`` spans (page, character offsets) by locating them in the
  page text; a quote that is not there is dropped;
- the patient's name and identifier are kept only where they are printed on the encounter's
  pages, the birth date only with a quote showing its year (``review.finish`` then adds the
  reasons the pages give: no date, low OCR confidence, and ``conflicting_identity`` on every
  encounter of a file whose encounters show more than one patient, which sets the
  ``identity_conflict`` of the ``Discovery``);
- the result must build a valid ``Manifest`` (every page once, ranges inside the document).

Transport: the client has ``max_retries=0``; this module owns backoff. A 429 or 5xx waits for
the endpoint's Retry-After (or 1, 2, 4 s) while the wait fits in ``max_wait_s`` and attempts
remain, so windows already paid for are not thrown away by a short throttle; past that it raises
``ThrottledError`` / ``DependencyUnavailableError`` with ``retry_after_s`` set to the hint and
the queue delivers the message again. An answer cut off by its length, or a window larger than
the model's context, is split in two and asked again.

Tokens (every call, re-asks and malformed answers included) and their cost go into the
``Discovery``. Logs carry window page numbers, attempts, token counts, durations and request
ids; never prompts, answers or page text.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import email.utils
import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.encounters import review
from shared.errors import (
    DependencyUnavailableError,
    ModelAnswerInvalidError,
    ModelRequestRejectedError,
    RetryableError,
    ThrottledError,
)
from shared.models import Discovery, Encounter, EncounterType, Evidence, Manifest, PageText, Timing, page_ranges
from shared.observability import logger
from shared.ports import EncounterProvider

# The SDK logs whole request bodies (the prompt, i.e. page text) at DEBUG, and OPENAI_LOG=debug
# turns that on: hold its logger at INFO whatever the environment says.
logging.getLogger("openai").setLevel(max(logging.getLogger("openai").level, logging.INFO))

MIN_WORDS = 3  # fewer words of 3+ letters than this: a blank page (the heuristic's rule too)
MAX_PAGE_CHARS = 12_000  # a page's text beyond this is cut (OCR of a dense table, a runaway layer)
MAX_ASKS = 2  # an answer that cannot be repaired is asked for once more, then the file fails

# --- the schema the model answers in (strict structured output) ------------------------------

_TYPES = "; ".join(f"{t.value}" for t in EncounterType)


class QuotedEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: Literal[
        "encounter_type", "date_start", "date_end", "provider", "facility", "patient_name", "patient_dob",
        "patient_identifier",
    ]
    page_number: int = Field(description="absolute page number the quote is on")
    quote: str = Field(description="the words exactly as printed on that page, a few words, no paraphrase")


class WindowPageRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_page: int = Field(description="absolute page number, inclusive")
    last_page: int = Field(description="absolute page number, inclusive")


class WindowEncounter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    continues_open_encounter: bool = Field(
        description="true only if these pages continue the carried-forward encounter (same document, "
        "same stay or visit); only the encounter holding the window's first pages can"
    )
    encounter_type: EncounterType
    timing: Timing = Field(
        description="happened: took place; planned: a future appointment or booking; no_encounter: "
        "no real encounter (e.g. a form, an insurance letter)"
    )
    date_start: str | None = Field(
        description="YYYY-MM-DD, only a date printed in the pages for this encounter (admission, visit, "
        "collection, report, letter date); null when none is printed. Never guess."
    )
    date_end: str | None = Field(
        description="YYYY-MM-DD discharge or last day when printed; the same as date_start for a one-day "
        "encounter; null when unknown"
    )
    provider: str | None = Field(description="the responsible clinician as printed, or null")
    facility: str | None = Field(description="the hospital, practice, lab or clinic as printed, or null")
    page_ranges: list[WindowPageRange] = Field(description="the pages of this encounter in this window")
    patient_name: str | None = Field(description="the patient's name as its banner prints it, or null")
    patient_dob: str | None = Field(description="the patient's date of birth, YYYY-MM-DD, as printed, or null")
    patient_identifier: str | None = Field(description="the MRN or other patient identifier as printed, or null")
    review_reasons: list[Literal["weak_boundary", "conflicting_identity", "no_date"]] = Field(
        description="why a person should check this encounter: weak_boundary when its first or last page is "
        "a guess; conflicting_identity when its pages show another patient than the rest; empty when sure"
    )
    confidence: float = Field(description="0 to 1")
    evidence: list[QuotedEvidence] = Field(
        description="for each field you filled (dates above all), where it is printed"
    )


class WindowAnswer(BaseModel):
    """What the model returns for one window of pages."""

    model_config = ConfigDict(extra="forbid")

    encounters: list[WindowEncounter] = Field(description="in page order")
    unassigned_pages: list[int] = Field(description="pages that belong to no encounter (blank, cover sheets)")
    open_encounter_continues: bool = Field(
        description="true if the last encounter seems to run on past this window's last page"
    )


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

# --- the answer, checked --------------------------------------------------------------------


class _BadAnswer(Exception):
    """An answer that cannot be used; the reason is shown to the model (no patient data)."""


class _TooLong(Exception):
    """The window does not fit: its answer was cut off, or its prompt exceeds the context."""


@dataclasses.dataclass
class _Usage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, usage: Any) -> tuple[int, int]:
        """Count a call's usage (an SDK object or a raw JSON dict; None when the server gave none)."""
        self.calls += 1
        if usage is None:
            return 0, 0
        if isinstance(usage, dict):
            inp, out = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        else:
            inp, out = usage.prompt_tokens or 0, usage.completion_tokens or 0
        self.input_tokens += int(inp)
        self.output_tokens += int(out)
        return int(inp), int(out)


@dataclasses.dataclass
class _Draft:
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

    def merge(self, other: _Draft) -> None:
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


_FIELDS = ("date_start", "date_end", "provider", "facility")
_PATIENT = ("patient_name", "patient_dob", "patient_identifier")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


def _readable(text: str) -> bool:
    return len(re.findall(r"[A-Za-z]{3,}", text)) >= MIN_WORDS


def _locate(quote: str, text: str) -> tuple[int, int] | None:
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


def _date(value: str | None) -> dt.date | None:
    if not value or not _ISO.match(value.strip()):
        return None
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        return None
    return day if 1900 <= day.year <= 2099 else None


class _Document:
    def __init__(self, pages: Sequence[PageText]) -> None:
        unique: dict[int, str] = {}
        for page in sorted(pages, key=lambda p: p.page_number):
            unique.setdefault(page.page_number, page.text)
        self.texts = unique
        self.pages = list(pages)
        self.numbers = list(unique)
        self.readable = {n for n, text in unique.items() if _readable(text)}
        self.page_count = max(unique) if unique else 0


def _check(
    answer: WindowAnswer, window: Sequence[int], doc: _Document, carried: _Draft | None
) -> tuple[list[_Draft], int, int | None]:
    """The window's drafts, repaired; the number of repairs; the index of the continuing draft.

    Raises ``_BadAnswer`` when the answer is not about this window's pages at all.
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
        raise _BadAnswer(
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

    drafts: list[_Draft] = []
    continuing: int | None = None
    for enc, pages in zip(answer.encounters, pages_of, strict=True):
        if not pages:
            continue
        fields: dict[str, tuple[Any, Evidence | None]] = {}
        located: dict[str, Evidence] = {}
        for item in enc.evidence:
            if item.field in located or item.page_number not in in_window:
                continue
            span = _locate(item.quote, doc.texts.get(item.page_number, ""))
            if span:
                located[item.field] = Evidence(
                    field=item.field, page_number=item.page_number, start=span[0], end=span[1]
                )
        start = _grounded_date(_date(enc.date_start), located.get("date_start"), doc)
        end_evidence = located.get("date_end")
        end = _date(enc.date_end)
        if end is not None and end_evidence is None and start is not None and end == start[0]:
            end = start  # a one-day encounter: the start's quote stands for both
        else:
            end = _grounded_date(end, end_evidence, doc)
        if start is not None:
            fields["date_start"] = start
        if end is not None:
            fields["date_end"] = (end[0], end[1] if end[1] and end[1].field == "date_end" else None)
        for name in ("provider", "facility"):
            value = getattr(enc, name)
            if value and value.strip():
                fields[name] = (" ".join(value.split())[:200], located.get(name))
        fields.update(_patient_fields(enc, pages, located, doc))
        confidence = enc.confidence if math.isfinite(enc.confidence) else 0.5
        drafts.append(
            _Draft(
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
        if carried is not None and continuing is None and enc.continues_open_encounter and first_readable in pages:
            continuing = len(drafts) - 1
    return drafts, repairs, continuing


def _patient_fields(
    enc: WindowEncounter, pages: set[int], located: dict[str, Evidence], doc: _Document
) -> dict[str, tuple[Any, Evidence | None]]:
    """The patient fields the model read, each kept only where it is printed on the encounter's pages."""
    out: dict[str, tuple[Any, Evidence | None]] = {}
    for name in ("patient_name", "patient_identifier"):
        value = " ".join((getattr(enc, name) or "").split())[:200]
        if not value:
            continue
        for n in sorted(pages):
            span = _locate(value, doc.texts.get(n, ""))
            if span:
                out[name] = (value, Evidence(field=name, page_number=n, start=span[0], end=span[1]))
                break
    dob = _grounded_date(_date(enc.patient_dob), located.get("patient_dob"), doc)
    if dob is not None and dob[1].page_number in pages:
        out["patient_dob"] = dob
    return out


def _grounded_date(
    value: dt.date | None, evidence: Evidence | None, doc: _Document
) -> tuple[dt.date, Evidence] | None:
    """The date with its evidence, only if the quote is on the page and shows the year."""
    if value is None or evidence is None:
        return None
    text = doc.texts.get(evidence.page_number, "")
    quote = text[evidence.start : evidence.end]
    years = (str(value.year), f"{value.year % 100:02d}")
    if any(y in quote for y in years) or str(value.year) in text:
        return value, evidence
    return None


# --- transport -------------------------------------------------------------------------------


def _retry_after(headers: Any) -> float | None:
    """The endpoint's hint in seconds: retry-after-ms, retry-after (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _transport_error(exc: Exception) -> Exception:
    """The docpipe error for an SDK exception (``_TooLong`` for a window over the context)."""
    if isinstance(exc, openai.RateLimitError):
        return ThrottledError("the model endpoint throttled the request (429)", _retry_after(exc.response.headers))
    if isinstance(exc, openai.APITimeoutError):
        return DependencyUnavailableError("the model call timed out")
    if isinstance(exc, openai.APIConnectionError):
        return DependencyUnavailableError("the model endpoint could not be reached")
    if isinstance(exc, openai.APIStatusError):
        status, hint = exc.status_code, _retry_after(exc.response.headers)
        if status >= 500 or status in (408, 409):
            return DependencyUnavailableError(f"the model endpoint answered {status}", hint)
        if status in (401, 403, 404):
            # Configuration (key, model name, base URL): fixable without touching the document,
            # so the message is kept for redelivery (and the DLQ) rather than failing the file.
            return DependencyUnavailableError(f"the model endpoint refused the configuration ({status})", hint)
        code = getattr(exc, "code", None)
        if status == 400 and code == "context_length_exceeded":
            return _TooLong()
        return ModelRequestRejectedError(f"the model endpoint rejected the request ({status})")
    return DependencyUnavailableError(f"the model call failed ({type(exc).__name__})")


def _backoff_s(attempt: int) -> float:
    return float(min(8, 2 ** (attempt - 1)))


def _reasoning_model(model: str) -> bool:
    # o1/o3/o4 and gpt-5 reject a temperature other than the default.
    return bool(re.match(r"^(?:o\d|gpt-5)", model.split("/")[-1]))


class OpenAiEncounters(EncounterProvider):
    """Encounters from an OpenAI-compatible chat model, in page windows, with strict structured output.

    ``client`` is an ``openai.OpenAI`` built with ``max_retries=0``. ``discover`` raises
    ``ThrottledError`` / ``DependencyUnavailableError`` (``retry_after_s`` = the endpoint's
    hint) for transient failures it could not wait out, ``ModelAnswerInvalidError`` for answers
    that stay unusable after one re-ask, ``ModelRequestRejectedError`` for a request the
    endpoint refuses as such.
    """

    name = "openai"
    caches_windows = True  # discover() takes a window_cache (handlers/discover.py)

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        pages_per_window: int = 20,
        input_usd_per_mtok: float = 0.0,
        output_usd_per_mtok: float = 0.0,
        max_attempts: int = 3,
        max_wait_s: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        max_page_chars: int = MAX_PAGE_CHARS,
    ) -> None:
        if pages_per_window < 1:
            raise ValueError("pages_per_window must be at least 1")
        self._client = client
        self.model = model
        self.pages_per_window = pages_per_window
        self.input_usd_per_mtok = input_usd_per_mtok
        self.output_usd_per_mtok = output_usd_per_mtok
        self.max_attempts = max(1, max_attempts)
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self.max_page_chars = max_page_chars
        self._local = threading.local()  # the window cache of the discover() call on this thread

    @classmethod
    def from_settings(cls, settings, api_key: str | None = None) -> OpenAiEncounters:
        key = api_key or (settings.openai_api_key.get_secret_value() if settings.openai_api_key else "")
        if not key and not settings.openai_base_url:
            raise ValueError("OPENAI_API_KEY is not set (ENCOUNTER_PROVIDER=openai needs it, or OPENAI_BASE_URL)")
        client = openai.OpenAI(
            # Local OpenAI-compatible servers often take no key; the SDK insists on one.
            api_key=key or "not-needed",
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout_s,
            max_retries=0,
        )
        return cls(
            client,
            settings.openai_model,
            pages_per_window=settings.llm_pages_per_window,
            input_usd_per_mtok=settings.llm_input_usd_per_mtok,
            output_usd_per_mtok=settings.llm_output_usd_per_mtok,
        )

    # --- the document --------------------------------------------------------------------

    def discover(self, pages: list[PageText], window_cache: Any = None) -> Discovery:
        """``window_cache`` (``get(key)``, ``put(key, answer, input_tokens, output_tokens)``)
        keeps each answer as soon as it is paid for, keyed by the model and the exact request:
        a later call for the same document replays the answers it has and asks only the rest."""
        self._local.cache = window_cache
        try:
            return self._discover(pages)
        finally:
            self._local.cache = None

    def _discover(self, pages: list[PageText]) -> Discovery:
        doc = _Document(pages)
        usage = _Usage()
        drafts: list[_Draft] = []
        windows = collections.deque(
            doc.numbers[i : i + self.pages_per_window] for i in range(0, len(doc.numbers), self.pages_per_window)
        )
        carried: _Draft | None = None
        window_count = 0
        while windows:
            window = windows.popleft()
            if not any(n in doc.readable for n in window):
                continue  # nothing to read: no call, and the hand-off carries over the gap
            try:
                answer = self._ask(window, doc, carried, usage)
            except _TooLong:
                if len(window) == 1:
                    raise ModelAnswerInvalidError("a single page does not fit the model's answer or context") from None
                half = len(window) // 2
                windows.extendleft([window[half:], window[:half]])
                logger.info("window split", extra={"first_page": window[0], "last_page": window[-1]})
                continue
            window_count += 1
            found, open_after = answer
            for role, draft in found:
                if role == "continues" and carried is not None:
                    carried.merge(draft)
                else:
                    drafts.append(draft)
            last = max(drafts, key=lambda d: max(d.pages)) if drafts else None
            if last is not None:
                last.open = open_after
            carried = last

        cost = (usage.input_tokens * self.input_usd_per_mtok + usage.output_tokens * self.output_usd_per_mtok) / 1e6
        drafts.sort(key=lambda d: min(d.pages))
        encounters, conflict = review.finish([d.encounter() for d in drafts], doc.pages)
        discovery = Discovery(
            encounters=encounters,
            identity_conflict=conflict,
            provider=self.name,
            model=self.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=round(cost, 6),
        )
        try:
            # The document's own pages decide the count; the stage builds the stored manifest again.
            Manifest.build(uuid.UUID(int=0), max(doc.page_count, 1), discovery)
        except ValidationError as exc:
            raise ModelAnswerInvalidError("the reconciled encounters do not make a valid manifest") from exc
        logger.info(
            "encounters discovered by the model",
            extra={
                "pages": len(doc.numbers),
                "windows": window_count,
                "calls": usage.calls,
                "encounters": len(discovery.encounters),
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": discovery.cost_usd,
            },
        )
        return discovery

    # --- one window -----------------------------------------------------------------------

    def _ask(
        self, window: list[int], doc: _Document, carried: _Draft | None, usage: _Usage
    ) -> tuple[list[tuple[str, _Draft]], bool]:
        messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": self._window_prompt(window, doc, carried)},
        ]
        for ask in range(1, MAX_ASKS + 1):
            try:
                answer = self._call(messages, window, usage, ask)
                drafts, repairs, continuing = _check(answer, window, doc, carried)
            except _BadAnswer as exc:
                logger.warning(
                    "model answer unusable",
                    extra={"first_page": window[0], "last_page": window[-1], "ask": ask},
                )
                if ask == MAX_ASKS:
                    raise ModelAnswerInvalidError(
                        f"the model's answer for pages {window[0]}-{window[-1]} was unusable twice"
                    ) from exc
                messages = [
                    *messages[:2],
                    {"role": "user", "content": f"Your previous answer could not be used: {exc}. Answer again."},
                ]
                continue
            logger.info(
                "window answered",
                extra={
                    "first_page": window[0],
                    "last_page": window[-1],
                    "ask": ask,
                    "encounters": len(drafts),
                    "continues": continuing is not None,
                    "repaired_pages": repairs,
                },
            )
            tagged = [("continues" if i == continuing else "new", d) for i, d in enumerate(drafts)]
            return tagged, answer.open_encounter_continues
        raise AssertionError("unreachable")

    def _window_prompt(self, window: list[int], doc: _Document, carried: _Draft | None) -> str:
        parts = [
            f"The document has {doc.page_count} pages. This window holds pages {window[0]} to {window[-1]}.",
            "Carried-forward encounter (the last one found before this window; null at the start):",
            f"<carried>{json.dumps(carried.summary() if carried else None)}</carried>",
            "Pages:",
        ]
        for n in window:
            text = doc.texts[n]
            if n not in doc.readable:
                parts.append(f'<page number="{n}" blank="true"></page>')
                continue
            if len(text) > self.max_page_chars:
                text = text[: self.max_page_chars] + "\n[... rest of page cut]"
            parts.append(f'<page number="{n}">\n{text}\n</page>')
        return "\n".join(parts)

    def _call(self, messages: list[dict[str, str]], window: list[int], usage: _Usage, ask: int) -> WindowAnswer:
        """One answer from the model, waiting out short throttles; ``_BadAnswer`` if malformed."""
        extra: dict[str, Any] = {} if _reasoning_model(self.model) else {"temperature": 0}
        cache = getattr(self._local, "cache", None)
        key = hashlib.sha256(json.dumps([self.model, messages]).encode()).hexdigest() if cache is not None else ""
        saved = cache.get(key) if cache is not None else None
        if saved is not None:
            # Paid for by an earlier delivery: counted in this discovery's tokens, not asked again.
            usage.input_tokens += saved["input_tokens"]
            usage.output_tokens += saved["output_tokens"]
            logger.info("window answer reused", extra={"first_page": window[0], "last_page": window[-1], "ask": ask})
            return WindowAnswer.model_validate(saved["answer"])
        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            t0 = time.perf_counter()
            try:
                raw = self._parse_api().with_raw_response.parse(
                    model=self.model, messages=messages, response_format=WindowAnswer, **extra
                )
            except openai.OpenAIError as exc:
                error = _transport_error(exc)
                if isinstance(error, _TooLong):
                    raise error from exc
                wait = error.retry_after_s if isinstance(error, RetryableError) else None
                wait = _backoff_s(attempt) if wait is None else wait
                give_up = not isinstance(error, RetryableError) or attempt == self.max_attempts
                logger.warning(
                    "model call failed",
                    extra={
                        "first_page": window[0],
                        "last_page": window[-1],
                        "call_attempt": attempt,
                        "error": type(exc).__name__,
                        "status": getattr(exc, "status_code", None),
                        "retry_after_s": wait if isinstance(error, RetryableError) else None,
                    },
                )
                if give_up or waited + wait > self.max_wait_s:
                    raise error from exc
                self._sleep(wait)
                waited += wait
                continue
            before = (usage.input_tokens, usage.output_tokens)
            answer = self._read(raw, window, usage, ask, attempt, (time.perf_counter() - t0) * 1000)
            if cache is not None:
                cache.put(key, answer.model_dump(mode="json"), usage.input_tokens - before[0],
                          usage.output_tokens - before[1])
            return answer
        raise AssertionError("unreachable")

    def _parse_api(self) -> Any:
        # ``chat.completions.parse`` since openai 1.92; before that it lived under ``beta``.
        chat = self._client.chat.completions
        return chat if hasattr(chat, "parse") else self._client.beta.chat.completions

    def _read(self, raw: Any, window: list[int], usage: _Usage, ask: int, attempt: int, ms: float) -> WindowAnswer:
        request_id = raw.headers.get("x-request-id")
        try:
            completion = raw.parse()
        except openai.LengthFinishReasonError as exc:
            completion = getattr(exc, "completion", None)
            usage.add(completion.usage if completion is not None else _raw_usage(raw))
            raise _TooLong() from exc
        except openai.ContentFilterFinishReasonError as exc:
            usage.add(_raw_usage(raw))
            raise _BadAnswer("the answer was stopped by a content filter") from exc
        except (ValidationError, ValueError) as exc:
            usage.add(_raw_usage(raw))
            raise _BadAnswer("the answer did not match the JSON schema") from exc
        inp, out = usage.add(completion.usage)
        logger.info(
            "model answered",
            extra={
                "first_page": window[0],
                "last_page": window[-1],
                "ask": ask,
                "call_attempt": attempt,
                "input_tokens": inp,
                "output_tokens": out,
                "duration_ms": round(ms, 1),
                "request_id": request_id,
            },
        )
        if not completion.choices:
            raise _BadAnswer("the answer had no choices")
        message = completion.choices[0].message
        if message.parsed is None:
            raise _BadAnswer("the answer was a refusal or empty" if message.refusal else "the answer was empty")
        return message.parsed


def _raw_usage(raw: Any) -> dict | None:
    try:
        body = raw.http_response.json()
    except (ValueError, AttributeError):
        return None
    return body.get("usage") if isinstance(body, dict) else None
