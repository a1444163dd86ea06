"""The oracle model: an OpenAI-compatible server that answers every window of pages as a perfect
reader would, from a packet's truth, and a noisy one. It tests docpipe's windows and
reconciliation, not any model (``ORACLE_NOTE``, printed beside every figure it gives).

The truth (``Truth``) comes from the encounter bench's packet generators, through their own
functions: the clinical development packets (``bench/_clinical.py``: C-CDA documents and
ACI-Bench notes printed as EHRs print them, 2-8 per packet, some mixing two patients; needs
``../shared/corpus/text``) and the generated packets (``bench/encounter_families/oldgen.py``: the text
layer of each source). Per true encounter: its readable pages, type, and the fields the
packet's pages print (dates, provider, facility, the patient's name, birth date and identifier);
a field its pages never print is no part of the truth, since no reader could give it.

``OracleModel`` (``/v1/chat/completions``) finds the packet a request is about from the page
texts in the prompt (their words, so it recognises pages re-read from a PDF too), and answers
each window in the request's own JSON schema (it checks its answer against it): the encounters
on the window's pages in page order, each with the fields printed on its pages *in this window*
and a quote of each as printed, whether the first continues the encounter before the window
(the truth says so), whether the last runs on after it, and the pages that belong to no
encounter. It never reads the hand-off or the context pages: both ways of reading get the same
answer for the same window. Its latency is set (``latency_s``: a model's 2-10 s), its token
counts are the request's and answer's characters / 4, and it counts the calls in flight.

``Noise`` makes it a noisy reader, at a rate you set and ``edge`` times more often within a
page of a window's edges: a boundary moved by a page, a date dropped, a field left empty. The
same window gets the same noise whichever way it is read.

``compare`` lists where a discovery differs from the truth (empty: the truth exactly).

It is long (~700 lines) because it is a whole model's stand-in, in one place for the tests and
the bench: the truth of two packet families, the printed forms of dates and fields, the noise,
and an HTTP server that checks its own answers against the request's schema.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from shared.encounters.text import is_blank
from shared.models import Discovery, EncounterType, PageText

ORACLE_NOTE = (
    "oracle model (a perfect reader of each window, from the packet's truth; noisy: a boundary moved, "
    "a date dropped, a field left empty): this tests docpipe's windows and reconciliation, not any model"
)
ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "oracle_packets"
_FIELDS = ("provider", "facility", "patient_name", "patient_identifier")


# --- the truth ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrueEncounter:
    key: str
    kind: EncounterType
    pages: tuple[int, ...]  # its readable pages
    start: dt.date | None = None
    end: dt.date | None = None
    provider: str | None = None
    facility: str | None = None
    patient_name: str | None = None
    patient_dob: dt.date | None = None
    patient_identifier: str | None = None
    who: object = None  # whose record it is (the generator's patient), printed or not


@dataclasses.dataclass
class Truth:
    name: str
    pages: list[PageText]
    encounters: list[TrueEncounter]
    conflict: bool  # the encounters show more than one patient
    packet: object = None  # the generator's own packet, for its scorer
    family: str = "clinical"
    pdf: bytes | None = None  # the printed document, when asked for

    def __post_init__(self) -> None:
        self.owner = {n: e.key for e in self.encounters for n in e.pages}
        self.by_key = {e.key: e for e in self.encounters}

    @property
    def page_count(self) -> int:
        return len(self.pages)


def date_forms(day: dt.date) -> list[str]:
    """How documents print a date: the forms the packet generators use, and the usual others."""
    d, m, y = day.day, day.month, day.year
    month, mon = day.strftime("%B"), day.strftime("%b")
    return list(dict.fromkeys([
        day.isoformat(), f"{m:02d}/{d:02d}/{y}", f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}",
        f"{month} {d}, {y}", f"{d} {month} {y}", f"{d:02d} {month} {y}", f"{mon} {d}, {y}", f"{d} {mon} {y}",
        f"{d:02d} {mon} {y}", f"{d:02d}.{m:02d}.{y}", f"{d:02d}-{mon}-{y}",
    ]))


def find_date(day: dt.date | None, texts: Iterable[tuple[int, str]]) -> tuple[int, str] | None:
    """The first page (in ``texts``' order) printing ``day``, and the date as printed there."""
    if day is None:
        return None
    forms = date_forms(day)
    for n, text in texts:
        for form in forms:
            for m in re.finditer(re.escape(form), text):
                before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
                if not (before.isalnum() or after.isdigit()):
                    return n, form
    return None


def find_text(value: str | None, texts: Iterable[tuple[int, str]]) -> tuple[int, str] | None:
    """The first page printing ``value`` (any case, any run of whitespace), and it as printed."""
    if not value or not value.strip():
        return None
    pattern = re.compile(r"\s+".join(re.escape(t) for t in value.split()), re.I)
    for n, text in texts:
        m = pattern.search(text)
        if m:
            return n, m.group()
    return None


def _printed(enc: TrueEncounter, texts: dict[int, str]) -> TrueEncounter:
    """The encounter with only the fields its pages print."""
    own = [(n, texts[n]) for n in enc.pages]
    end = enc.end if enc.end is None or enc.end == enc.start or find_date(enc.end, own) else None
    start = enc.start if find_date(enc.start, own) else None
    return dataclasses.replace(
        enc,
        start=start,
        end=end if start is not None or end != enc.start else None,
        **{f: getattr(enc, f) if find_text(getattr(enc, f), own) else None for f in _FIELDS},
        patient_dob=enc.patient_dob if find_date(enc.patient_dob, own) else None,
    )


def _truth(name: str, pages: list[PageText], owner: Sequence[str | None], encounters: dict[str, TrueEncounter],
           packet: object, family: str, pdf: bytes | None = None) -> Truth:
    texts = {p.page_number: p.text for p in pages}
    out = []
    for key, enc in encounters.items():
        readable = tuple(n for n, k in enumerate(owner, 1) if k == key and not is_blank(texts[n]))
        if readable:
            out.append(_printed(dataclasses.replace(enc, pages=readable), texts))
    out.sort(key=lambda e: e.pages[0])
    patients = {e.who for e in out if e.patient_name or e.patient_dob or e.patient_identifier}
    return Truth(name, pages, out, len(patients) > 1, packet, family, pdf)


# --- the development packets, through the generators' own functions -----------------------------


def _code_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def clinical_available() -> bool:
    from bench import _clinical

    return _clinical.available()


def _print_plan(plan: dict, with_pdf: bool) -> tuple[list[tuple[str, str]], list[str | None], bytes | None]:
    """The packet of a ``_clinical.plan`` entry as ``_clinical.build`` makes it (its text layer),
    and its PDF; cached under build/ by the plan and the generators' code."""
    import pymupdf

    from bench import _clinical

    items = [{"doc": i["doc"].key, "facility": i["doc"].facility, "patient": dataclasses.astuple(i["patient"]),
              "layout": dataclasses.astuple(i["layout"]), "scanned": i["scanned"], "blank": i["blank_after"],
              "seed": i["seed"], "width": i.get("width"), "headless": i.get("headless")} for i in plan["items"]]
    code = _code_hash(ROOT / "bench" / "_clinical.py", ROOT / "docpipe_samples" / "__init__.py")
    key = hashlib.sha256(json.dumps([plan["name"], items, code], default=str).encode()).hexdigest()[:24]
    cached = CACHE / f"{key}.json"
    pdf_path = CACHE / f"{key}.pdf"
    if cached.exists() and (pdf_path.exists() or not with_pdf):
        saved = json.loads(cached.read_text())
        return [tuple(t) for t in saved["texts"]], saved["truth"], pdf_path.read_bytes() if with_pdf else None
    texts: list[tuple[str, str]] = []
    truth: list[str | None] = []
    out = pymupdf.open()
    for item in plan["items"]:  # as _clinical.build, keeping the PDF
        doc = item["doc"]
        rng = random.Random(item["seed"])
        data, cover = _clinical.print_doc(doc, item["patient"], item["layout"], rng, width=item.get("width"))
        read = _clinical.read_pdf(data, False, item["seed"], None)
        keep = list(range(len(read)))
        if item.get("headless") and len(read) - cover > 1:
            keep = keep[:cover] + keep[cover + 1 :]
        with pymupdf.open(stream=data, filetype="pdf") as printed:
            for index in keep:
                texts.append(read[index][:2])
                truth.append(None if index < cover else doc.key)
                out.insert_pdf(printed, from_page=index, to_page=index)
        if item["blank_after"]:
            texts.append(("", "tesseract"))
            truth.append(None)
            out.new_page(width=_clinical.A4[0], height=_clinical.A4[1])
    pdf = out.tobytes(garbage=3, no_new_id=True)
    out.close()
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"texts": texts, "truth": truth}))
    pdf_path.write_bytes(pdf)
    return texts, truth, pdf if with_pdf else None


