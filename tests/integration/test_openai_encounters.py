"""OpenAiEncounters through the real ``openai`` client, over HTTP, to a local OpenAI-compatible
server that checks every request (model, strict json_schema response format, window pages,
hand-off) and answers with structured output from the packet's known truth.

Issue 6: a 120-page packet goes through in windows and encounters that cross window boundaries
come back whole; 429 with Retry-After, 5xx, timeouts, malformed and misnumbered answers; dates
never invented; tokens and cost; a redelivered discover message costs no model call.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.bootstrap import Deps
from shared.encounters import HeuristicEncounters
from shared.encounters.openai import OpenAiEncounters
from shared.encounters.openai.schema import WindowAnswer
from shared.errors import (
    DependencyUnavailableError,
    ModelAnswerInvalidError,
    ModelRequestRejectedError,
    PermanentError,
    ThrottledError,
)
from shared.models import EncounterType, FileStatus, Manifest, PageText, ShellFile, Stage
from shared.ports import QueueMessage
from shared.runtime.events import sqs_event
from shared.runtime.records import handle_record
from shared.settings import Settings
from shared.stages import discover
from tests.fakes import CannedOcr, InMemoryDb, InMemoryQueue, InMemoryStorage

MODEL = "test-model-1"
ET = EncounterType
CANARY = "Zebulon Quartermaine"  # a patient name that must never reach the logs

# --- a packet whose truth is known ------------------------------------------------------------


@dataclasses.dataclass
class TrueEncounter:
    key: str
    kind: EncounterType
    pages: range
    start: dt.date | None
    end: dt.date | None
    facility: str


def packet_120() -> tuple[list[PageText], list[TrueEncounter]]:
    """120 pages: encounters of 1..27 pages, several across the 20-page window boundaries, one
    spanning three windows, blank pages between some, one undated letter."""
    spans = [
        ("gp1", ET.OUTPATIENT, 1, 3, dt.date(2023, 1, 9), dt.date(2023, 1, 9)),
        ("lab1", ET.LAB, 4, 4, dt.date(2023, 1, 10), None),
        ("stay1", ET.INPATIENT, 5, 27, dt.date(2023, 2, 11), dt.date(2023, 2, 20)),  # crosses 20|21
        ("img1", ET.IMAGING, 29, 30, dt.date(2023, 3, 1), None),  # page 28 blank
        ("stay2", ET.INPATIENT, 31, 67, dt.date(2023, 4, 2), dt.date(2023, 4, 30)),  # crosses 40|41, 60|61
        ("letter", ET.REFERRAL, 68, 70, None, None),  # undated
        ("proc", ET.PROCEDURE, 71, 85, dt.date(2023, 6, 5), dt.date(2023, 6, 5)),  # crosses 80|81
        ("gp2", ET.OUTPATIENT, 86, 100, dt.date(2023, 7, 7), dt.date(2023, 7, 7)),  # ends at 100|101
        ("ed", ET.EMERGENCY, 101, 119, dt.date(2023, 8, 8), dt.date(2023, 8, 9)),
    ]
    truth = [TrueEncounter(k, t, range(a, b + 1), s, e, f"{k.title()} Hospital") for k, t, a, b, s, e in spans]
    by_page = {p: enc for enc in truth for p in enc.pages}
    pages = []
    for n in range(1, 121):
        enc = by_page.get(n)
        if enc is None:
            pages.append(PageText(page_number=n, text="  \n", engine="tesseract"))
            continue
        k = n - enc.pages.start + 1
        lines = [enc.facility, f"{enc.kind.value.replace('_', ' ').upper()}  Page {k} of {len(enc.pages)}"]
        if k == 1:
            lines.append(f"Patient: {CANARY}")
            if enc.start:
                lines.append(f"Date of service: {enc.start.strftime('%d/%m/%Y')}")
        if k == len(enc.pages) and enc.end and enc.end != enc.start:
            lines.append(f"Discharged: {enc.end.strftime('%d %B %Y')}")
        lines.append("Notes continue with findings and the plan for follow-up care at the clinic.")
        pages.append(PageText(page_number=n, text="\n".join(lines), engine="native"))
    return pages, truth


# --- the server -----------------------------------------------------------------------------

Reply = tuple[int, dict[str, str], dict | str]  # status, headers, JSON body (or raw text)


@dataclasses.dataclass
class Seen:
    model: str
    pages: list[int]
    carried: dict | None
    note: str | None
    schema_name: str
    context: list[int] = dataclasses.field(default_factory=list)  # concurrent windows: the pages shown before


class FakeOpenAi:
    """/v1/chat/completions on 127.0.0.1: validates requests, answers via ``script`` or the oracle."""

    def __init__(self, truth: list[TrueEncounter], pages: list[PageText], window: int) -> None:
        self.truth = truth
        self.texts = {p.page_number: p.text for p in pages}
        self.by_page = {p: enc for enc in truth for p in enc.pages}
        self.window = window
        self.requests: list[Seen] = []
        self.problems: list[str] = []
        self.script: collections.deque[Callable[[Seen], Reply]] = collections.deque()
        self.oracle_tweak: Callable[[Seen, dict], dict] | None = None
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, reply = fake.answer(self.path, body)
                data = reply if isinstance(reply, str) else json.dumps(reply)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data.encode())))
                    self.end_headers()
                    self.wfile.write(data.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

        return Handler

    def check(self, path: str, body: dict) -> Seen:
        def need(cond: bool, problem: str) -> None:
            if not cond:
                self.problems.append(problem)

        need(path == "/v1/chat/completions", f"path {path}")
        need(body.get("model") == MODEL, f"model {body.get('model')}")
        rf = body.get("response_format", {})
        need(rf.get("type") == "json_schema", "response_format is not json_schema")
        js = rf.get("json_schema", {})
        need(js.get("strict") is True, "schema is not strict")
        schema = js.get("schema", {})
        need(
            set(schema.get("properties", {})) == {"encounters", "unassigned_pages", "open_encounter_continues"},
            "schema properties",
        )
        need(schema.get("additionalProperties") is False, "schema allows extra properties")
        enc_schema = schema.get("$defs", {}).get("WindowEncounter", {})
        need(
            set(enc_schema.get("required", [])) == set(enc_schema.get("properties", {})) and enc_schema.get("required"),
            "every encounter field must be required in strict mode",
        )
        kinds = schema.get("$defs", {}).get("EncounterType", {}).get("enum")
        need(kinds == [t.value for t in EncounterType], "encounter_type vocabulary")
        messages = body.get("messages", [])
        need(messages and messages[0]["role"] == "system", "no system message")
        user = messages[1]["content"] if len(messages) > 1 else ""
        pages = [int(n) for n in re.findall(r'<page number="(\d+)"(?: blank="true")?>', user)]
        context = [int(n) for n in re.findall(r'<page number="(\d+)" context="true">', user)]
        need(bool(pages) and pages == list(range(pages[0], pages[0] + len(pages))), f"pages {pages} not a window")
        need(len(pages) <= self.window, f"window of {len(pages)} pages")
        need(all(n < pages[0] for n in context), f"context {context} not before the window")
        m = re.search(r"This window holds pages (\d+) to (\d+)", user)
        need(m is not None and [int(m[1]), int(m[2])] == [pages[0], pages[-1]], "window header")
        carried = re.search(r"<carried>(.*?)</carried>", user, re.S)
        need(carried is not None or "Context (the last pages before this window" in user, "no hand-off, no context")
        note = messages[2]["content"] if len(messages) > 2 else None
        return Seen(body.get("model"), pages, json.loads(carried[1]) if carried else None, note, js.get("name", ""),
                    context)

    def answer(self, path: str, body: dict) -> Reply:
        seen = self.check(path, body)
        with self._lock:
            self.requests.append(seen)
            step = self.script.popleft() if self.script else None
        if step is not None:
            reply = step(seen)
            if reply is not None:
                return reply
        return 200, {"x-request-id": f"req-{len(self.requests)}"}, completion(self.oracle(seen))

    def patient_on(self, page: int) -> str | None:
        m = re.search(r"Patient: (.+)", self.texts.get(page, ""))
        return m[1].strip() if m else None

    def oracle(self, seen: Seen) -> dict:
        """The right answer for the window, from the truth (a perfect model)."""
        pages = seen.pages
        carried_last = seen.context[-1] if seen.context else None
        if seen.carried:
            carried_last = int(re.findall(r"\d+", seen.carried["pages"])[-1])
        groups: list[tuple[TrueEncounter, list[int]]] = []
        unassigned = []
        for n in pages:
            enc = self.by_page.get(n)
            if enc is None:
                unassigned.append(n)
            elif groups and groups[-1][0] is enc:
                groups[-1][1].append(n)
            else:
                groups.append((enc, [n]))
        out = []
        for enc, ps in groups:
            evidence, start, end = [], None, None
            if enc.start and enc.pages.start in ps:
                start = enc.start.isoformat()
                quote = f"Date of service: {enc.start.strftime('%d/%m/%Y')}"
                evidence.append({"field": "date_start", "page_number": enc.pages.start, "quote": quote})
                end = start if enc.end == enc.start else None
            if enc.end and enc.end != enc.start and enc.pages[-1] in ps:
                end = enc.end.isoformat()
                quote = f"Discharged: {enc.end.strftime('%d %B %Y')}"
                evidence.append({"field": "date_end", "page_number": enc.pages[-1], "quote": quote})
            evidence.append({"field": "facility", "page_number": ps[0], "quote": enc.facility})
            continues = carried_last is not None and self.by_page.get(carried_last) is enc and ps[0] == pages[0]
            out.append(
                {
                    "continues_open_encounter": continues,
                    "encounter_type": enc.kind.value,
                    "timing": "happened",
                    "date_start": start,
                    "date_end": end,
                    "provider": None,
                    "facility": enc.facility,
                    "page_ranges": [{"first_page": ps[0], "last_page": ps[-1]}],
                    "patient_name": self.patient_on(enc.pages.start) if enc.pages.start in ps else None,
                    "patient_dob": None,
                    "patient_identifier": None,
                    "review_reasons": [],
                    "confidence": 0.9,
                    "evidence": evidence,
                }
            )
        after = pages[-1] + 1
        open_after = bool(groups) and self.by_page.get(after) is groups[-1][0] and pages[-1] in groups[-1][1]
        answer = {"encounters": out, "unassigned_pages": unassigned, "open_encounter_continues": open_after}
        if self.oracle_tweak:
            answer = self.oracle_tweak(seen, answer)
        WindowAnswer.model_validate(answer)  # the oracle itself must speak the schema
        return answer

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def completion(content: dict | str, finish_reason: str = "stop", usage=(1000, 200)) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {
                    "role": "assistant",
                    "content": content if isinstance(content, str) else json.dumps(content),
                    "refusal": None,
                },
            }
        ],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def error(status: int, headers: dict[str, str] | None = None, code: str | None = None):
    def step(seen: Seen) -> Reply:
        return status, headers or {}, {"error": {"message": "test", "type": "test", "code": code}}

    return step


@pytest.fixture
def packet():
    return packet_120()


@pytest.fixture
def server(packet):
    pages, truth = packet
    with FakeOpenAi(truth, pages, window=20) as fake:
        yield fake
    assert fake.problems == [], fake.problems


def provider(server: FakeOpenAi, window: int = 20, timeout: float = 10.0, mode: str = "concurrent",
             **kwargs) -> OpenAiEncounters:
    settings = Settings(
        llm_window_mode=mode,
        encounter_provider="openai",
        openai_api_key="sk-test",
        openai_base_url=server.base_url,
        openai_model=MODEL,
        openai_timeout_s=timeout,
        llm_pages_per_window=window,
        llm_input_usd_per_mtok=0.15,
        llm_output_usd_per_mtok=0.60,
    )
    made = OpenAiEncounters.from_settings(settings)
    for key, value in kwargs.items():
        setattr(made, key, value)
    return made


def assignment(discovery, page_count: int) -> dict[int, int | None]:
    return Manifest.build(uuid.uuid4(), page_count, discovery).page_assignments


# --- windows and the hand-off -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sequential", "concurrent"])
def test_120_pages_in_windows_keep_encounters_across_boundaries_whole(server, packet, caplog, capfd, mode):
    pages, truth = packet
    caplog.set_level(logging.DEBUG)  # the SDK's DEBUG logs would carry the prompt

    discovery = provider(server, mode=mode).discover(pages)

    windows = sorted(server.requests, key=lambda s: s.pages[0])
    assert [(s.pages[0], s.pages[-1]) for s in windows] == [(a, a + 19) for a in range(1, 121, 20)]
    if mode == "sequential":
        # Six windows of 20 pages, in order, each carrying the hand-off of the one before.
        assert server.requests == windows
        assert server.requests[0].carried is None
        assert server.requests[1].carried["pages"] == "5-20" and server.requests[1].carried[
            "previous_window_says_it_continues"
        ]
        assert server.requests[2].carried["pages"] == "31-40"
        assert server.requests[3].carried["pages"] == "31-60"  # stay2, merged over two windows already
    else:
        # Six windows at once, each shown the page before it as context, none a hand-off.
        assert [s.context for s in windows] == [[], [20], [40], [60], [80], [100]]
        assert all(s.carried is None for s in windows)

    # One encounter per true encounter, with exactly its pages: nothing split at 20|21, 40|41, 60|61, 80|81.
    got = {tuple(map(tuple, e.page_ranges)): e for e in discovery.encounters}
    assert sorted(got) == sorted(((enc.pages.start, enc.pages[-1]),) for enc in truth)
    for enc in truth:
        found = got[((enc.pages.start, enc.pages[-1]),)]
        assert found.encounter_type == enc.kind
        assert (found.date_start, found.date_end) == (enc.start, enc.end if enc.kind != ET.LAB else None) or (
            enc.kind in (ET.LAB, ET.IMAGING) and found.date_start == enc.start and found.date_end is None
        )
    stay2 = got[((31, 67),)]
    # Start read in window 2, end in window 4: both kept, each with the span it came from.
    spans = {e.field: e for e in stay2.evidence}
    assert spans["date_start"].page_number == 31 and spans["date_end"].page_number == 67
    assert pages[66].text[spans["date_end"].start : spans["date_end"].end] == "Discharged: 30 April 2023"

    manifest = Manifest.build(uuid.uuid4(), 120, discovery, pages)  # validates: every page once
    assert manifest.page_assignments[28] is None and manifest.page_assignments[120] is None
    assert sum(v is not None for v in manifest.page_assignments.values()) == 118

    # Tokens and cost of six calls, in the manifest.
    assert (discovery.input_tokens, discovery.output_tokens) == (6000, 1200)
    assert discovery.cost_usd == pytest.approx((6000 * 0.15 + 1200 * 0.60) / 1e6)
    assert (manifest.provider, manifest.model, manifest.cost_usd) == ("openai", MODEL, discovery.cost_usd)

    # Logs carry counts and ids, never the page text or the patient's name: neither the records
    # (attributes included) nor the JSON lines written to stderr.
    assert any(getattr(r, "request_id", None) == "req-6" for r in caplog.records)
    assert any(getattr(r, "input_tokens", None) == 6000 for r in caplog.records)
    dumped = caplog.text + "".join(repr(vars(r)) for r in caplog.records) + capfd.readouterr().err
    assert CANARY not in dumped and "Notes continue" not in dumped and "Date of service" not in dumped

    # Whose: every encounter shows the one patient, with the span it was read from; one patient, no conflict.
    assert not discovery.identity_conflict and not manifest.identity_conflict
    for found in discovery.encounters:
        assert found.patient_name == CANARY
        span = next(e for e in found.evidence if e.field == "patient_name")
        assert pages[span.page_number - 1].text[span.start : span.end] == CANARY
    # How sure: only the undated letter needs review, for that reason, and ranks below the rest.
    letter = got[((68, 70),)]
    assert letter.needs_review and letter.review_reasons == ["no_date"]
    assert [e for e in discovery.encounters if e.needs_review] == [letter]
    assert letter.confidence < min(e.confidence for e in discovery.encounters if e is not letter)


def test_window_size_is_a_setting(server, packet):
    pages, _ = packet
    server.window = 50
    discovery = provider(server, window=50).discover(pages)
    assert sorted((s.pages[0], s.pages[-1]) for s in server.requests) == [(1, 50), (51, 100), (101, 120)]
    assert len(discovery.encounters) == 9


def test_blank_windows_are_not_sent(packet, server):
    pages, _ = packet
    blank = [PageText(page_number=n, text="", engine="tesseract") for n in range(1, 41)]
    discovery = provider(server).discover(blank + [p.model_copy(update={"page_number": p.page_number + 40}) for p in pages[:3]])
    assert [e.page_ranges for e in discovery.encounters] == [[(41, 43)]]
    assert [(s.pages[0], s.pages[-1]) for s in server.requests] == [(41, 43)]


def test_an_answer_cut_off_by_length_splits_the_window(server, packet):
    pages, truth = packet

    def long_for_big_windows(seen: Seen):
        if len(seen.pages) > 10:
            return 200, {}, completion('{"encounters": [', finish_reason="length")
        return None

    server.script.extend([long_for_big_windows] * 3)
    discovery = provider(server, mode="sequential").discover(pages[:40])  # the script answers in call order
    windows = [(s.pages[0], s.pages[-1]) for s in server.requests]
    assert windows[:3] == [(1, 20), (1, 10), (11, 20)]
    got = sorted(tuple(map(tuple, e.page_ranges)) for e in discovery.encounters)
    assert ((5, 27),) in got  # still one stay across the split and the window boundary
    assert discovery.input_tokens == 1000 * len(server.requests)  # the cut-off answer is paid for too


# --- transport: throttling, server errors, timeouts ------------------------------------------


def test_429_with_a_long_retry_after_raises_throttled_with_the_hint(server, packet):
    pages, _ = packet
    server.script.append(error(429, {"Retry-After": "37"}))
    slept = []
    with pytest.raises(ThrottledError) as caught:
        provider(server, _sleep=slept.append).discover(pages[:10])
    assert caught.value.retry_after_s == 37 and caught.value.retryable
    assert len(server.requests) == 1 and slept == []  # the client itself did not retry (max_retries=0)
    assert isinstance(caught.value.__cause__, openai.RateLimitError)


def test_429_with_a_short_retry_after_is_waited_out(server, packet):
    pages, _ = packet
    server.script.extend([error(429, {"Retry-After": "2"}), error(429, {"retry-after-ms": "1500"})])
    slept = []
    discovery = provider(server, _sleep=slept.append).discover(pages[:10])
    assert slept == [2.0, 1.5] and len(server.requests) == 3
    assert len(discovery.encounters) == 3


def test_5xx_backs_off_then_gives_up_retryable(server, packet):
    pages, _ = packet
    server.script.extend([error(503)] * 3)
    slept = []
    with pytest.raises(DependencyUnavailableError) as caught:
        provider(server, _sleep=slept.append).discover(pages[:10])
    assert slept == [1.0, 2.0] and len(server.requests) == 3 and caught.value.retryable


def test_a_timeout_is_retryable(server, packet):
    pages, _ = packet
    server.delay_s = 1.0
    with pytest.raises(DependencyUnavailableError) as caught:
        provider(server, timeout=0.2, max_attempts=1).discover(pages[:5])
    assert isinstance(caught.value.__cause__, openai.APITimeoutError)


def test_a_bad_request_is_permanent(server, packet):
    pages, _ = packet
    server.script.append(error(400, code="invalid_request_error"))
    with pytest.raises(ModelRequestRejectedError):
        provider(server).discover(pages[:5])
    assert len(server.requests) == 1


def test_context_length_exceeded_splits_the_window(server, packet):
    pages, _ = packet
    server.script.append(error(400, code="context_length_exceeded"))
    discovery = provider(server).discover(pages[:20])
    windows = [(s.pages[0], s.pages[-1], s.context) for s in server.requests]
    assert windows[0] == (1, 20, []) and sorted(windows[1:]) == [(1, 10, []), (11, 20, [10])]  # halves at once
    assert [tuple(map(tuple, e.page_ranges)) for e in discovery.encounters][-1] == ((5, 20),)


# --- answers that cannot be used as they are ---------------------------------------------------


def test_a_malformed_answer_is_asked_again_once(server, packet):
    pages, _ = packet
    server.script.append(lambda seen: (200, {}, completion("this is not JSON at all")))
    discovery = provider(server).discover(pages[:10])
    assert len(server.requests) == 2
    assert server.requests[0].note is None and "could not be used" in server.requests[1].note
    assert len(discovery.encounters) == 3
    assert discovery.input_tokens == 2000  # the malformed answer was paid for, so it is counted


def test_malformed_twice_is_a_permanent_error(server, packet):
    pages, _ = packet
    wrong_shape = {"encounters": [{"type": "lab"}], "open_encounter_continues": False}
    server.script.extend([lambda seen: (200, {}, completion(wrong_shape))] * 2)
    with pytest.raises(ModelAnswerInvalidError) as caught:
        provider(server).discover(pages[:10])
    assert isinstance(caught.value, PermanentError) and caught.value.code == "llm_answer_invalid"
    assert len(server.requests) == 2


def test_window_relative_page_numbers_are_asked_again(server, packet):
    pages, truth = packet

    def relative(seen: Seen, answer: dict) -> dict:
        if len(server.requests) == 2 and seen.note is None:  # the second window, first ask: pages 1..20
            for enc in answer["encounters"]:
                for r in enc["page_ranges"]:
                    r["first_page"] -= 20
                    r["last_page"] -= 20
        return answer

    server.oracle_tweak = relative
    discovery = provider(server, mode="sequential").discover(pages[:40])  # "the second window" in call order
    assert [(s.pages[0], s.note is not None) for s in server.requests] == [(1, False), (21, False), (21, True)]
    assert "absolute page numbers 21 to 40" in server.requests[2].note
    assert ((5, 27),) in [tuple(map(tuple, e.page_ranges)) for e in discovery.encounters]


def test_skipped_and_doubly_claimed_pages_are_repaired(server, packet):
    pages, _ = packet

    def sloppy(seen: Seen, answer: dict) -> dict:
        encs = answer["encounters"]
        encs[0]["page_ranges"] = [{"first_page": 1, "last_page": 2}]  # page 3 skipped
        encs[1]["page_ranges"] = [{"first_page": 2, "last_page": 4}]  # page 2 claimed twice
        return answer

    server.oracle_tweak = sloppy
    discovery = provider(server).discover(pages[:4])
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)]]
    Manifest.build(uuid.uuid4(), 4, discovery)


def test_dates_without_evidence_on_the_page_are_dropped(server, packet):
    pages, _ = packet

    def invent(seen: Seen, answer: dict) -> dict:
        letter = next(e for e in answer["encounters"] if e["page_ranges"][0]["first_page"] == 68)
        letter["date_start"] = "2023-05-01"  # the letter prints no date
        letter["evidence"].append({"field": "date_start", "page_number": 68, "quote": "Dated 1 May 2023"})
        gp = next(e for e in answer["encounters"] if e["page_ranges"][0]["first_page"] == 71)
        gp["date_start"] = "2023-02-30"  # not a real date
        return answer

    server.oracle_tweak = invent
    discovery = provider(server).discover(pages[60:80])
    by_first = {e.page_ranges[0][0]: e for e in discovery.encounters}
    assert by_first[68].date_start is None and by_first[68].date_end is None
    assert by_first[71].date_start is None
    assert all(e.field not in ("date_start", "date_end") for e in by_first[68].evidence)


def test_missing_key_fails_at_start_naming_the_variable():
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAiEncounters.from_settings(Settings(encounter_provider="openai", openai_api_key=None))


# --- never paid twice, through the discover stage ----------------------------------------------


class CrashOnce(InMemoryDb):
    """A database whose first complete_discovery dies, as a process killed mid-write would."""

    def __init__(self) -> None:
        super().__init__()
        self.crashes = 1

    def complete_discovery(self, manifest):
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("killed between the model call and the write")
        return super().complete_discovery(manifest)


def _discovering_file(db: InMemoryDb, pages: list[PageText]) -> uuid.UUID:
    sfid = uuid.uuid4()
    db.create_shell_file(
        ShellFile(id=sfid, patient_id=uuid.uuid4(), storage_key="k", status=FileStatus.DISCOVERING, page_count=len(pages))
    )
    for page in pages:
        db.upsert_text(sfid, page)
    return sfid


def _deliver(deps: Deps, sfid: uuid.UUID, receive_count: int) -> None:
    msg = QueueMessage("discover", "m-1", "rh", json.dumps({"shell_file_id": str(sfid)}), receive_count)
    record = SQSRecord(sqs_event([msg], "arn:aws:sqs:us-east-1:000000000000:docpipe-discover", "us-east-1")["Records"][0])
    handle_record(Stage.DISCOVER, record, discover.run, deps)


@pytest.mark.parametrize("crash", [False, True], ids=["sequential", "crash-after-model-call"])
def test_a_second_delivery_costs_zero_model_calls(server, packet, tmp_path, crash):
    pages, _ = packet
    db = CrashOnce() if crash else InMemoryDb()
    deps = Deps(
        settings=Settings(storage_backend="local", local_storage_dir=tmp_path),
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=db,
        ocr=CannedOcr(),
        encounters=provider(server),
    )
    sfid = _discovering_file(db, pages)

    if crash:
        with pytest.raises(RuntimeError):
            _deliver(deps, sfid, 1)
        assert db.get_shell_file(sfid).status == FileStatus.DISCOVERING
    else:
        _deliver(deps, sfid, 1)
    calls = len(server.requests)
    assert calls == 6

    _deliver(deps, sfid, 2)
    _deliver(deps, sfid, 3)
    assert len(server.requests) == calls  # zero model calls for the redeliveries
    manifest = db.manifest(sfid)
    assert db.get_shell_file(sfid).status == FileStatus.COMPLETED
    assert len(manifest.encounters) == 9 and manifest.input_tokens == 6000  # what the one paid call cost


def test_postgres_keeps_the_discovery_across_a_crash(server, packet, stack_deps, monkeypatch):
    # Given a file discovering on the real database, and a process that dies right after the model answered
    pages, _ = packet
    db = stack_deps.db
    sfid = uuid.uuid4()
    db.create_shell_file(ShellFile(id=sfid, patient_id=uuid.uuid4(), storage_key="k", status=FileStatus.QUEUED))
    db.begin_preprocess(sfid)
    for page in pages:
        db.upsert_text(sfid, page)
    assert db.finish_preprocess(sfid, len(pages), needs_ocr=False)
    deps = stack_deps.with_parts(encounters=provider(server))
    real_complete = type(db).complete_discovery
    crashes = [1]

    def complete_once_crashing(self, manifest):
        if crashes.pop() if crashes else 0:
            raise RuntimeError("killed between the model call and the write")
        return real_complete(self, manifest)

    monkeypatch.setattr(type(db), "complete_discovery", complete_once_crashing)

    # When the message is delivered, crashes, and is delivered twice more
    with pytest.raises(RuntimeError):
        _deliver(deps, sfid, 1)
    assert len(server.requests) == 6
    saved = db.query("select provider, model, input_tokens, cost_usd from discovery_cache where shell_file_id = %s", (sfid,))
    assert saved and saved[0]["provider"] == "openai" and saved[0]["input_tokens"] == 6000
    _deliver(deps, sfid, 2)
    _deliver(deps, sfid, 3)

    # Then the model was paid once, and the file is complete with its nine encounters
    assert len(server.requests) == 6
    assert db.get_shell_file(sfid).status == FileStatus.COMPLETED
    rows = db.query("select count(*) as n from healthcare_encounters where shell_file_id = %s", (sfid,))
    assert rows[0]["n"] == 9
    assert db.manifest(sfid).input_tokens == 6000


def test_postgres_discovery_cache_is_keyed_by_fingerprint(stack_deps):
    db = stack_deps.db
    sfid = uuid.uuid4()
    db.create_shell_file(ShellFile(id=sfid, patient_id=uuid.uuid4(), storage_key="k", status=FileStatus.QUEUED))
    pages, _ = packet_120()
    first = HeuristicEncounters().discover(pages[:10])
    db.save_discovery(sfid, "a" * 64, first)
    assert db.saved_discovery(sfid, "a" * 64) == first
    assert db.saved_discovery(sfid, "b" * 64) is None  # page text changed: not reused
    db.save_discovery(sfid, "b" * 64, first.model_copy(update={"encounters": first.encounters[:1]}))
    assert len(db.saved_discovery(sfid, "b" * 64).encounters) == 1 and db.saved_discovery(sfid, "a" * 64) is None


# --- whose record, and how sure --------------------------------------------------------------


def test_patient_fields_are_kept_only_where_printed_and_two_patients_conflict(packet):
    # Given the emergency visit (pages 101-119) is another patient's record, misfiled in this upload,
    pages, truth = packet
    pages = list(pages)
    pages[100] = PageText(page_number=101, text=pages[100].text.replace(CANARY, "Ada Lovelace"), engine="native")

    def tweak(seen: Seen, answer: dict) -> dict:
        for enc in answer["encounters"]:
            if enc["page_ranges"][0]["first_page"] == 4:
                enc["patient_name"] = "Invented Person"  # printed nowhere: must not be kept
                enc["review_reasons"] = ["weak_boundary"]
        return answer

    with FakeOpenAi(truth, pages, window=20) as server:
        server.oracle_tweak = tweak
        # When the model reads it,
        discovery = provider(server).discover(pages)
        assert server.problems == []

    # Then each encounter says whose it is, a name printed nowhere is dropped,
    by_first = {e.page_ranges[0][0]: e for e in discovery.encounters}
    assert by_first[1].patient_name == CANARY and by_first[101].patient_name == "Ada Lovelace"
    assert by_first[4].patient_name is None and "weak_boundary" in by_first[4].review_reasons
    # and the file is flagged: every encounter needs review for the conflict, the manifest says so.
    assert discovery.identity_conflict
    assert all(e.needs_review and "conflicting_identity" in e.review_reasons for e in discovery.encounters)
    manifest = Manifest.build(uuid.uuid4(), 120, discovery, pages)
    assert manifest.identity_conflict and manifest.needs_review
