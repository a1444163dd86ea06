"""The clinical development set for Pass 0.5: real documents, printed as EHRs print them.

Sources (read from ``../shared/corpus/text``, never copied; everything here skips when it is
absent): the twelve full HL7 C-CDA example documents (their type, their encounter's dates from
``encompassingEncounter`` or ``serviceEvent``, the patient's name, birth date and identifier,
author and custodian, every section's narrative with its tables) and the ACI-Bench visit
notes (their sections; the visit date, clinician, clinic, birth date and MRN are drawn from a
seed, since the notes carry none).

Each document is printed in one of several layouts (letterhead left or centred, a patient
banner as a line, a table or a running header, "Page x of y", "x/y" or no numbering, a
"Printed" or "Faxed" footer, a previous-visit line, a signature block with its signing date,
a fax header on every page after a fax cover sheet), some printed pages are scanned (rendered,
turned, speckled, JPEG-compressed, OCR'd by the pipeline's ``TesseractOcr``; results cached
under ``build/encounters_ocr``), and 2-8 documents are packed per file, now and then with a
blank back side. Some packets mix two patients: one document in it shows another patient's
banner (a misfiled page), which the manifest must flag.

The split is decided by source document before any tuning: C-CDA documents by a hash of their
file name, ACI-Bench notes by their challenge split (train and valid: development; the three
test splits: validation). No source is in both parts.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import random
import re
import xml.etree.ElementTree as ElementTree
import zlib
from collections.abc import Callable
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw, ImageFilter

from docpipe_samples import wrap
from shared.models import EncounterType, PageText

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "text"
ET = EncounterType
A4 = (612, 792)  # US Letter: the C-CDA examples are US documents
MARGIN = 54
SCANNED = 0.1  # share of documents that arrive as scans
MIXED = 0.3  # share of packets with a page of another patient

_NS = {"h": "urn:hl7-org:v3"}
_CCDA_TYPES = {
    "Care Plan": ET.OTHER,
    "CCD": ET.OTHER,
    "Consultation Note": ET.OUTPATIENT,
    "Diagnostic Imaging Report": ET.IMAGING,
    "Discharge Summary": ET.INPATIENT,
    "History and Physical": ET.INPATIENT,
    "Operative Note": ET.PROCEDURE,
    "Procedure Note": ET.PROCEDURE,
    "Progress Note": ET.OUTPATIENT,
    "Referral Note": ET.REFERRAL,
    "Transfer Summary": ET.INPATIENT,
}
# Summaries of care and plans span a life, not an encounter: their service period is no encounter date.
_UNDATED = {"Care Plan", "CCD"}
_CCDA_TITLES = {  # how the document's own kind reads as a printed title
    "Care Plan": "CARE PLAN",
    "CCD": "CONTINUITY OF CARE DOCUMENT",
    "Consultation Note": "CONSULTATION NOTE",
    "Diagnostic Imaging Report": "DIAGNOSTIC IMAGING REPORT",
    "Discharge Summary": "DISCHARGE SUMMARY",
    "History and Physical": "HISTORY AND PHYSICAL",
    "Operative Note": "OPERATIVE NOTE",
    "Procedure Note": "PROCEDURE NOTE",
    "Progress Note": "PROGRESS NOTE",
    "Referral Note": "REFERRAL NOTE",
    "Transfer Summary": "TRANSFER SUMMARY",
}
_CLINICS = [
    ("Maple Grove Family Medicine", "410 Elm Street, Springfield, IL 62704", "(217) 555-0142"),
    ("Harbor View Internal Medicine", "88 Bay Road, Portsmouth, NH 03801", "(603) 555-0187"),
    ("Cedar Ridge Primary Care", "1200 Ridge Avenue, Boulder, CO 80302", "(303) 555-0119"),
    ("Lakeshore Orthopedic Associates", "7 Lakeshore Drive, Madison, WI 53703", "(608) 555-0166"),
    ("Riverbend Cardiology Clinic", "55 River Street, Dayton, OH 45402", "(937) 555-0123"),
    ("Summit Neurology Group", "300 Summit Blvd, Asheville, NC 28801", "(828) 555-0171"),
]
_CLINICIANS = ["Dr. Laura Chen, MD", "Dr. Marcus Hill, DO", "Dr. Anita Patel, MD", "Dr. Samuel Ortiz, MD",
               "Dr. Grace Whitfield, MD", "Dr. Omar Haddad, MD", "Dr. Elena Novak, MD", "Dr. James Okoro, MD"]


@dataclasses.dataclass(frozen=True)
class Identity:
    name: str
    dob: dt.date
    mrn: str


@dataclasses.dataclass
class Doc:
    """One source document: its truth and what it prints."""

    key: str
    part: str  # "dev" or "val"
    kind: EncounterType
    title: str
    start: dt.date | None
    end: dt.date | None
    patient: Identity
    facility: str
    address: str
    phone: str
    provider: str | None
    printed: dt.date  # when the EHR printed (or the author signed) it
    own_title: str  # the title as the source system wrote it
    sections: list[tuple[str, list[str]]]  # heading, lines ("a | b | c" for a table row)


# --- reading the corpus ---------------------------------------------------------------------------


def available() -> bool:
    return CORPUS.is_dir()


def _hl7_date(value: str | None) -> dt.date | None:
    if not value or len(value) < 8:
        return None
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def _text(el: ElementTree.Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def _narrative(el: ElementTree.Element) -> list[str]:
    """A section's <text> as printed lines: a table row per line, cells joined by " | "."""
    out: list[str] = []

    def walk(node: ElementTree.Element) -> None:
        tag = node.tag.split("}")[-1]
        if tag == "table":
            for row in node.iter("{urn:hl7-org:v3}tr"):
                cells = [_text(c) for c in row if c.tag.split("}")[-1] in ("td", "th")]
                if any(cells):
                    out.append(" | ".join(c or "-" for c in cells))
            return
        if tag in ("paragraph", "item", "caption"):
            line = _text(node)
            if line:
                out.append(("- " if tag == "item" else "") + line)
            return
        if node.text and node.text.strip() and tag in ("text", "td"):
            out.append(" ".join(node.text.split()))
        for child in node:
            walk(child)
            if child.tail and child.tail.strip():
                out.append(" ".join(child.tail.split()))

    walk(el)
    return out


