"""Scanned packets: every other family printed, scanned and read through OCR, and the issue's
failing case.

(a) A packet of the cda, synthea, realpdf or generated family (a family is skipped when its
``available()`` is False or its module is absent), cut to its first 2-4 documents (at most
about 12 pages: OCR costs a second a page), its ``Packet.pdf`` rendered page by page at 200 dpi
grey and degraded as a fax or a copier does (``_clinical._degrade``: a slight turn, sometimes a
blur, speckle, JPEG quality 50-80; before it, now and then, punch holes down the left margin
and a darker photocopy background), then packed as an image-only PDF and read as the pipeline
reads it (``common.read_pdf``: no text layer, so Tesseract through ``CachedOcr``). Its truth,
documents and patients are the source packet's. The realpdf family re-identifies on the PDF
itself (redaction), so its scans show the packet patient, as its text does.

(b) The issue's case ("image-only records of several patients packed 2-3 to a file ...
pathology reports with punch holes and noise ... all 9 extra starts are the second page of a
two-page pathology report (a repeated banner and report heading) taken for a new document; one
of its encounters is dated 2083"): two-page pathology reports made here, page 2 repeating the
banner (patient, birth date, MRN, accession number, collected date) and the report heading
and, in half of them, saying "Page 2 of 2", 2-3 patients to a file (mixed, each report with its own Identity),
in three layouts, a collection date now and then in the 2080s (a de-identified date shift).

``packets(count, seed, ocr)`` goes round-robin over the available source families and the
pathology kind. Without ``ocr`` the pages read empty (the truth is still whole).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import random
import shutil

from bench import _clinical
from bench.encounter_families.common import CachedOcr, Doc, Identity, Packet, pages_of, read_pdf
from shared.models import EncounterType

FAMILY = "scanned"
SOURCES = ("cda", "synthea", "realpdf", "generated")
PATHOLOGY = "pathology"
MAX_PAGES = 12  # a scanned packet's pages at most (OCR volume)


def available() -> bool:
    return shutil.which("tesseract") is not None


def _family(name: str):
    try:
        module = importlib.import_module(f"bench.encounter_families.{name}")
    except ImportError:
        return None
    return module if module.available() else None


def kinds() -> list[str]:
    return [name for name in SOURCES if _family(name) is not None] + [PATHOLOGY]


# --- scanning a PDF ------------------------------------------------------------------------------


def scan_page(page, rng: random.Random) -> bytes:
    """One PDF page as a scanner or fax sends it: 200 dpi grey, sometimes punch holes and a
    photocopy's grey background, then turned, blurred, speckled and JPEG-compressed."""
    import pymupdf
    from PIL import Image, ImageDraw

    pix = page.get_pixmap(dpi=200, colorspace=pymupdf.csGRAY, alpha=False)
    image = Image.frombytes("L", (pix.width, pix.height), pix.samples)
    if rng.random() < 0.35:  # a photocopy: the paper greyer, the ink a little lighter
        floor = rng.randrange(200, 228)
        image = image.point(lambda v, f=floor: 30 + v * (f - 30) // 255)
    if rng.random() < 0.4:  # punched for a binder: two or three holes down the left margin
        draw = ImageDraw.Draw(image)
        r = image.width // 70
        x = image.width // 22
        for f in ((0.25, 0.75) if rng.random() < 0.5 else (0.12, 0.5, 0.88)):
            y = int(image.height * f) + rng.randrange(-20, 20)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=rng.randrange(10, 60))
    pix = pymupdf.Pixmap(pymupdf.csGRAY, image.width, image.height, image.tobytes(), False)
    return _clinical._degrade(pix, rng)


def image_pdf(jpegs: list[bytes]) -> bytes:
    """The scanned pages as an image-only PDF (letter pages, no text layer)."""
    import pymupdf

    out = pymupdf.open()
    for jpeg in jpegs:
        page = out.new_page(width=612, height=792)
        page.insert_image(page.rect, stream=jpeg)
    data = out.tobytes(garbage=3, deflate=True, no_new_id=True)
    out.close()
    return data


