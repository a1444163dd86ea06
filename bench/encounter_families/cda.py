"""Family "cda": one patient's portal export of HL7's C-CDA example documents.

Each packet is 2-8 of HL7's whole example ClinicalDocuments (``text/hl7_c-cda_examples``), every
one re-identified to the packet's (fictional) patient, rendered by HL7's CDA stylesheet and
printed by headless Chromium (``printer``), concatenated into one PDF, as a patient portal's
"download my records" gives them. About three packets in ten are ``mixed``: the first page of a
document re-identified to another patient sits between two of the packet's documents.

Truth comes from each document's header, never from its text: the kind from the document's
LOINC code (``DOC_KINDS``) or, for notes that can be written in any setting, from the encounter's
code (``ENCOUNTER_KINDS``); the service dates from ``componentOf/encompassingEncounter/
effectiveTime``, else ``documentationOf/serviceEvent/effectiveTime``; never the document's own
``effectiveTime`` (when it was authored or printed).

Skipped sources: the ``Encounters`` and ``Notes`` examples (fragments: an entry or a section, not a
ClinicalDocument; the Encounters ones do not even parse alone, their namespace prefixes are
declared in the document they were cut from) and the ``Unstructured`` ones (a ``nonXMLBody``: the
stylesheet shows it in a fixed-height iframe, which a print cuts or leaves blank).

``python -m bench.encounter_families.cda [count] [seed]`` prints a summary of the packets.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from pathlib import Path

from bench.encounter_families import printer
from bench.encounter_families.common import CORPUS, CachedOcr, Doc, Identity, Packet, pages_of, read_pdf
from shared.models import EncounterType as E

FAMILY = "cda"
EXAMPLES = CORPUS / "text" / "hl7_c-cda_examples"
NS = {"h": "urn:hl7-org:v3"}
V3 = "{urn:hl7-org:v3}"
MIXED_RATE = 0.3

# The document's LOINC code -> its kind; None: a note written in any setting, the encounter's code
# (ENCOUNTER_KINDS) decides, else the default in NOTE_DEFAULT.
DOC_KINDS: dict[str, E | None] = {
    "18842-5": E.INPATIENT,  # Discharge summary: written at the end of a hospital stay
    "11490-0": E.INPATIENT,  # Physician discharge summary: same
    "18761-7": E.INPATIENT,  # Transfer summary: HL7's example has Hospital Course and Hospital
    #                          Discharge Diagnosis sections; the stay it transfers out of
    "34117-2": None,  # History and physical: admission H&P or office H&P; the encounter says which
    "11488-4": None,  # Consult note: inpatient or office consult; the encounter says which
    "34847-4": None,  # Surgery consult note: same
    "11506-3": None,  # Progress note: same (an office follow-up when nothing says otherwise)
    "28570-0": E.PROCEDURE,  # Procedure note: the procedure is the event, whatever the setting
    "11504-8": E.PROCEDURE,  # Surgical operation note: same
    "18748-4": E.IMAGING,  # Diagnostic imaging study: the imaging report
    "11502-2": E.LAB,  # Laboratory report
    "57113-1": E.REFERRAL,  # Referral note: a letter to another provider
    "34133-9": E.OTHER,  # Summary of episode note (CCD): a chart summary, no one encounter
    "52521-2": E.OTHER,  # Overall plan of care: a plan, not an encounter (written during a stay)
    "81334-5": E.ADMINISTRATIVE,  # Patient personal advance care plan
}
NOTE_DEFAULT = E.OUTPATIENT  # a note type above without an encounter code

# Summary documents whose serviceEvent is the span of care summarized (CCD: from the patient's
# birth to the day the summary was made), not a service date: no start.
NO_SERVICE_DATES = {"34133-9"}

# The encounter's code -> kind: HL7 v3 ActCode (encounter class) and CPT E/M ranges.
ACT_CODES: dict[str, E] = {
    "IMP": E.INPATIENT,  # inpatient encounter
    "ACUTE": E.INPATIENT,  # inpatient acute
    "NONAC": E.INPATIENT,  # inpatient non-acute
    "EMER": E.EMERGENCY,  # emergency
    "AMB": E.OUTPATIENT,  # ambulatory
    "SS": E.OUTPATIENT,  # short stay (day surgery, observation): not admitted
    "FLD": E.OUTPATIENT,  # field (seen outside a facility)
    "HH": E.OUTPATIENT,  # home health: a visit, at home
    "PRENC": E.OUTPATIENT,  # pre-admission
    "VR": E.TELEHEALTH,  # virtual
}
CPT_RANGES: list[tuple[int, int, E]] = [
    (99201, 99215, E.OUTPATIENT),  # office or other outpatient visit
    (99217, 99226, E.INPATIENT),  # observation / initial hospital care
    (99231, 99239, E.INPATIENT),  # subsequent hospital care, discharge
    (99241, 99245, E.OUTPATIENT),  # office consultation
    (99251, 99255, E.INPATIENT),  # inpatient consultation
    (99281, 99288, E.EMERGENCY),  # emergency department visit
    (99304, 99318, E.INPATIENT),  # nursing facility care
    (99341, 99350, E.OUTPATIENT),  # home visit
    (99421, 99423, E.TELEHEALTH),  # online digital E/M
    (99441, 99443, E.TELEHEALTH),  # telephone E/M
]
ACT_CODE_SYSTEM = "2.16.840.1.113883.5.4"
CPT_SYSTEM = "2.16.840.1.113883.6.12"

# Fictional packet patients (none is a name in the examples).
GIVEN = {"Marta": "F", "Owen": "M", "Priya": "F", "Tomasz": "M", "Keiko": "F", "Dmitri": "M",
         "Lena": "F", "Caleb": "M", "Nadia": "F", "Ruben": "M", "Ingrid": "F", "Samuel": "M",
         "Yara": "F", "Felix": "M", "Hana": "F", "Jonah": "M"}  # fmt: skip
FAMILY_NAMES = ["Quenneville", "Abernathy", "Okonkwo", "Lindqvist", "Marchetti", "Szabo",
                "Pendergast", "Whitcombe", "Valdivia", "Hollingsworth", "Rasmussen",
                "Castellano", "Brightwater", "Oyelaran", "Kowalczyk", "Thorsby"]  # fmt: skip


# --- shared with synthea.py -------------------------------------------------------------------


def available() -> bool:
    return EXAMPLES.is_dir() and printer.available()


def ts_date(value: str | None) -> dt.date | None:
    """An HL7 TS (YYYYMMDD[hhmm[ss]][+-zzzz]) -> its date; None when it has no day."""
    if not value or not re.match(r"\d{8}", value):
        return None
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def interval(node) -> tuple[dt.date | None, dt.date | None]:
    """An effectiveTime (IVL_TS or TS) -> (start, end); end only when on a later day than start."""
    if node is None:
        return None, None
    start = ts_date(node.get("value"))
    end = None
    low = node.find(f"{V3}low")
    high = node.find(f"{V3}high")
    if start is None and low is not None:
        start = ts_date(low.get("value"))
    if high is not None:
        end = ts_date(high.get("value"))
    if start is None or end is None or end <= start:
        end = None
    return start, end


def identity_of(root) -> Identity:
    """Whose record a ClinicalDocument is, as its banner prints it."""
    role = root.find(f"{V3}recordTarget/{V3}patientRole")
    name = role.find(f"{V3}patient/{V3}name") if role is not None else None
    parts = []
    if name is not None:
        parts = [" ".join(e.text.split()) for e in name if e.tag in (f"{V3}given", f"{V3}family") and e.text]
    birth = role.find(f"{V3}patient/{V3}birthTime") if role is not None else None
    ident = role.find(f"{V3}id") if role is not None else None
    return Identity(
        name=" ".join(parts),
        dob=ts_date(birth.get("value")) if birth is not None else None,
        mrn=ident.get("extension") if ident is not None else None,
    )


def family_of(identity: Identity) -> str:
    return identity.name.split()[-1]


def concatenate(pdfs: list[bytes]) -> bytes:
    import pymupdf

    out = pymupdf.open()
    for pdf in pdfs:
        with pymupdf.open(stream=pdf, filetype="pdf") as part:
            out.insert_pdf(part)
    data = out.tobytes(garbage=3, deflate=True)
    out.close()
    return data


def first_page(pdf: bytes) -> bytes:
    import pymupdf

    out = pymupdf.open()
    with pymupdf.open(stream=pdf, filetype="pdf") as part:
        out.insert_pdf(part, from_page=0, to_page=0)
    data = out.tobytes(garbage=3, deflate=True)
    out.close()
    return data


def page_count(pdf: bytes) -> int:
    import pymupdf

    with pymupdf.open(stream=pdf, filetype="pdf") as document:
        return document.page_count


def assemble(
    name: str,
    family: str,
    parts: list[tuple[Doc, bytes]],
    intruder: tuple[int, Doc, bytes] | None,
    ocr: CachedOcr | None,
) -> Packet:
    """One packet from its documents' PDFs, in order; ``intruder``: (after which document, its Doc,
    a one-page PDF of another patient's document)."""
    pdfs: list[bytes] = []
    truth: list[str | None] = []
    docs: dict[str, Doc] = {}
    for n, (doc, pdf) in enumerate(parts):
        if intruder is not None and intruder[0] == n:
            pdfs.append(intruder[2])
            truth.append(intruder[1].key)
            docs[intruder[1].key] = intruder[1]
        pdfs.append(pdf)
        truth.extend([doc.key] * page_count(pdf))
        docs[doc.key] = doc
    pdf = concatenate(pdfs)
    pages = pages_of(read_pdf(pdf, ocr))
    assert len(pages) == len(truth), (name, len(pages), len(truth))
    return Packet(
        name=name,
        family=family,
        pages=pages,
        truth=truth,
        docs=docs,
        patients={key: doc.patient for key, doc in docs.items()},
        mixed=intruder is not None,
        pdf=pdf,
    )