def _ccda_docs() -> list[Doc]:
    docs = []
    folder = CORPUS / "hl7_c-cda_examples" / "Documents"
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".xml"):
        kind_name = path.relative_to(folder).parts[0]
        root = ElementTree.parse(path).getroot()
        role = root.find("h:recordTarget/h:patientRole", _NS)
        name_el = role.find("h:patient/h:name", _NS)
        given = [g.text for g in name_el.findall("h:given", _NS) if g.text][:1]
        family = [f.text for f in name_el.findall("h:family", _NS) if f.text]
        ident = next((i.get("extension") for i in role.findall("h:id", _NS) if i.get("extension")), "0000")
        patient = Identity(" ".join(given + family), _hl7_date(role.find("h:patient/h:birthTime", _NS).get("value")),
                           ident)
        timing = root.find("h:componentOf/h:encompassingEncounter/h:effectiveTime", _NS)
        if timing is None:
            timing = root.find("h:documentationOf/h:serviceEvent/h:effectiveTime", _NS)
        start = end = None
        if timing is not None and kind_name not in _UNDATED:
            low, high = timing.find("h:low", _NS), timing.find("h:high", _NS)
            start = _hl7_date(low.get("value") if low is not None else timing.get("value"))
            end = _hl7_date(high.get("value")) if high is not None else start
        org = _text(root.find("h:custodian/h:assignedCustodian/h:representedCustodianOrganization/h:name", _NS))
        author = root.find("h:author/h:assignedAuthor/h:assignedPerson/h:name", _NS)
        provider = None
        if author is not None:
            parts = [t for t in (_text(author.find("h:given", _NS)), _text(author.find("h:family", _NS))) if t]
            provider = "Dr. " + " ".join(parts) if parts else None
        sections = []
        for section in root.iter("{urn:hl7-org:v3}section"):
            title, text = section.find("h:title", _NS), section.find("h:text", _NS)
            if title is None or text is None:
                continue
            lines = [line for line in _narrative(text) if line][:40]
            if lines:
                sections.append((_text(title).upper(), lines))
        h = zlib.crc32(path.name.encode())
        docs.append(Doc(
            key=f"ccda/{kind_name}/{path.parent.name}", part="dev" if h % 2 == 0 else "val",
            kind=_CCDA_TYPES[kind_name], title=_CCDA_TITLES[kind_name], start=start, end=end, patient=patient,
            facility=org or "Community Health and Hospitals", address="1002 Healthcare Drive, Portland, OR 97266",
            phone="(555) 555-1002", provider=provider,
            printed=_hl7_date(root.find("h:effectiveTime", _NS).get("value")) or dt.date(2014, 1, 1),
            own_title=_text(root.find("h:title", _NS)) or _CCDA_TITLES[kind_name].title(), sections=sections,
        ))
    return docs