def _clinical_truth(name: str, plans: list[dict], with_pdf: bool = False, page_limit: int | None = None,
                    skip: int = 0) -> Truth:
    import pymupdf

    texts: list[tuple[str, str]] = []
    owner: list[str | None] = []
    encounters: dict[str, TrueEncounter] = {}
    pdfs = []
    for index, plan in enumerate(plans):
        got, truth, pdf = _print_plan(plan, with_pdf)
        suffix = f"#{index}" if len(plans) > 1 else ""  # the same source printed again is another encounter
        texts += got
        owner += [f"{k}{suffix}" if k else None for k in truth]
        pdfs.append(pdf)
        for item in plan["items"]:
            doc, who = item["doc"], item["patient"]
            encounters[f"{doc.key}{suffix}"] = TrueEncounter(
                f"{doc.key}{suffix}", doc.kind, (), doc.start, doc.end, doc.provider, doc.facility,
                who.name, who.dob, who.mrn, who,
            )
    pdf = None
    if with_pdf:
        merged = pymupdf.open()
        for data in pdfs:
            with pymupdf.open(stream=data, filetype="pdf") as part:
                merged.insert_pdf(part)
        if skip:
            merged.delete_pages(from_page=0, to_page=skip - 1)
        if page_limit is not None and merged.page_count > page_limit:
            merged.delete_pages(from_page=page_limit, to_page=merged.page_count - 1)
        pdf = merged.tobytes(garbage=3, no_new_id=True)
        merged.close()
    texts, owner = texts[skip:], owner[skip:]
    if page_limit is not None:
        texts, owner = texts[:page_limit], owner[:page_limit]
    pages = [PageText(page_number=n, text=t, engine="native" if e == "native" else e) for n, (t, e) in
             enumerate(texts, 1)]
    packet = None
    if len(plans) == 1 and page_limit is None:
        from bench import _clinical

        p = plans[0]
        packet = _clinical.Packet(
            name=p["name"], part=p["part"], pages=pages, truth=owner, docs={i["doc"].key: i["doc"] for i in p["items"]},
            patients={i["doc"].key: i["patient"] for i in p["items"]}, mixed=p["mixed"], scanned=[])
    return _truth(name, pages, owner, encounters, packet, "clinical", pdf)