def scan(pdf: bytes, key: str) -> bytes:
    """``pdf`` printed and scanned, page by page, seeded by ``key``."""
    import pymupdf

    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        return image_pdf([scan_page(page, random.Random(f"{key}/{i}")) for i, page in enumerate(doc)])


# --- (a) another family, scanned ---------------------------------------------------------------------


def _same(a: Identity, b: Identity) -> bool:
    def key(who: Identity) -> tuple[str, str]:
        words = who.name.lower().split()
        return (words[0], words[-1]) if words else ("", "")

    return key(a) == key(b) and (a.dob is None or b.dob is None or a.dob == b.dob)


def cut(packet: Packet, docs: int) -> tuple[list[int], list[str]]:
    """The page indexes of ``packet``'s first ``docs`` documents (at most MAX_PAGES pages, at
    least one document) and their keys, in page order."""
    keep: list[str] = []
    pages: list[int] = []
    for i, key in enumerate(packet.truth):
        if key is not None and key not in keep:
            if len(keep) >= docs or (keep and len(pages) + packet.truth.count(key) > MAX_PAGES):
                break
            keep.append(key)
        pages.append(i)
    while pages and packet.truth[pages[-1]] is None:  # no trailing blank page
        pages.pop()
    return pages, keep


def rescan(source: Packet, name: str, docs: int, ocr: CachedOcr | None) -> Packet:
    import pymupdf

    pages, keep = cut(source, docs)
    with pymupdf.open(stream=source.pdf, filetype="pdf") as src:
        src.select(pages)
        part = src.tobytes(garbage=3, deflate=True, no_new_id=True)
    data = scan(part, name)
    patients = {k: source.patients[k] for k in keep}
    who = list(patients.values())
    mixed = source.mixed and not all(_same(who[0], w) for w in who[1:])
    return Packet(name=name, family=FAMILY, pages=pages_of(read_pdf(data, ocr)),
                  truth=[source.truth[i] for i in pages], docs={k: source.docs[k] for k in keep},
                  patients=patients, mixed=mixed, scanned=list(keep), pdf=data)


# --- (b) multi-patient pathology reports ----------------------------------------------------------------


_FIRST = ["Marlene", "Curtis", "Dolores", "Wendell", "Ingrid", "Rufus", "Gwendolyn", "Otis", "Pearl", "Clifford"]
_LAST = ["Vasquez", "Holloway", "Pritchard", "Szabo", "Lindgren", "McAllister", "Obi", "Fontaine", "Radcliffe"]
_LABS = [("Northside Pathology Associates", "2200 Medical Park Dr, Suite 140, Columbus, OH 43214"),
         ("Valley Regional Laboratory - Anatomic Pathology", "77 Hospital Way, Fresno, CA 93721"),
         ("St. Brigid Medical Center, Department of Pathology", "9 Abbey Road, Worcester, MA 01608")]
_HEADINGS = ["SURGICAL PATHOLOGY REPORT", "PATHOLOGY REPORT", "CYTOPATHOLOGY REPORT"]
_SPECIMENS = [("Skin, left forearm, shave biopsy", "Basal cell carcinoma, nodular type; margins free of tumor."),
              ("Colon, sigmoid, polypectomy", "Tubular adenoma; no high-grade dysplasia identified."),
              ("Breast, right, core needle biopsy", "Fibroadenoma; no atypia or malignancy identified."),
              ("Prostate, needle biopsies (12 cores)", "Benign prostatic tissue; no carcinoma identified."),
              ("Stomach, antrum, biopsy", "Chronic gastritis; Helicobacter organisms identified on H&E."),
              ("Thyroid, left lobe, fine needle aspiration", "Benign follicular nodule (Bethesda category II)."),
              ("Gallbladder, cholecystectomy", "Chronic cholecystitis with cholelithiasis.")]
_PATHOLOGISTS = ["Helen Marsh, MD", "Rajiv Menon, MD", "Claire Dubois, MD", "Thomas Beck, DO"]


@dataclasses.dataclass(frozen=True)
class Report:
    key: str
    patient: Identity
    accession: str
    collected: dt.date
    received: dt.date
    signed: dt.date
    specimen: str
    diagnosis: str
    pathologist: str