_ACI_PARTS = {"train": "dev", "valid": "dev", "clinicalnlp_taskB_test1": "val",
              "clinicalnlp_taskC_test2": "val", "clef_taskC_test3": "val"}
_HEADING = re.compile(r"^[A-Z][A-Z /&,()\-]{3,60}$")


def _aci_docs() -> list[Doc]:
    docs = []
    folder = CORPUS / "aci_bench" / "challenge_data"
    for split, part in _ACI_PARTS.items():
        meta = {r["encounter_id"]: r for r in csv.DictReader((folder / f"{split}_metadata.csv").open())}
        for row in csv.DictReader((folder / f"{split}.csv").open()):
            m = meta.get(row["encounter_id"], {})
            rng = random.Random(f"aci/{split}/{row['encounter_id']}")
            visit = dt.date(2018, 1, 1) + dt.timedelta(days=rng.randrange(6 * 365))
            age_text = re.match(r"\d+", m.get("patient_age") or "")
            age = int(age_text.group()) if age_text and "month" not in m.get("patient_age", "") else rng.randint(20, 85)
            dob = visit - dt.timedelta(days=365 * age + rng.randrange(365))
            name = f"{m.get('patient_firstname') or 'Alex'} {m.get('patient_familyname') or 'Morgan'}".strip().title()
            clinic = rng.choice(_CLINICS)
            sections: list[tuple[str, list[str]]] = []
            for line in row["note"].splitlines():
                line = line.strip().replace("\u2022", "-")
                if not line:
                    continue
                if _HEADING.match(line) and len(line.split()) <= 8:
                    sections.append((line, []))
                elif sections:
                    sections[-1][1].append(line)
                else:
                    sections.append(("NOTE", [line]))
            title = rng.choice(["OFFICE VISIT", "CLINIC NOTE", "PROGRESS NOTE", "OUTPATIENT VISIT NOTE"])
            docs.append(Doc(
                key=f"aci/{split}/{row['encounter_id']}", part=part, kind=ET.OUTPATIENT, title=title,
                own_title=f"{clinic[0]}: {title.title()}",
                start=visit, end=visit, patient=Identity(name, dob, f"{rng.randrange(10**6, 10**7)}"),
                facility=clinic[0], address=clinic[1], phone=clinic[2], provider=rng.choice(_CLINICIANS),
                printed=visit + dt.timedelta(days=rng.randrange(1, 400)), sections=[s for s in sections if s[1]],
            ))
    return docs


def sources() -> list[Doc]:
    return _ccda_docs() + _aci_docs() if available() else []