def clinical_packets(count: int = 24, seed: int = 6, part: str = "dev") -> list[Truth]:
    """The clinical packets ``bench/encounters_eval.py`` scores (``_clinical.plan``), read from
    their text layer: with the defaults, every development packet."""
    from bench import _clinical

    docs = _clinical.sources()
    return [_clinical_truth(p["name"], [p]) for p in _clinical.plan(docs, part, count, seed)]


def long_document(pages: int, seed: int = 6, with_pdf: bool = False, skip: int = 1) -> Truth:
    """A document of exactly ``pages`` pages: clinical development packets one after another
    (plans of later seeds when one runs out), as a patient's whole record uploaded at once,
    less its first ``skip`` pages (from the first packet: without that page, two-page documents
    start on even pages and more of them cross the edges of 20-page windows)."""
    from bench import _clinical

    docs = _clinical.sources()
    plans: list[dict] = []
    total = 0
    round_ = 0
    while total < pages + skip:
        for p in _clinical.plan(docs, "dev", 24, seed + 1000 * round_):
            p = {**p, "items": [{**i, "blank_after": False} for i in p["items"]]}  # no blank page to OCR
            plans.append(p)
            total += len(_print_plan(p, False)[0])
            if total >= pages + skip:
                break
        round_ += 1
    return _clinical_truth(f"long-{pages}", plans, with_pdf=with_pdf, page_limit=pages, skip=skip)


def generated_packets(count: int = 16, seed: int = 6) -> list[Truth]:
    """The old generated packets (``bench/encounter_families/oldgen.py``: ``plan_packets``, ``build_packet``),
    every source read from its text layer (the scans are the OCR bench's business)."""
    import tempfile

    from bench.encounter_families import oldgen as ev

    parts = ev.DOB.split("/")
    dob = dt.date(int(parts[2]), int(parts[1]), int(parts[0]))  # the sources print day-first
    with tempfile.TemporaryDirectory() as tmp:
        reader = ev.PageReader(Path(tmp), ocr=None)
        out = []
        for index, plan in enumerate(ev.plan_packets(ev._sources(), count, seed)):
            rng = random.Random(seed * 1000 + index)
            packet = ev.build_packet(f"generated-{index:02d}", [(s, 0, blank) for s, _, blank in plan], reader, rng)
            encounters = {s.key: TrueEncounter(s.key, s.kind, (), s.start, s.end, None, s.facility, ev.PATIENT, dob,
                                               ev.MRN, ev.PATIENT) for s in packet.sources.values()}
            out.append(_truth(packet.name, packet.pages, packet.truth, encounters, packet, "generated"))
    return out