def _report(rng: random.Random, key: str, patient: Identity, year_2080s: bool) -> Report:
    year = rng.randrange(2080, 2086) if year_2080s else rng.randrange(2015, 2025)
    collected = dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(360))
    received = collected + dt.timedelta(days=rng.randrange(0, 2))
    specimen, diagnosis = rng.choice(_SPECIMENS)
    return Report(key, patient, f"S{year % 100:02d}-{rng.randrange(1000, 99999)}", collected, received,
                  received + dt.timedelta(days=rng.randrange(1, 6)), specimen, diagnosis, rng.choice(_PATHOLOGISTS))


def _fmt(value: dt.date, style: str) -> str:
    return value.isoformat() if style == "iso" else f"{value:%m/%d/%Y}"


def print_report(report: Report, layout: int, rng: random.Random) -> bytes:
    """A two-page pathology report; page 2 repeats the lab's name, the banner and the heading.
    Half the reports count their pages ("Page 2 of 2"); the others say nothing of it, as the
    issue's reports did not."""
    import pymupdf

    counted = rng.random() < 0.5
    lab, address = rng.choice(_LABS)
    heading = rng.choice(_HEADINGS)
    style = rng.choice(["us", "us", "iso"])
    who = report.patient
    last, first = who.name.split()[-1], " ".join(who.name.split()[:-1])
    pages_text = [
        [("CLINICAL HISTORY", [(f"{rng.choice(['Lesion', 'Mass', 'Nodule', 'Polyp'])} noted on examination; "
                                "rule out malignancy."), "Previous biopsy: none on file."]),
         ("SPECIMEN", [f"A. {report.specimen}"]),
         ("GROSS DESCRIPTION", [(f"Received in formalin labeled with the patient's name and \"{report.specimen.split(',')[0]}\" "
                                 f"are {rng.randrange(1, 6)} tan-pink tissue fragments measuring {rng.randrange(2, 15)} x "
                                 f"{rng.randrange(2, 9)} x {rng.randrange(1, 5)} mm in aggregate."),
                                "Entirely submitted in cassette A1."])],
        [("MICROSCOPIC DESCRIPTION", [("Sections show the lesion described in the diagnosis below. "
                                       "Immunohistochemical stains were reviewed with appropriate controls.")]),
         ("FINAL DIAGNOSIS", [f"A. {report.specimen}:", f"   - {report.diagnosis}"]),
         ("COMMENT", ["Clinical correlation is recommended."]),
         ("", [f"Electronically signed by {report.pathologist} on {_fmt(report.signed, style)}"])],
    ]
    out = pymupdf.open()
    for number, sections in enumerate(pages_text, 1):
        page = out.new_page(width=612, height=792)
        y = 50.0
        if layout == 0:  # centred lab name, a boxed banner, the heading below it
            for text, size in ((lab, 13), (address, 8.5)):
                page.insert_text(((612 - pymupdf.get_text_length(text, "hebo", size)) / 2, y), text,
                                 fontname="hebo" if size > 10 else "helv", fontsize=size)
                y += size * 1.6
            box = pymupdf.Rect(50, y, 562, y + 44)
            page.draw_rect(box, width=0.8)
            page.insert_text((56, y + 15), f"PATIENT: {last.upper()}, {first.upper()}    DOB: {_fmt(who.dob, style)}"
                             f"    MRN: {who.mrn}", fontname="helv", fontsize=9.5)
            page.insert_text((56, y + 33), f"ACCESSION #: {report.accession}    COLLECTED: {_fmt(report.collected, style)}"
                             f"    RECEIVED: {_fmt(report.received, style)}", fontname="helv", fontsize=9.5)
            y += 66
            page.insert_text((50, y), heading, fontname="hebo", fontsize=13)
            y += 26
        elif layout == 1:  # the heading first, a label column on the left
            page.insert_text((50, y), lab, fontname="tibo", fontsize=12)
            page.insert_text((50, y + 13), address, fontname="tiro", fontsize=8.5)
            page.insert_text((330, y), heading, fontname="tibo", fontsize=12)
            y += 40
            for label, value in (("Patient Name:", f"{first} {last}"), ("Date of Birth:", _fmt(who.dob, style)),
                                 ("Medical Record #:", who.mrn), ("Accession No.:", report.accession),
                                 ("Date Collected:", _fmt(report.collected, style)),
                                 ("Date Reported:", _fmt(report.signed, style))):
                page.insert_text((50, y), label, fontname="tibo", fontsize=10)
                page.insert_text((160, y), value, fontname="tiro", fontsize=10)
                y += 14
            page.draw_line((50, y), (562, y), width=0.6)
            y += 22
        else:  # a running banner line in courier, like a lab system's print
            page.insert_text((40, y), f"{lab.upper()}", fontname="cobo", fontsize=10)
            y += 16
            page.insert_text((40, y), f"{last.upper()},{first.upper()}  DOB {_fmt(who.dob, style)}  MRN {who.mrn}"
                             f"  ACC {report.accession}  COLL {_fmt(report.collected, style)}", fontname="cour", fontsize=8.5)
            y += 24
            page.insert_text((40, y), f"*** {heading} ***", fontname="cobo", fontsize=11)
            y += 24
        if number == 2 and rng.random() < 0.6:
            page.insert_text((50, y), "(continued)", fontname="helv", fontsize=9)
            y += 18
        for title, lines in sections:
            if title:
                page.insert_text((50, y), title, fontname="hebo", fontsize=10.5)
                y += 16
            for line in lines:
                for chunk in _clinical.wrap(line, "helv", 10, 500):
                    page.insert_text((56, y), chunk, fontname="helv", fontsize=10)
                    y += 14
            y += 10
        if counted:
            page.insert_text((250, 760), f"Page {number} of 2", fontname="helv", fontsize=9)
    data = out.tobytes(garbage=3, deflate=True, no_new_id=True)
    out.close()
    return data