# --- printing -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    date_style: str  # "us" 03/05/2013, "iso" 2013-03-05, "long" March 5, 2013
    letterhead: str  # "left", "center"
    banner: str  # "line", "table", "block"
    numbering: str  # "of" (Page x of y footer), "slash" (x/y header), "none"
    running: bool  # a running header with the patient on pages after the first
    footer: str  # "printed", "confidential", "none"
    previous_visit: bool
    signature: bool
    fax: bool  # a fax header on every page, after a cover sheet
    font: str  # "helv", "tiro", "cour"
    title_after_banner: bool  # the document title below the patient banner and service lines
    own_title: bool  # the title as the source system wrote it ("Community Health ...: Discharge Summary")
    department: bool  # a longer letterhead: department and fax lines


def _fmt(value: dt.date, style: str) -> str:
    if style == "iso":
        return value.isoformat()
    if style == "long":
        return f"{value:%B} {value.day}, {value.year}"
    return f"{value:%m/%d/%Y}"


def random_layout(rng: random.Random) -> Layout:
    return Layout(
        date_style=rng.choice(["us", "us", "iso", "long"]),
        letterhead=rng.choice(["left", "center"]),
        banner=rng.choice(["line", "table", "block"]),
        numbering=rng.choice(["of", "slash", "none", "none"]),
        running=rng.random() < 0.6,
        footer=rng.choice(["printed", "confidential", "none"]),
        previous_visit=rng.random() < 0.4,
        signature=rng.random() < 0.7,
        fax=rng.random() < 0.15,
        font=rng.choice(["helv", "helv", "tiro", "cour"]),
        title_after_banner=rng.random() < 0.35,
        own_title=rng.random() < 0.4,
        department=rng.random() < 0.4,
    )


_FONTS = {"helv": ("helv", "hebo"), "tiro": ("tiro", "tibo"), "cour": ("cour", "cobo")}


def _service_lines(doc: Doc, style: str, rng: random.Random) -> list[str]:
    if doc.start is None:
        return [f"Document created: {_fmt(doc.printed, style)}"]
    if doc.kind == ET.INPATIENT and doc.end and doc.end != doc.start:
        return [f"Admission date: {_fmt(doc.start, style)}    Discharge date: {_fmt(doc.end, style)}"]
    label = {ET.PROCEDURE: "Procedure date", ET.IMAGING: "Exam date", ET.REFERRAL: "Referral date"}.get(
        doc.kind, rng.choice(["Date of service", "Visit date", "Encounter date"]))
    if doc.end and doc.end != doc.start:
        return [f"{label}: {_fmt(doc.start, style)} - {_fmt(doc.end, style)}"]
    return [f"{label}: {_fmt(doc.start, style)}"]


def _banner(patient: Identity, layout: Layout) -> list[tuple[str, str]]:
    dob = _fmt(patient.dob, layout.date_style)
    if layout.banner == "table":
        return [("cell", "Patient Name | Date of Birth | MRN"), ("cell", f"{patient.name} | {dob} | {patient.mrn}")]
    if layout.banner == "block":
        return [("kv", f"Patient: {patient.name}"), ("kv", f"DOB: {dob}"), ("kv", f"MRN: {patient.mrn}")]
    return [("kv", f"Patient: {patient.name}    DOB: {dob}    MRN: {patient.mrn}")]