# --- comparing a discovery with the truth ---------------------------------------------------------


def _same(a: object, b: object) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()
    return a == b


def compare(truth: Truth, discovery: Discovery) -> list[str]:
    """Where the discovery is not the truth: an encounter missing, split or merged, or one of
    its fields wrong (field names and page ranges only, never a value)."""
    problems = []
    by_pages = {tuple(sorted(e.pages())): e for e in discovery.encounters}
    for enc in truth.encounters:
        found = by_pages.pop(enc.pages, None)
        if found is None:
            problems.append(f"{truth.name}: no encounter with exactly pages {_ranges(enc.pages)}")
            continue
        want = {"encounter_type": enc.kind, "timing": "happened", "date_start": enc.start, "date_end": enc.end,
                **{f: getattr(enc, f) for f in _FIELDS}, "patient_dob": enc.patient_dob}
        for field, value in want.items():
            got = getattr(found, field)
            got = got.value if field == "timing" else got
            if not _same(got, value):
                problems.append(f"{truth.name} pages {_ranges(enc.pages)}: {field} "
                                f"{'missing' if got is None else 'wrong' if value is not None else 'invented'}")
    problems += [f"{truth.name}: an encounter the truth has not, pages {_ranges(sorted(p))}" for p in by_pages]
    if discovery.identity_conflict != truth.conflict:
        problems.append(f"{truth.name}: identity_conflict {discovery.identity_conflict}, truth {truth.conflict}")
    return problems


def _ranges(pages: Sequence[int]) -> str:
    out: list[list[int]] = []
    for n in pages:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out)


