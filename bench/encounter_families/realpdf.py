"""The real-format PDFs of ``../shared/corpus/realfmt/pdfs`` (20 files, see its ``SOURCES.csv``
and ``../SOURCES.md``), packed 2-5 documents to a file and re-identified to one patient.

The truth table below was written by hand after reading every page of every file (PyMuPDF's
text layer); the ``#`` comments mark what is a judgement. A service date is the date of the
visit, stay or collection as the document states it, never the printed, reported or signed
date.

Re-identification is done on the PDF itself, not on its text: every printed form of the file's
patient name and birth date is covered with a PyMuPDF redaction whose replacement text is the
packet patient's (``add_redact_annot(rect, text=...)`` + ``apply_redactions()``: the original
glyphs are removed from the content stream, the new text is written in their place, images and
line art stay). The packet's pages are then read from that PDF with ``common.read_pdf``, and
``Packet.pdf`` is the same PDF: the scanned family prints it again, so both the text layer and
the scanned image carry the packet patient. ``swaps(packet)`` lists what was replaced with
what, per document.

A packet is mixed (about 0.3 of them): one document keeps its own patient (not re-identified)
and its ``Doc`` carries its own printed ``Identity``. The identifiers (hospital ID, patient ID)
are each file's own in every case: a patient has one per facility. Ages written in the prose
("a 46-year-old Female") are left as printed, so they may disagree with the new birth date.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random

from bench.encounter_families.common import CORPUS, CachedOcr, Doc, Identity, Packet, pages_of, read_pdf
from shared.models import EncounterType

FAMILY = "realpdf"
FOLDER = CORPUS / "realfmt" / "pdfs"
ET = EncounterType
D = dt.date


@dataclasses.dataclass(frozen=True)
class Truth:
    """One document of a file: its pages (1-based, inclusive), what it is, and whose."""

    file: str
    first: int
    last: int
    kind: EncounterType
    start: dt.date | None
    end: dt.date | None
    patient: Identity  # as printed (name in "First [Middle] Last" order)
    # Every printed form of the name: the words as printed, each word's replacement template
    # ({first} {middle} {last} {mi}: the packet patient's parts, {mi} the middle initial).
    names: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    dobs: tuple[tuple[str, str], ...] = ()  # (the birth date as printed, its strftime format)
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.file[:-4]}#{self.first}-{self.last}"


def _jsl(n: str, name: str, dob: D, hosp: str, recorded: D) -> Truth:
    words = tuple(name.split())
    template = ("{first}",) + ("{middle}",) * (len(words) - 2) + ("{last}",)
    return Truth(
        f"jsl_easy_{n}.pdf", 1, 3, ET.OUTPATIENT, recorded, recorded, Identity(name, dob, hosp),
        ((words, template),), ((f"{dob:%d/%m/%Y}", "%d/%m/%Y"),),
    )


# JohnSnowLabs' synthetic records (3 pages each, one document: the running header with name and
# birth date is on every page). Each is a "Patient Summary" + "Doctor Notes" + "Medical Tests"
# of one clinic contact. JUDGEMENT: typed outpatient_visit, dated by the vitals' "Recorded Date"
# (the only date of the current contact: the doctor's notes and vitals are that visit's; the
# "Past Hospital Visits" table dates other encounters, the tests are "Done"/"Pending" on their
# own dates, and the footer's 22/04/2025 is the print date). Dates are printed DD/MM/YYYY
# (24/05/1977 reads no other way). Identifier: the printed "Hospital ID".
TRUTH: list[Truth] = [
    _jsl("00", "Kimberly Lawrence", D(1977, 5, 24), "HOSP26508961", D(2024, 11, 15)),
    # the same record as jsl_easy_00 plus a signature image (never packed with it)
    dataclasses.replace(_jsl("00", "Kimberly Lawrence", D(1977, 5, 24), "HOSP26508961", D(2024, 11, 15)),
                        file="jsl_easy_00_signature.pdf"),
    _jsl("01", "Elizabeth Williams", D(1949, 6, 7), "HOSP17622343", D(2024, 11, 15)),
    _jsl("02", "Anna Kimberly Delacruz", D(1968, 6, 18), "HOSP48356524", D(2024, 11, 15)),
    _jsl("03", "Richard Christopher Bray", D(1981, 9, 14), "HOSP14505327", D(2024, 11, 3)),
    _jsl("04", "Andrea Stephen Turner", D(1963, 10, 7), "HOSP95524007", D(2024, 11, 3)),
    _jsl("05", "Melissa Peter Cobb", D(1939, 5, 1), "HOSP35532501", D(2024, 11, 3)),
    _jsl("06", "Andrew Victoria Johnson", D(1955, 10, 8), "HOSP35892844", D(2023, 11, 3)),
    _jsl("07", "Danny Anderson", D(1944, 2, 29), "HOSP38027756", D(2024, 11, 3)),
    _jsl("08", "Tracy Thomas", D(1960, 6, 14), "HOSP12819985", D(2024, 11, 3)),
    _jsl("09", "Phyllis Grant", D(1967, 6, 26), "HOSP69100326", D(2023, 11, 15)),
    _jsl("10", "James James Choi", D(1961, 8, 3), "HOSP30159217", D(2024, 11, 15)),
    _jsl("11", "Theresa Anthony", D(1936, 3, 27), "HOSP22859156", D(2024, 11, 15)),
    _jsl("12", "Kimberly Briana Escobar", D(1971, 6, 16), "HOSP34346565", D(2023, 10, 26)),
    _jsl("13", "Evelyn Wayne Glenn", D(1948, 3, 7), "HOSP71073513", D(2024, 5, 15)),
    _jsl("14", "Amanda Charles Irwin", D(1964, 1, 13), "HOSP20384103", D(2023, 10, 27)),
    # HL7's LabCorp sample: TWO reports in one file. Page 1 "Page 1 of 1": ANA screen, collected
    # 07/14/16, reported 07/15/16, DOB 01/23/90, M, specimen 197-996-9513-0. Pages 2-3 "Page 1/2
    # of 2": ANA positive 1:160, collected 08/31/16, reported 08/31/16, DOB 01/01/60, F, specimen
    # 244-988-9201-0. The name fields read Last "SAMPLE REPORT", First "164947" (the footer:
    # "SAMPLE REPORT, 164947"). JUDGEMENT: two patients (their birth dates and sexes differ)
    # sharing the placeholder name; the "Patient ID" field is blank, so no identifier (the
    # specimen number names the specimen, not the patient). Dates: the collection date.
    Truth("hl7_labcorp_lab_report_164947.pdf", 1, 1, ET.LAB, D(2016, 7, 14), D(2016, 7, 14),
          Identity("164947 SAMPLE REPORT", D(1990, 1, 23), None),
          ((("SAMPLE", "REPORT,", "164947"), ("{LAST},", "", "{FIRST}")),
           (("SAMPLE", "REPORT"), ("{LAST}", "")), (("164947",), ("{FIRST}",))),
          (("01/23/90", "%m/%d/%y"),), "lab report 1 of the file"),
    Truth("hl7_labcorp_lab_report_164947.pdf", 2, 3, ET.LAB, D(2016, 8, 31), D(2016, 8, 31),
          Identity("164947 SAMPLE REPORT", D(1960, 1, 1), None),
          ((("SAMPLE", "REPORT,", "164947"), ("{LAST},", "", "{FIRST}")),
           (("SAMPLE", "REPORT"), ("{LAST}", "")), (("164947",), ("{FIRST}",))),
          (("01/01/60", "%m/%d/%y"),), "lab report 2 of the file"),
    # HL7's Word-made discharge summary, "Patient Name: Levin, Henry L.", "Patient ID: 12345", no
    # birth date (a 56-year-old). The stroke began and he was admitted on March 26 (2009).
    # JUDGEMENT: it prints "Date of Discharge: 03/26/2009" although studies are dated March 27
    # and he is "transferred ... today": the truth keeps what it states, 2009-03-26 for both.
    Truth("hl7_discharge_summary_UD_sample.pdf", 1, 3, ET.INPATIENT, D(2009, 3, 26), D(2009, 3, 26),
          Identity("Henry L. Levin", None, "12345"),
          ((("Levin,", "Henry", "L."), ("{last},", "{first}", "{mi}.")),)),
    # HL7's advance directive (uADD, 7 pages), "Roger Rienman McBee" on every page, signed
    # "Roger R McBee" 7/31/2014 (a signing date, not a service), printed 08/20/2014: administrative,
    # undated, no birth date or identifier printed.
    Truth("hl7_advance_directive_McBee.pdf", 1, 7, ET.ADMINISTRATIVE, None, None,
          Identity("Roger Rienman McBee", None, None),
          ((("Roger", "Rienman", "McBee"), ("{first}", "{middle}", "{last}")),
           (("Roger", "R", "McBee"), ("{first}", "{mi}", "{last}")))),
    # ACI-Bench visit note D2N001 (Word-rendered, 2 pages): an annual exam; it names "Martha
    # Collins" in its prose and states no date, birth date or identifier: outpatient, undated.
    Truth("evinett_aci_visit_note_D2N001.pdf", 1, 2, ET.OUTPATIENT, None, None,
          Identity("Martha Collins", None, None),
          ((("Martha", "Collins"), ("{first}", "{last}")),)),
]

_FIRST = ["Nora", "Walter", "Irene", "Calvin", "Judith", "Oscar", "Miriam", "Dennis", "Lorna", "Felix",
          "Agnes", "Harold", "Beatrice", "Vernon", "Rosalind", "Gordon"]
_MIDDLE = ["Jane", "Lee", "Marie", "Paul", "Ann", "Ray", "Lynn", "Dale"]
_LAST = ["Whitaker", "Okafor", "Lindqvist", "Castellano", "Brennan", "Haugen", "Petrov", "Abernathy",
         "Mulligan", "Sorensen", "Fairbanks", "Delgado", "Kowalski", "Ashworth", "Nakamura", "Thornton"]


@dataclasses.dataclass(frozen=True)
class Person:
    first: str
    middle: str
    last: str
    dob: dt.date

    def parts(self) -> dict[str, str]:
        return {"first": self.first, "middle": self.middle, "last": self.last, "mi": self.middle[0],
                "FIRST": self.first.upper(), "MIDDLE": self.middle.upper(), "LAST": self.last.upper()}


def person(rng: random.Random) -> Person:
    """A packet patient, drawn from ``rng`` (deterministic per seed)."""
    dob = D(1930, 1, 1) + dt.timedelta(days=rng.randrange(70 * 365))
    return Person(rng.choice(_FIRST), rng.choice(_MIDDLE), rng.choice(_LAST), dob)


def printed_identity(truth: Truth, who: Person) -> Identity:
    """The Identity ``truth``'s document prints once re-identified to ``who``: the name in the
    form it prints (with a middle name or initial where it prints one), the birth date if it
    prints one, its own identifier."""
    words = max((t for _, t in truth.names), key=len)
    fields = [w.strip(",.") for w in words if w]
    order = [f for f in ("{first}", "{FIRST}", "{middle}", "{mi}", "{last}", "{LAST}") if f in fields]
    p = who.parts()
    name = " ".join(p[f[1:-1]] + ("." if f == "{mi}" and "{mi}." in words else "") for f in order)
    if truth.file.startswith("hl7_labcorp"):
        name = f"{who.first.upper()} {who.last.upper()}"
    return Identity(name, who.dob if truth.dobs else None, truth.patient.mrn)


# --- re-identifying a PDF ----------------------------------------------------------------------------------


def _norm(word: str) -> str:
    return word.strip(",.:;").lower()


def reidentify(pdf, truth: Truth, who: Person, pages: range) -> list[tuple[str, str]]:
    """Redact every printed form of ``truth``'s patient name and birth date on ``pages`` of the
    open PyMuPDF ``pdf`` and write ``who``'s in their place; returns the (old, new) swaps."""
    import pymupdf

    p = who.parts()
    done: list[tuple[str, str]] = []
    for index in pages:
        page = pdf[index]
        words = page.get_text("words", sort=False)
        order = sorted(range(len(words)), key=lambda i: (words[i][5], words[i][6], words[i][7]))
        seq = [words[i] for i in order]
        todo: dict[int, str] = {}  # index in seq -> replacement
        for printed, template in sorted(truth.names, key=lambda nt: -len(nt[0])):
            n = len(printed)
            for k in range(len(seq) - n + 1):
                if any(k + j in todo for j in range(n)):
                    continue
                if all(_norm(seq[k + j][4]) == _norm(printed[j]) for j in range(n)):
                    for j in range(n):
                        original = seq[k + j][4]
                        new = template[j].format(**p)
                        if template[j] and original.endswith(",") and not new.endswith(","):
                            new += ","
                        todo[k + j] = new
        for dob, fmt in truth.dobs:
            for k, w in enumerate(seq):
                if w[4].rstrip(",.;:") == dob:
                    todo[k] = who.dob.strftime(fmt) + w[4][len(dob):]
        spans = [(pymupdf.Rect(sp["bbox"]), sp["size"], sp["font"], sp["origin"][1]) for block in page.get_text("dict")["blocks"]
                 for line in block.get("lines", []) for sp in line["spans"]]
        # Each run of words of one line with a swap in it (runs split at wide gaps, so columns
        # stay where they were) is redacted as one piece and rewritten as one piece: the text
        # layer keeps its lines whole.
        writes: list[tuple[tuple[float, float], str, str, float]] = []
        lines: dict[tuple[int, int], list[int]] = {}
        for k, w in enumerate(seq):
            lines.setdefault((w[5], w[6]), []).append(k)
        for ks in lines.values():
            if not any(k in todo for k in ks):
                continue
            runs = [[ks[0]]]
            for a_, b_ in itertools.pairwise(ks):
                gap = seq[b_][0] - seq[a_][2]
                if gap > 0.6 * (seq[a_][3] - seq[a_][1]) or gap < -1:
                    runs.append([])
                runs[-1].append(b_)
            for run in runs:
                if not any(k in todo for k in run):
                    continue
                rect = pymupdf.Rect(seq[run[0]][:4])
                for k in run:
                    rect |= pymupdf.Rect(seq[k][:4])
                olds = [seq[k][4] for k in run]
                new = " ".join(x for x in (todo.get(k, seq[k][4]) for k in run) if x)
                centre = pymupdf.Rect(seq[run[0]][:4])
                mid = centre.tl + (centre.br - centre.tl) / 2
                size, font, base = next(((sp[1], sp[2], sp[3]) for sp in spans if sp[0].contains(mid)),
                                        (rect.height / 1.15, "Helvetica", rect.y1 - 0.2 * rect.height))
                fontname = "tiro" if "times" in font.lower() or "serif" in font.lower() and "sans" not in font.lower() else "helv"
                width = rect.width
                need = pymupdf.get_text_length(new, fontname, size)
                if need > width:  # room to the right, up to the next word on this line
                    after = [w[0] for w in seq if abs(w[1] - rect.y0) < rect.height / 2 and w[0] >= rect.x1 - 0.5]
                    limit = min(after, default=page.rect.x1 - 20) - 3
                    width = max(width, min(need, limit - rect.x0))
                    if need > width:
                        size = max(4.0, size * width / need)
                # Only the run's own glyphs go (a band through its middle: a label printed tight
                # above or below keeps its letters); the new words are written on its baseline.
                band = pymupdf.Rect(rect.x0 + 0.3, rect.y0 + 0.4 * rect.height, rect.x1 - 0.3, rect.y1 - 0.35 * rect.height)
                page.add_redact_annot(band, fill=False)
                writes.append(((rect.x0, base), new, fontname, size))
                done += [(o, todo[k]) for o, k in zip(olds, run) if k in todo]
        page.apply_redactions(images=pymupdf.PDF_REDACT_IMAGE_NONE, graphics=pymupdf.PDF_REDACT_LINE_ART_NONE,
                              text=pymupdf.PDF_REDACT_TEXT_REMOVE)
        for origin, new, fontname, size in writes:
            if new:
                page.insert_text(origin, new, fontname=fontname, fontsize=size)
    return done