def pathology(name: str, rng: random.Random, ocr: CachedOcr | None) -> Packet:
    """2-3 patients' two-page pathology reports (2-4 reports) in one image-only file."""
    import pymupdf

    people = []
    for _ in range(rng.choice([2, 2, 3])):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        while any(p.name.endswith(last) for p in people):
            last = rng.choice(_LAST)
        dob = dt.date(1935, 1, 1) + dt.timedelta(days=rng.randrange(60 * 365))
        people.append(Identity(f"{first} {last}", dob, f"{rng.randrange(10**6, 10**8)}"))
    owners = people + [rng.choice(people) for _ in range(rng.randrange(0, 5 - len(people)))]
    rng.shuffle(owners)
    far = rng.randrange(len(owners)) if rng.random() < 0.4 else None
    reports = [_report(rng, f"{name}/r{i}", who, i == far) for i, who in enumerate(owners)]
    out = pymupdf.open()
    truth: list[str | None] = []
    for report in reports:
        with pymupdf.open(stream=print_report(report, rng.randrange(3), rng), filetype="pdf") as part:
            out.insert_pdf(part)
        truth += [report.key, report.key]
    data = scan(out.tobytes(garbage=3, deflate=True, no_new_id=True), name)
    out.close()
    docs = {r.key: Doc(r.key, EncounterType.LAB, r.collected, r.collected, r.patient,
                       source=f"pathology {r.accession}") for r in reports}
    return Packet(name=name, family=FAMILY, pages=pages_of(read_pdf(data, ocr)), truth=truth, docs=docs,
                  patients={r.key: r.patient for r in reports}, mixed=True, scanned=list(docs), pdf=data)


# --- packets ---------------------------------------------------------------------------------------


def packets(count: int, seed: int, ocr: CachedOcr | None = None) -> list[Packet]:
    if not available():
        return []
    order = kinds()
    rng = random.Random(f"scanned/{seed}")
    plan = [(order[i % len(order)], rng.randint(2, 4), rng.randrange(10**6)) for i in range(count)]
    wanted = {k: sum(1 for kind, _, _ in plan if kind == k) for k in order}
    sources = {k: _family(k).packets(n, seed, None) for k, n in wanted.items() if k != PATHOLOGY and n}
    out = []
    for index, (kind, docs, sub) in enumerate(plan):
        name = f"scanned-{seed}-{index:02d}-{kind}"
        if kind == PATHOLOGY:
            out.append(pathology(name, random.Random(sub), ocr))
        elif sources[kind]:
            out.append(rescan(sources[kind].pop(0), name, docs, ocr))
    return out