def print_doc(doc: Doc, patient: Identity, layout: Layout, rng: random.Random,
              fax_date: dt.date | None = None, width: float | None = None) -> tuple[bytes, int]:
    """The document as a PDF, and whether page 1 is a fax cover sheet (1) or not (0)."""
    regular, bold = _FONTS[layout.font]
    style = layout.date_style
    blocks: list[tuple[str, str]] = []
    title = doc.own_title if layout.own_title else doc.title
    blocks += _banner(patient, layout)
    blocks += [("kv", line) for line in _service_lines(doc, style, rng)]
    if doc.provider:
        blocks.append(("kv", f"{rng.choice(['Provider', 'Attending', 'Author'])}: {doc.provider}"))
    if layout.previous_visit and doc.start:
        blocks.append(("kv", f"Previous visit: {_fmt(doc.start - dt.timedelta(days=rng.randrange(30, 400)), style)}"))
    if layout.title_after_banner:
        blocks += [("gap", ""), ("title", title)]
    blocks.append(("gap", ""))
    for heading, lines in doc.sections:
        blocks.append(("heading", heading))
        for line in lines:
            blocks.append(("row" if " | " in line else "para", line))
        blocks.append(("gap", ""))
    if layout.signature:
        signer = doc.provider or "Attending physician"
        blocks += [("gap", ""), ("kv", f"Electronically signed by: {signer} on {_fmt(doc.printed, style)}")]

    out = pymupdf.open()
    width = width or A4[0] - 2 * MARGIN
    pages: list[list[tuple[float, float, str, str, float]]] = []  # (x, y, text, font, size)

    def new_page(first: bool) -> float:
        pages.append([])
        y = 56.0
        if first:
            head = [(doc.facility, 15, bold), (doc.address, 9, regular), (f"Tel {doc.phone}", 9, regular)]
            if layout.department:
                head[1:1] = [(rng.choice(["Department of Medicine", "Health Information Management",
                                          "Outpatient Services", "Medical Records"]), 10, regular)]
                head.append((f"Fax {doc.phone[:-4]}{rng.randrange(1000, 9999)}", 9, regular))
            for text, size, font in head:
                x = MARGIN if layout.letterhead == "left" else (A4[0] - pymupdf.get_text_length(text, font, size)) / 2
                pages[-1].append((x, y, text, font, size))
                y += size * 1.5
            y += 8
            if not layout.title_after_banner:
                pages[-1].append((MARGIN, y, title, bold, 13))
                y += 24
        elif layout.running:
            pages[-1].append((MARGIN, y, f"{patient.name}  |  MRN {patient.mrn}  |  {title}", regular, 8.5))
            y += 20
        return y

    y = new_page(True)
    bottom = A4[1] - 70
    for kind, text in blocks:
        if kind == "gap":
            y += 7
            continue
        font, size = {"title": (bold, 13), "heading": (bold, 10.5), "row": ("cour", 8.5), "cell": (regular, 10), "kv": (regular, 10),
                      "para": (regular, 10)}[kind]
        lines = wrap(text, font, size, width)
        for line in lines:
            if y > bottom:
                y = new_page(False)
            pages[-1].append((MARGIN, y, line, font, size))
            y += size * 1.45
    n = len(pages)
    cover = 0
    if layout.fax:
        cover = 1
        fd = fax_date or doc.printed
        sheet = out.new_page(width=A4[0], height=A4[1])
        yy = 90.0
        for text, size in (("FAX", 28), ("", 10), (f"To: Records Department    Fax: (555) 555-{rng.randrange(1000, 9999)}", 11),
                           (f"From: {doc.facility}    Fax: {doc.phone}", 11), (f"Date: {_fmt(fd, style)}", 11),
                           (f"Pages: {n + 1} (including cover)", 11), ("Re: requested medical records", 11), ("", 10),
                           ("CONFIDENTIALITY NOTICE: This facsimile contains privileged and confidential", 9),
                           ("information intended only for the addressee. If you received it in error,", 9),
                           ("please notify the sender and destroy all copies.", 9)):
            if text:
                sheet.insert_text((MARGIN, yy), text, fontname=bold if size > 20 else regular, fontsize=size)
            yy += size * 1.8
    for k, items in enumerate(pages, 1):
        page = out.new_page(width=A4[0], height=A4[1])
        if layout.fax:
            fd = fax_date or doc.printed
            page.insert_text((MARGIN, 24), f"{_fmt(fd, 'us')} 14:{rng.randrange(10, 59)}  FROM: {doc.phone}  TO: (555) 555-0100"
                             f"  P. {k + 1}/{n + 1}", fontname="cour", fontsize=8)
        for x, yy, text, font, size in items:
            page.insert_text((x, yy), text, fontname=font, fontsize=size)
        if layout.numbering == "slash":
            page.insert_text((A4[0] - MARGIN - 30, 40), f"{k}/{n}", fontname=regular, fontsize=9)
        foot = []
        if layout.numbering == "of":
            foot.append(f"Page {k} of {n}")
        if layout.footer == "printed":
            foot.append(f"Printed {_fmt(doc.printed, style)} {doc.facility}")
        elif layout.footer == "confidential":
            foot.append(f"{doc.facility} - Confidential patient information")
        if foot:
            page.insert_text((MARGIN, A4[1] - 36), "    ".join(foot), fontname=regular, fontsize=8.5)
    data = out.tobytes(garbage=3, no_new_id=True)
    out.close()
    return data, cover