def windows_spanned(truth: Truth, pages_per_window: int) -> dict[str, int]:
    """How many windows each true encounter spans (the windows of ``pages_per_window`` pages)."""
    return {e.key: len({(n - 1) // pages_per_window for n in e.pages}) for e in truth.encounters}


# --- the noise ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Noise:
    """A noisy reader: each boundary moved by a page, each date dropped, each field left empty
    with probability ``rate``, ``edge`` times that within a page of the window's edges."""

    rate: float = 0.1
    edge: float = 3.0
    seed: int = 0

    def p(self, at_edge: bool) -> float:
        return min(1.0, self.rate * (self.edge if at_edge else 1.0))


# --- the server -----------------------------------------------------------------------------------

_PAGE = re.compile(r'<page number="(\d+)"( context="true")?( blank="true")?>(.*?)</page>', re.S)


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


@dataclasses.dataclass
class Call:
    """One request, as the oracle saw it (page numbers and times only)."""

    document: str
    first_page: int
    last_page: int
    context: list[int]
    started: float
    finished: float = 0.0
    in_flight: int = 0  # calls of this document in flight when it arrived, itself included
    status: int = 200


class OracleModel:
    """``/v1/chat/completions`` on 127.0.0.1, answering from the registered truths."""

    def __init__(self, truths: Iterable[Truth] = (), latency_s: float = 0.0, noise: Noise | None = None) -> None:
        self.latency_s = latency_s
        self.noise = noise
        self.calls: list[Call] = []
        self.problems: list[str] = []
        # Faults, in call order: a step returns (status, headers, body) to answer with, or None.
        self.script: list[Callable[[Call], tuple[int, dict, dict] | None]] = []
        self._index: dict[int, list[tuple[frozenset[str], Truth]]] = {}
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        for truth in truths:
            self.register(truth)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def register(self, truth: Truth) -> None:
        with self._lock:
            for page in truth.pages:
                if not is_blank(page.text):
                    self._index.setdefault(page.page_number, []).append((_words(page.text), truth))

    def use(self, *truths: Truth) -> None:
        """Know only these documents (packets that share pages, one at a time)."""
        with self._lock:
            self._index = {}
        for truth in truths:
            self.register(truth)

    def __enter__(self) -> OracleModel:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls_of(self, name: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.document == name]

    # --- a request

    def _handler(self):
        oracle = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                status, headers, reply = oracle.respond(self.path, body)
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    def respond(self, path: str, body: dict) -> tuple[int, dict, dict]:
        if path != "/v1/chat/completions":
            return 404, {}, {"error": {"message": "not found"}}
        started = time.monotonic()
        messages = body.get("messages") or []
        user = messages[1]["content"] if len(messages) > 1 else ""
        core, context, texts = [], [], {}
        for m in _PAGE.finditer(user):
            n = int(m[1])
            text = re.sub(r"^\n?(?:<layout>\n.*?\n</layout>\n)?", "", m[4], count=1, flags=re.S)
            text = text.removesuffix("\n").removesuffix("\n[... rest of page cut]")
            (context if m[2] else core).append(n)
            if not m[2]:
                texts[n] = "" if m[3] else text
        count = re.search(r"The document has (\d+) pages", user)
        truth = self._find(texts, int(count[1]) if count else None)
        name = truth.name if truth is not None else "?"
        call = Call(name, core[0] if core else 0, core[-1] if core else 0, context, started)
        with self._lock:
            self.calls.append(call)
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
            call.in_flight = self._in_flight[name]
            self.max_in_flight[name] = max(self.max_in_flight.get(name, 0), call.in_flight)
            step = self.script.pop(0) if self.script else None
        try:
            scripted = step(call) if step is not None else None
            if scripted is not None:  # a fault answers at once, as a throttling endpoint does
                call.status = scripted[0]
                return scripted
            if self.latency_s:
                time.sleep(self.latency_s)
            if truth is None or not core:
                call.status = 400
                return 400, {}, {"error": {"message": "the oracle knows no document with these pages",
                                           "type": "invalid_request_error", "code": "unknown_document"}}
            answer = self.answer(truth, core, texts)
            schema = body.get("response_format", {}).get("json_schema", {}).get("schema", {})
            wrong = _conforms(answer, schema, schema.get("$defs", {}), "answer")
            if wrong:
                self.problems.append(wrong)
                call.status = 500
                return 500, {}, {"error": {"message": "the oracle cannot answer in this schema: " + wrong}}
            content = json.dumps(answer)
            prompt_chars = sum(len(m.get("content") or "") for m in messages)
            usage = (math.ceil(prompt_chars / 4), math.ceil(len(content) / 4))
            return 200, {"x-request-id": f"oracle-{len(self.calls)}"}, _completion(body.get("model"), content, usage)
        finally:
            call.finished = time.monotonic()
            with self._lock:
                self._in_flight[name] -= 1

    def _find(self, texts: dict[int, str], page_count: int | None) -> Truth | None:
        votes: dict[int, tuple[Truth, int]] = {}
        for n, text in texts.items():
            if is_blank(text):
                continue
            words = _words(text)
            for known, truth in self._index.get(n, ()):
                if page_count not in (None, truth.page_count):
                    continue
                if len(words & known) >= 0.85 * len(words | known):
                    votes[id(truth)] = (truth, votes.get(id(truth), (truth, 0))[1] + 1)
        return max(votes.values(), key=lambda v: v[1])[0] if votes else None

    # --- the answer

    def answer(self, truth: Truth, window: list[int], texts: dict[int, str]) -> dict:
        """What a perfect reader of these pages says (then the noise, if any)."""
        owner = {n: truth.owner.get(n) for n in window}
        readable = [n for n in window if not is_blank(texts.get(n, ""))]
        before = [n for n in truth.owner if n < window[0]]
        carried = truth.owner[max(before)] if before else None  # the encounter the window may continue
        rng = random.Random(f"{self.noise.seed}/{truth.name}/{window[0]}/{window[-1]}") if self.noise else None
        if rng is not None:
            self._move_boundaries(owner, readable, carried, rng)
        groups: dict[str, list[int]] = {}
        for n in window:
            if owner[n] is not None and n in readable:
                groups.setdefault(owner[n], []).append(n)
        edges = {window[0], window[-1]}
        encounters = []
        for index, (key, pages) in enumerate(groups.items()):
            enc = truth.by_key[key]
            at_edge = bool(edges & {pages[0], pages[-1]}) or len(window) <= 2
            encounters.append(self._encounter(enc, pages, texts, index == 0 and key == carried, rng, at_edge))
        last = list(groups)[-1] if groups else None
        after = [n for n in truth.owner if n > window[-1]]
        return {
            "encounters": encounters,
            "unassigned_pages": [n for n in window if owner[n] is None],
            "open_encounter_continues": last is not None and bool(after) and truth.owner[min(after)] == last,
        }

    def _move_boundaries(self, owner: dict[int, str | None], readable: list[int], carried: str | None,
                         rng: random.Random) -> None:
        """Each boundary between two encounters' readable pages moved by a page, now and then;
        one at the window's start edge only forwards (its first page kept by the encounter before)."""
        noise = self.noise
        owned = [n for n in readable if owner[n] is not None]
        if owned and carried is not None and owner[owned[0]] != carried and rng.random() < noise.p(True):
            rest = [n for n in owned if owner[n] == owner[owned[0]]]
            if len(rest) > 1:
                owner[owned[0]] = carried
        for a, b in zip(owned, owned[1:]):
            if owner[a] == owner[b]:
                continue
            at_edge = a == owned[0] or b == owned[-1]
            if rng.random() >= noise.p(at_edge):
                continue
            give, take = (a, b) if rng.random() < 0.5 else (b, a)
            if sum(owner[n] == owner[give] for n in owned) > 1:  # neither encounter vanishes
                owner[give] = owner[take]

    def _encounter(self, enc: TrueEncounter, pages: list[int], texts: dict[int, str], continues: bool,
                   rng: random.Random | None, at_edge: bool) -> dict:
        own = [(n, texts[n]) for n in pages]
        evidence = []

        def keep() -> bool:
            return rng is None or rng.random() >= self.noise.p(at_edge)

        start = find_date(enc.start, own)
        if start and keep():
            evidence.append({"field": "date_start", "page_number": start[0], "quote": start[1]})
        else:
            start = None
        end_value = None
        if enc.end is not None and enc.end != enc.start:
            end = find_date(enc.end, own)
            if end and keep():
                evidence.append({"field": "date_end", "page_number": end[0], "quote": end[1]})
                end_value = enc.end.isoformat()
        elif start is not None and enc.end == enc.start:
            end_value = enc.start.isoformat()  # a one-day encounter: the schema asks for the start again
        fields: dict[str, str | None] = {}
        for field in _FIELDS:
            found = find_text(getattr(enc, field), own)
            fields[field] = getattr(enc, field) if found and keep() else None
            if fields[field]:
                evidence.append({"field": field, "page_number": found[0], "quote": found[1]})
        dob = find_date(enc.patient_dob, own)
        dob = dob if dob and keep() else None
        if dob:
            evidence.append({"field": "patient_dob", "page_number": dob[0], "quote": dob[1]})
        return {
            "continues_open_encounter": continues,
            "encounter_type": enc.kind.value,
            "timing": "happened",
            "date_start": enc.start.isoformat() if start else None,
            "date_end": end_value,
            "provider": fields["provider"],
            "facility": fields["facility"],
            "page_ranges": [{"first_page": a, "last_page": b} for a, b in _runs(pages)],
            "patient_name": fields["patient_name"],
            "patient_dob": enc.patient_dob.isoformat() if dob else None,
            "patient_identifier": fields["patient_identifier"],
            "review_reasons": [],
            "confidence": 0.95,
            "evidence": evidence,
        }


def _runs(pages: Sequence[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for n in pages:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [(a, b) for a, b in out]


def _completion(model: str | None, content: str, usage: tuple[int, int]) -> dict:
    return {
        "id": "chatcmpl-oracle",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": None}}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


def _conforms(value: object, schema: dict, defs: dict, where: str) -> str | None:
    """Why ``value`` does not meet the (strict) JSON schema, or None: the oracle answers in the
    request's schema or says it cannot."""
    if "$ref" in schema:
        return _conforms(value, defs[schema["$ref"].rsplit("/", 1)[-1]], defs, where)
    if "anyOf" in schema:
        if all(_conforms(value, option, defs, where) for option in schema["anyOf"]):
            return f"{where}: matches none of its options"
        return None
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {value!r} is not one of its values"
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if kinds and not any(
        (k in ("integer", "number") and isinstance(value, (int, float)) and not isinstance(value, bool)
         and (k == "number" or float(value).is_integer())) or (k in types and isinstance(value, types[k]))
        for k in kinds
    ):
        return f"{where}: not {kinds}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        if set(schema.get("required", [])) - set(value):
            return f"{where}: lacks {sorted(set(schema.get('required', [])) - set(value))}"
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return f"{where}: has fields the schema has not: {sorted(set(value) - set(props))}"
        for key, item in value.items():
            wrong = _conforms(item, props.get(key, {}), defs, f"{where}.{key}")
            if wrong:
                return wrong
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            wrong = _conforms(item, schema["items"], defs, f"{where}[{index}]")
            if wrong:
                return wrong
    return None