# --- the HL7 examples ---------------------------------------------------------------------------


def _parse(xml: bytes):
    from lxml import etree

    return etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))


def sources() -> list[Path]:
    """The whole ClinicalDocuments with a structured body, sorted."""
    found = []
    for path in sorted(EXAMPLES.rglob("*"), key=lambda p: str(p.relative_to(EXAMPLES)).lower()):
        if path.suffix.lower() != ".xml":
            continue
        from lxml import etree

        try:
            root = _parse(path.read_bytes())
        except etree.XMLSyntaxError:  # a fragment whose namespace prefixes its document declared
            continue
        if root.tag != f"{V3}ClinicalDocument" or root.find(f"{V3}component/{V3}structuredBody") is None:
            continue
        if root.find(f"{V3}code") is None or root.find(f"{V3}code").get("code") not in DOC_KINDS:
            continue
        found.append(path)
    return found


def encounter_kind(code) -> E | None:
    """An encompassingEncounter/code (or one of its translations) -> kind."""
    if code is None:
        return None
    for node in [code, *code.findall(f"{V3}translation")]:
        system, value = node.get("codeSystem"), node.get("code") or ""
        if system == ACT_CODE_SYSTEM and value in ACT_CODES:
            return ACT_CODES[value]
        if system == CPT_SYSTEM and value.isdigit():
            for low, high, kind in CPT_RANGES:
                if low <= int(value) <= high:
                    return kind
    return None