# --- reading the printed pages as the pipeline does ------------------------------------------------


def _degrade(pix: pymupdf.Pixmap, rng: random.Random) -> bytes:
    image = Image.frombytes("L", (pix.width, pix.height), pix.samples)
    image = image.rotate(rng.uniform(-1.0, 1.0), resample=Image.Resampling.BICUBIC, fillcolor=255)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(0.6))
    draw = ImageDraw.Draw(image)
    for _ in range(500):
        x, y = rng.randrange(image.width), rng.randrange(image.height)
        draw.ellipse((x, y, x + rng.choice((1, 2)), y + rng.choice((1, 2))), fill=rng.randrange(40, 190))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=rng.choice((50, 65, 80)), dpi=(200, 200))
    return buf.getvalue()


def read_pdf(data: bytes, scanned: bool, seed: int, ocr: Callable[[bytes], tuple[str, float | None]] | None):
    """(text, engine, confidence) per page: the text layer, or the OCR of a degraded render."""
    out = []
    with pymupdf.open(stream=data, filetype="pdf") as pdf:
        for index, page in enumerate(pdf):
            if not scanned or ocr is None:
                out.append((page.get_text(), "native", None))
                continue
            rng = random.Random(seed * 1000 + index)
            jpeg = _degrade(page.get_pixmap(dpi=200, colorspace=pymupdf.csGRAY), rng)
            text, confidence = ocr(jpeg)
            out.append((text, "tesseract", confidence))
    return out


# --- packets --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Packet:
    name: str
    part: str
    pages: list[PageText]
    truth: list[str | None]  # per page: the document key, or None (blank, fax cover)
    docs: dict[str, Doc]
    patients: dict[str, Identity]  # per document key: whose banner it prints
    mixed: bool
    scanned: list[str]


def plan(docs: list[Doc], part: str, count: int, seed: int) -> list[dict]:
    rng = random.Random(f"{seed}/{part}")
    pool = [d for d in docs if d.part == part]
    ccda = [d for d in pool if d.key.startswith("ccda/")]
    aci = [d for d in pool if d.key.startswith("aci/")]
    rng.shuffle(aci)
    plans = []
    for index in range(count):
        size = rng.randint(2, 8)
        chosen = rng.sample(ccda, min(len(ccda), rng.randint(0, 2))) + [aci.pop() for _ in range(size) if aci]
        chosen = chosen[:8]
        rng.shuffle(chosen)
        if len(chosen) < 2:
            break
        home = rng.choice(_CLINICS)  # a patient's visit notes mostly come from their own clinic
        chosen = [dataclasses.replace(d, facility=home[0], address=home[1], phone=home[2],
                                      own_title=f"{home[0]}: {d.title.title()}")
                  if d.key.startswith("aci/") and rng.random() < 0.7 else d for d in chosen]
        owner = chosen[0].patient
        mixed = rng.random() < MIXED
        intruder = rng.randrange(1, len(chosen)) if mixed else None
        other = rng.choice([d for d in pool if d.patient.name != owner.name]).patient
        items = []
        for i, doc in enumerate(chosen):
            items.append({
                "doc": doc, "patient": other if i == intruder else owner, "layout": random_layout(rng),
                "scanned": rng.random() < SCANNED, "blank_after": rng.random() < 0.08, "seed": rng.randrange(10**6),
            })
        plans.append({"name": f"{part}-{index:02d}", "part": part, "items": items, "mixed": mixed})
    return plans