# --- packets ---------------------------------------------------------------------------------------


def available() -> bool:
    return all((FOLDER / t.file).is_file() for t in TRUTH)


_SWAPS: dict[str, dict[str, list[tuple[str, str]]]] = {}


def swaps(packet: Packet) -> dict[str, list[tuple[str, str]]]:
    """Per document key of a realpdf packet built in this process: the (printed, replacement)
    words written over its pages (empty for the document left with its own patient)."""
    return _SWAPS.get(packet.name, {})


def build(name: str, chosen: list[Truth], who: Person, intruder: int | None,
          ocr: CachedOcr | None) -> Packet:
    import pymupdf

    out = pymupdf.open()
    truth: list[str | None] = []
    docs: dict[str, Doc] = {}
    patients: dict[str, Identity] = {}
    swapped: dict[str, list[tuple[str, str]]] = {}
    for i, t in enumerate(chosen):
        with pymupdf.open(FOLDER / t.file) as src:
            part = pymupdf.open()
            part.insert_pdf(src, from_page=t.first - 1, to_page=t.last - 1)
        if i == intruder:
            identity, swapped[t.key] = t.patient, []
        else:
            identity = printed_identity(t, who)
            swapped[t.key] = reidentify(part, t, who, range(len(part)))
        out.insert_pdf(part)
        part.close()
        truth += [t.key] * (t.last - t.first + 1)
        docs[t.key] = Doc(t.key, t.kind, t.start, t.end, identity, source=f"{t.file} p{t.first}-{t.last}")
        patients[t.key] = identity
    data = out.tobytes(garbage=3, deflate=True, no_new_id=True)
    out.close()
    _SWAPS[name] = swapped
    return Packet(name=name, family=FAMILY, pages=pages_of(read_pdf(data, ocr)), truth=truth, docs=docs,
                  patients=patients, mixed=intruder is not None, pdf=data)


def packets(count: int, seed: int, ocr: CachedOcr | None = None) -> list[Packet]:
    if not available():
        return []
    rng = random.Random(f"realpdf/{seed}")
    out = []
    for index in range(count):
        size = rng.randint(2, 5)
        chosen: list[Truth] = []
        for t in rng.sample(TRUTH, len(TRUTH)):
            same = {t.file, "jsl_easy_00.pdf", "jsl_easy_00_signature.pdf"} if t.file.startswith("jsl_easy_00") else {t.file}
            if len(chosen) < size and not any(c.file in same and c.file != t.file or c.key == t.key for c in chosen):
                chosen.append(t)
        who = person(rng)
        intruder = rng.randrange(len(chosen)) if rng.random() < 0.3 else None
        out.append(build(f"realpdf-{seed}-{index:02d}", chosen, who, intruder, ocr))
    return out