def truth_of(root) -> tuple[E, dt.date | None, dt.date | None]:
    """(kind, start, end) from the header."""
    loinc = root.find(f"{V3}code").get("code")
    encounter = root.find(f"{V3}componentOf/{V3}encompassingEncounter")
    kind = DOC_KINDS[loinc]
    if kind is None:
        code = encounter.find(f"{V3}code") if encounter is not None else None
        kind = encounter_kind(code) or NOTE_DEFAULT
    if loinc in NO_SERVICE_DATES:
        return kind, None, None
    start, end = (None, None)
    if encounter is not None:
        start, end = interval(encounter.find(f"{V3}effectiveTime"))
    if start is None:
        for event in root.findall(f"{V3}documentationOf/{V3}serviceEvent"):
            start, end = interval(event.find(f"{V3}effectiveTime"))
            if start is not None:
                break
    return kind, start, end


def identities(rng: random.Random, count: int) -> list[Identity]:
    """``count`` distinct fictional patients."""
    names = rng.sample([(g, f) for g in GIVEN for f in FAMILY_NAMES], count * 3)
    out: list[Identity] = []
    families: set[str] = set()
    for given, family in names:
        if family in families:
            continue
        families.add(family)
        # born before every service date in the examples (the earliest: a CCD's care from 1975)
        dob = dt.date(1928, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 45))
        out.append(Identity(name=f"{given} {family}", dob=dob, mrn=f"{rng.randrange(10**7, 10**8)}"))
        if len(out) == count:
            break
    return out