def build(p: dict, ocr) -> Packet:
    texts: list[tuple[str, str, float | None]] = []
    truth: list[str | None] = []
    for item in p["items"]:
        doc = item["doc"]
        rng = random.Random(item["seed"])
        data, cover = print_doc(doc, item["patient"], item["layout"], rng, width=item.get("width"))
        read = read_pdf(data, item["scanned"], item["seed"], ocr)
        if item.get("headless") and len(read) - cover > 1:
            read = read[:cover] + read[cover + 1 :]  # its first page never came through
        for index, page in enumerate(read):
            texts.append(page)
            truth.append(None if index < cover else doc.key)
        if item["blank_after"]:
            texts.append(("", "tesseract", None))
            truth.append(None)
    pages = [PageText(page_number=n, text=t, engine=e, confidence=c) for n, (t, e, c) in enumerate(texts, 1)]
    return Packet(
        name=p["name"], part=p["part"], pages=pages, truth=truth, docs={i["doc"].key: i["doc"] for i in p["items"]},
        patients={i["doc"].key: i["patient"] for i in p["items"]}, mixed=p["mixed"],
        scanned=[i["doc"].key for i in p["items"] if i["scanned"]],
    )


def undated(docs: list[Doc]) -> list[Doc]:
    """Every development document as one that says no encounter date: printed with its
    "Document created" line and nothing else dated above its body, its truth undated. A summary
    of care or a plan is such a document; any date predicted for it is invented. For the
    development part only (its sources have none of their own)."""
    return [dataclasses.replace(d, start=None, end=None) if d.part == "dev" else d for d in docs]


def with_notes(docs: list[Doc]) -> list[Doc]:
    """Development documents with the C-CDA *Notes* examples' narratives (a hospital course, a
    procedure's note, a nursing note, a consultation letter: sources neither part uses) added
    as sections, each note's dates those of other events, never this document's encounter."""
    folder = CORPUS / "hl7_c-cda_examples" / "Notes"
    notes = []
    for path in sorted(folder.rglob("*.xml")):
        for section in ElementTree.parse(path).getroot().iter("{urn:hl7-org:v3}section"):
            title, text = section.find("h:title", _NS), section.find("h:text", _NS)
            lines = [line for line in _narrative(text) if line][:40] if text is not None else []
            if title is not None and lines:
                notes.append((_text(title).upper(), lines))
    if not notes:
        return docs
    return [dataclasses.replace(d, sections=d.sections + [notes[i % len(notes)]]) if d.part == "dev" else d
            for i, d in enumerate(docs)]


def _encounter_tables() -> list[tuple[list[str], list[list[str]]]]:
    """The C-CDA *Encounters* examples' narrative tables (past encounters: their kind,
    performer, location and dates): each one's header cells and data rows. The examples are
    section fragments, so only their ``<table>`` elements are parsed."""
    folder = CORPUS / "hl7_c-cda_examples" / "Encounters"
    tables = []
    for path in sorted(folder.rglob("*.xml")):
        source = re.sub(r"<!--.*?-->", "", path.read_text(encoding="utf-8", errors="replace"), flags=re.S)
        for block in re.findall(r"<table\b.*?</table>", source, flags=re.S):
            try:
                table = ElementTree.fromstring(block.replace("<table", '<table xmlns="urn:hl7-org:v3"', 1))
            except ElementTree.ParseError:
                continue
            rows = [[_text(c) for c in row if c.tag.split("}")[-1] in ("td", "th")]
                    for row in table.iter("{urn:hl7-org:v3}tr")]
            rows = [r for r in rows if any(r)]
            if len(rows) >= 2:
                tables.append((rows[0], rows[1:]))
    return tables


def with_history(docs: list[Doc], seed: int) -> list[Doc]:
    """Development documents with a list of the patient's past encounters (the C-CDA
    *Encounters* examples' tables: sources neither part uses), printed as a table or as one
    "Label: value" line per field, under an "Encounters" heading: every date in it belongs to
    another encounter. Now and then its "Start Date" / "End Date" columns read as an EHR's
    "Admission Date" / "Discharge Date"."""
    tables = _encounter_tables()
    if not tables:
        return docs
    rng = random.Random(f"history/{seed}")
    out = []
    for i, doc in enumerate(docs):
        if doc.part != "dev":
            out.append(doc)
            continue
        header, rows = tables[i % len(tables)]
        if rng.random() < 0.5:
            header = [{"Start Date": "Admission Date", "End Date": "Discharge Date"}.get(h, h) for h in header]
        heading = rng.choice(["ENCOUNTERS", "ENCOUNTER HISTORY", "PAST ENCOUNTERS", "HOSPITALIZATIONS"])
        if rng.random() < 0.5:
            lines = [" | ".join(header)] + [" | ".join(c or "-" for c in row) for row in rows]
        else:
            fields = [[f"{h}: {c}" for h, c in zip(header, row, strict=False) if c] for row in rows]
            lines = ["    ".join(f[k : k + 2]) for f in fields for k in range(0, len(f), 2)]
        out.append(dataclasses.replace(doc, sections=doc.sections + [(heading, lines)]))
    return out


def narrow(plans: list[dict], seed: int) -> list[dict]:
    """The plans printed at other text widths, so the sentences of a note wrap elsewhere and
    words such as "admitted on" or "seen on" open a line."""
    rng = random.Random(f"narrow/{seed}")
    return [{**p, "name": f"{p['name']}-narrow", "items": [{**i, "width": rng.choice([300, 360, 420])} for i in p["items"]]}
            for p in plans]


def headless(plans: list[dict], seed: int) -> list[dict]:
    """The plans with some documents' first page lost (a fax that dropped it, a scan that
    missed it): their other pages arrive without title, banner or service date."""
    rng = random.Random(f"headless/{seed}")
    return [{**p, "name": f"{p['name']}-headless", "items": [{**i, "headless": rng.random() < 0.35} for i in p["items"]]}
            for p in plans]


def all_scanned(plans: list[dict]) -> list[dict]:
    """The plans with every document scanned (rendered, degraded, OCR'd): misread digits and labels."""
    return [{**p, "name": f"{p['name']}-scan", "items": [{**i, "scanned": True} for i in p["items"]]} for p in plans]


def confused(packet: Packet, seed: int) -> Packet:
    """The packet as a poor OCR reads it: letters it confuses swapped in some words ("Prevlous",
    "D0B", "Encountcr"), every page marked OCR'd. For the development part only: it exposes
    labels misread, without more validation packets and without Tesseract's time."""
    rng = random.Random(f"confused/{seed}/{packet.name}")
    swaps = [("i", "l"), ("l", "1"), ("o", "0"), ("e", "c"), ("rn", "m"), ("u", "v"), ("S", "5"), ("O", "0"), ("t", "f")]

    def read(text: str) -> str:
        words = text.split(" ")
        for i, word in enumerate(words):
            if word and rng.random() < 0.08:
                a, b = rng.choice(swaps)
                words[i] = word.replace(a, b, 1)
        return " ".join(words)

    pages = [PageText(page_number=p.page_number, text=read(p.text), engine="tesseract", confidence=0.8)
             for p in packet.pages]
    return dataclasses.replace(packet, name=f"{packet.name}-confused-{seed}", pages=pages)


# --- scoring: bench/encounter_families/scoring.py (shared by every family) ---------------------

from bench.encounter_families.scoring import (  # noqa: E402,F401  (re-exported for the oracle bench)
    Scores, auroc, count_boundaries, invented, match_encounters, score,
)