def reidentify(root, who: Identity) -> None:
    """Rewrite recordTarget/patientRole (names, birth time, identifiers) to ``who``, in place."""
    role = root.find(f"{V3}recordTarget/{V3}patientRole")
    given, family = who.name.rsplit(" ", 1)
    for n, ident in enumerate(role.findall(f"{V3}id")):
        if ident.get("extension") is not None:
            # the first: the record number; the others (SSN...): a number derived from it
            ident.set("extension", who.mrn if n == 0 else f"9{who.mrn[-2:]}-{who.mrn[2:4]}-{who.mrn[4:8]}")
    patient = role.find(f"{V3}patient")
    for name in patient.findall(f"{V3}name"):
        for part in list(name):
            if part.tag in (f"{V3}given", f"{V3}family", f"{V3}prefix", f"{V3}suffix"):
                name.remove(part)
        for tag, text in (("given", given), ("family", family)):
            element = name.makeelement(f"{V3}{tag}", {})
            element.text = text
            name.append(element)
        name.text = None
        for child in name:
            child.tail = None
    gender = patient.find(f"{V3}administrativeGenderCode")
    if gender is not None:
        sex = GIVEN.get(given, "F")
        gender.attrib.pop("nullFlavor", None)
        gender.set("code", sex)
        gender.set("displayName", {"F": "Female", "M": "Male"}[sex])
        gender.set("codeSystem", "2.16.840.1.113883.5.1")
    birth = patient.find(f"{V3}birthTime")
    if birth is not None and who.dob is not None:
        birth.set("value", who.dob.strftime("%Y%m%d"))


def _render(path: Path, who: Identity) -> bytes:
    from lxml import etree

    root = _parse(path.read_bytes())
    reidentify(root, who)
    return printer.render(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _doc(key: str, path: Path, who: Identity) -> Doc:
    kind, start, end = truth_of(_parse(path.read_bytes()))
    return Doc(key=key, kind=kind, start=start, end=end, patient=who, source=str(path.relative_to(EXAMPLES)))


def packets(count: int, seed: int, ocr: CachedOcr | None = None) -> list[Packet]:
    rng = random.Random(f"{FAMILY}-{seed}")
    found = sources()
    people = identities(rng, min(count + 4, len(FAMILY_NAMES)))
    out: list[Packet] = []
    for i in range(count):
        who = people[i % len(people)]
        chosen = rng.sample(found, rng.randint(2, min(8, len(found))))
        parts = []
        for n, path in enumerate(chosen):
            doc = _doc(f"d{n + 1}", path, who)
            parts.append((doc, _render(path, who)))
        intruder = None
        if rng.random() < MIXED_RATE:
            other = rng.choice([p for p in people if family_of(p) != family_of(who)])
            path = rng.choice(found)
            doc = _doc("x1", path, other)
            intruder = (rng.randint(1, len(parts) - 1), doc, first_page(_render(path, other)))
        out.append(assemble(f"{FAMILY}-{i:02d}", FAMILY, parts, intruder, ocr))
    return out


def summary(packet: Packet, lines: int = 15) -> str:
    """Pages, truth and the first lines of each document's first page, to eyeball."""
    out = [f"== {packet.name}: {len(packet.pages)} pages, {len(packet.docs)} docs, mixed={packet.mixed}"]
    out.append("   truth: " + " ".join(str(t) for t in packet.truth))
    seen: set[str | None] = set()
    for page, key in zip(packet.pages, packet.truth):
        if key in seen or key is None:
            continue
        seen.add(key)
        doc = packet.docs[key]
        out.append(
            f"-- {key} p{page.page_number} {doc.kind.value} {doc.start}..{doc.end} {doc.patient.name} ({doc.source})"
        )
        out.extend("   | " + line for line in page.text.splitlines()[:lines])
    return "\n".join(out)


def main(module) -> None:
    import sys
    import time

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    began = time.monotonic()
    built = module.packets(count, seed, None)
    took = time.monotonic() - began
    for packet in built:
        print(summary(packet))
    pages = sum(len(p.pages) for p in built)
    docs = sum(len(p.docs) for p in built)
    mixed = sum(p.mixed for p in built)
    print(f"\n{len(built)} packets, {pages} pages, {docs} documents, {mixed} mixed, {took:.1f} s, {printer.stats()}")


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
