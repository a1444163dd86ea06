"""Family "synthea": an EHR's per-encounter "Encounter Summary" export of one Synthea patient.

Synthea's sample data (``realfmt/synthea/synthea_sample_data_ccda_*.zip``: 105 patients, one C-CDA
CCD each) holds each patient's whole record. A packet takes 2-8 of one patient's encounters (from
the CCD's Encounters section; rarer kinds weighted up) and, for each, cuts a ClinicalDocument as an
EHR's encounter summary is made: the patient's own recordTarget (Synthea's identity, so a packet is
one patient by construction), the title "Encounter Summary", ``componentOf/encompassingEncounter``
with the encounter's id, code and effectiveTime, a serviceEvent over the same window, and the
sections' rows kept only when dated within the encounter (or, for problems, medications,
allergies and care plans, active during it). The document's own ``effectiveTime`` and author time
are the packet's export date, after every encounter in it: a reader taking the authored date is
wrong. Each document is rendered with HL7's stylesheet and printed by Chromium (``printer``).

Truth: the kind from the encounter's SNOMED code (``ENCOUNTER_KINDS``; Synthea's CCDs carry no
encounter class, only the code), start/end from its effectiveTime. About three packets in ten are
``mixed``: the first page of another patient's encounter summary sits between two documents.

``python -m bench.encounter_families.synthea [count] [seed]`` prints a summary of the packets.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import random
import re
import zipfile

from bench.encounter_families import printer
from bench.encounter_families.cda import V3, assemble, first_page, identity_of, main
from bench.encounter_families.common import CORPUS, CachedOcr, Doc, Identity, Packet
from shared.models import EncounterType as E

FAMILY = "synthea"
ZIP = CORPUS / "realfmt" / "synthea" / "synthea_sample_data_ccda_cb2af34.zip"
MIXED_RATE = 0.3
SNOMED = "2.16.840.1.113883.6.96"

# The encounter's SNOMED code -> kind (every code the zip holds; counts over all 105 patients).
ENCOUNTER_KINDS: dict[str, E] = {
    # emergency department (Synthea's "emergency" class; 1 h, same day)
    "50849002": E.EMERGENCY,  # Emergency room admission (116)
    "182813001": E.EMERGENCY,  # Emergency treatment (20)
    "183460006": E.EMERGENCY,  # Obstetric emergency hospital admission (29; 1 h: an ED visit)
    "183478001": E.EMERGENCY,  # Emergency hospital admission for asthma (6; 1 h)
    "183452005": E.EMERGENCY,  # Emergency hospital admission (4; 1 h)
    # admitted (Synthea's "inpatient" class; a day or more)
    "32485007": E.INPATIENT,  # Hospital admission (10)
    "305408004": E.INPATIENT,  # Admission to surgical department (12; 24 h)
    "305342007": E.INPATIENT,  # Admission to ward (3)
    "305351004": E.INPATIENT,  # Admission to intensive care unit (2)
    "397821002": E.INPATIENT,  # Patient transfer to intensive care unit (2)
    "305432006": E.INPATIENT,  # Admission to surgical transplant department (1)
    "449411000124106": E.INPATIENT,  # Admission to skilled nursing facility (16; weeks: a stay)
    "305336008": E.INPATIENT,  # Admission to hospice (6; weeks: a stay)
    "56876005": E.INPATIENT,  # Drug rehabilitation and detoxification (8; 4-10 days, residential)
    # virtual
    "448337001": E.TELEHEALTH,  # Telemedicine consultation with patient (3)
    # paperwork, no care given
    "308646001": E.ADMINISTRATIVE,  # Death Certification (5)
    # everything else is a visit: wellness, ambulatory, outpatient, urgent care, home, e.g.
    # 162673000 General examination, 185349003 Check up, 410620009 Well child, 424619006 Prenatal,
    # 698314001 Consultation for treatment, 702927004 Urgent care clinic, 371883000 Outpatient
    # procedure (a visit, not a procedure report), 33879002 Administration of vaccine,
    # 439708006 Home visit, 210098006 Domiciliary or rest home E/M: OUTPATIENT (DEFAULT_KIND)
}
DEFAULT_KIND = E.OUTPATIENT
# Synthea also uses these generic codes for admitted encounters (its inpatient class): when one
# lasts a day or more it is a stay (76 of 872 "Encounter for problem" span days, up to 26 days).
GENERIC = {"185347001", "185345009"}  # Encounter for problem, Encounter for symptom
STAY_HOURS = 24
# A visit that crosses midnight (UTC in Synthea) is one day's visit: an end date only for an
# encounter of at least this many hours that ends on a later day.
END_HOURS = 12

# Section LOINC -> which rows a summary of one encounter keeps: "within" (dated in the encounter's
# days), "active" (started by its last day and not stopped before its first), None: dropped.
SECTIONS: dict[str, str | None] = {
    "46240-8": "within",  # Encounters: this encounter (and any other the same day)
    "48765-2": "active",  # Allergies
    "10160-0": "active",  # Medications
    "11450-4": "active",  # Problems
    "18776-5": "active",  # Plan of Care
    "30954-2": "within",  # Diagnostic Results
    "47519-4": "within",  # Surgeries (procedures)
    "8716-3": "within",  # Vital Signs
    "11369-6": "within",  # Immunizations
    "47420-5": "within",  # Functional Status
    "29762-2": None,  # Social History: one smoking-status line dated at the CCD's export
}


def available() -> bool:
    return ZIP.is_file() and printer.available()


def _ts(value: str | None) -> dt.datetime | None:
    if not value or not re.match(r"\d{8}", value):
        return None
    digits = (value[:14] + "000000")[:14]
    try:
        return dt.datetime.strptime(digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _iso_day(text: str | None) -> dt.date | None:
    match = re.match(r"\s*(\d{4})-(\d{2})-(\d{2})", text or "")
    return dt.date(*map(int, match.groups())) if match else None


@functools.lru_cache(maxsize=1)
def patients() -> tuple[str, ...]:
    with zipfile.ZipFile(ZIP) as archive:
        return tuple(sorted(n for n in archive.namelist() if n.endswith(".xml")))


@functools.lru_cache(maxsize=16)
def _record(name: str):
    from lxml import etree

    with zipfile.ZipFile(ZIP) as archive:
        data = archive.read(name)
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))


def _section(root, loinc: str):
    for section in root.iter(f"{V3}section"):
        code = section.find(f"{V3}code")
        if code is not None and code.get("code") == loinc:
            return section
    return None


def encounters(name: str) -> list[dict]:
    """The patient's encounters: id, code, display, low, high (datetimes), in the CCD's order."""
    section = _section(_record(name), "46240-8")
    out = []
    for encounter in section.iter(f"{V3}encounter") if section is not None else []:
        code = encounter.find(f"{V3}code")
        time = encounter.find(f"{V3}effectiveTime")
        low = (
            _ts(time.find(f"{V3}low").get("value")) if time is not None and time.find(f"{V3}low") is not None else None
        )
        if code is None or low is None:
            continue
        high_node = time.find(f"{V3}high")
        high = _ts(high_node.get("value")) if high_node is not None else None
        ident = encounter.find(f"{V3}id")
        out.append(
            {
                "id": ident.get("root") if ident is not None else "",
                "code": code.get("code"),
                "display": code.get("displayName") or "",
                "low": low,
                "high": high or low,
                "element": encounter,
            }
        )
    return out


def kind_of(encounter: dict) -> E:
    code = encounter["code"]
    if code in ENCOUNTER_KINDS:
        return ENCOUNTER_KINDS[code]
    hours = (encounter["high"] - encounter["low"]).total_seconds() / 3600
    if code in GENERIC and hours >= STAY_HOURS:
        return E.INPATIENT
    return DEFAULT_KIND


def dates_of(encounter: dict) -> tuple[dt.date, dt.date | None]:
    low, high = encounter["low"], encounter["high"]
    hours = (high - low).total_seconds() / 3600
    end = high.date() if high.date() > low.date() and hours >= END_HOURS else None
    return low.date(), end


def _keep(rule: str, start: dt.date | None, stop: dt.date | None, first: dt.date, last: dt.date) -> bool:
    if start is None:
        return False
    if rule == "within":
        return first <= start <= last
    return start <= last and (stop is None or stop >= first)


def _entry_span(entry) -> tuple[dt.date | None, dt.date | None]:
    for time in entry.iter(f"{V3}effectiveTime"):
        low = time.find(f"{V3}low")
        high = time.find(f"{V3}high")
        start = _ts(time.get("value") or (low.get("value") if low is not None else None))
        stop = _ts(high.get("value")) if high is not None else None
        if start is not None:
            return start.date(), stop.date() if stop else None
    return None, None


def _filter_section(section, rule: str, first: dt.date, last: dt.date) -> bool:
    """Keep the narrative rows and entries in the window; False when nothing is left."""
    kept_rows = 0
    for row in section.findall(f"{V3}text/{V3}table/{V3}tbody/{V3}tr"):
        cells = row.findall(f"{V3}td")
        start = _iso_day(cells[0].text) if cells else None
        stop = _iso_day(cells[1].text) if len(cells) > 1 else None
        if _keep(rule, start, stop, first, last):
            kept_rows += 1
        else:
            row.getparent().remove(row)
    for entry in section.findall(f"{V3}entry"):
        organizer = entry.find(f"{V3}organizer")
        if organizer is not None and section.find(f"{V3}code").get("code") == "8716-3":
            # Synthea puts every vital sign ever taken in one organizer: keep this encounter's
            for component in organizer.findall(f"{V3}component"):
                start, _ = _entry_span(component)
                if not _keep("within", start, None, first, last):
                    organizer.remove(component)
            if organizer.find(f"{V3}component") is None:
                section.remove(entry)
            continue
        start, stop = _entry_span(entry)
        if not _keep(rule, start, stop, first, last):
            section.remove(entry)
    return kept_rows > 0


def _ts_text(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def summary_document(name: str, encounter: dict, exported: dt.datetime) -> bytes:
    """The ClinicalDocument of one encounter's summary, as the EHR exports it on ``exported``."""
    from lxml import etree

    root = copy.deepcopy(_record(name))
    first, last = encounter["low"].date(), encounter["high"].date()
    window = (_ts_text(encounter["low"]), _ts_text(encounter["high"]))

    root.find(f"{V3}title").text = "Encounter Summary"
    root.find(f"{V3}effectiveTime").set("value", _ts_text(exported))
    for time in root.findall(f"{V3}author/{V3}time"):
        time.set("value", _ts_text(exported))
    ident = root.find(f"{V3}id")
    if ident is not None:
        ident.set("extension", f"{encounter['id']}-summary")

    def ivl(parent) -> None:
        time = etree.SubElement(parent, f"{V3}effectiveTime")
        etree.SubElement(time, f"{V3}low", value=window[0])
        etree.SubElement(time, f"{V3}high", value=window[1])

    for event in root.findall(f"{V3}documentationOf/{V3}serviceEvent"):
        old = event.find(f"{V3}effectiveTime")
        if old is not None:
            index = list(event).index(old)
            event.remove(old)
            ivl(event)
            event.insert(index, event[-1])
    body = root.find(f"{V3}component")
    component_of = etree.Element(f"{V3}componentOf")
    encompassing = etree.SubElement(component_of, f"{V3}encompassingEncounter")
    etree.SubElement(encompassing, f"{V3}id", root=encounter["id"])
    etree.SubElement(
        encompassing, f"{V3}code", code=encounter["code"], codeSystem=SNOMED, displayName=encounter["display"]
    )
    ivl(encompassing)
    body.addprevious(component_of)

    structured = body.find(f"{V3}structuredBody")
    for component in structured.findall(f"{V3}component"):
        section = component.find(f"{V3}section")
        code = (
            section.find(f"{V3}code").get("code")
            if section is not None and section.find(f"{V3}code") is not None
            else None
        )
        rule = SECTIONS.get(code)
        if rule is None or not _filter_section(section, rule, first, last):
            structured.remove(component)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _identity(name: str) -> Identity:
    return identity_of(_record(name))


def _pick(rng: random.Random, found: list[dict], count: int) -> list[dict]:
    """``count`` distinct encounters, a rarer kind weighted up (else nearly all are visits)."""
    kinds: dict[E, int] = {}
    for encounter in found:
        kinds[kind_of(encounter)] = kinds.get(kind_of(encounter), 0) + 1
    pool = list(range(len(found)))
    chosen: list[int] = []
    while pool and len(chosen) < count:
        weights = [1.0 / kinds[kind_of(found[i])] for i in pool]
        index = rng.choices(pool, weights=weights)[0]
        pool.remove(index)
        chosen.append(index)
    return [found[i] for i in chosen]


def _doc(key: str, name: str, encounter: dict) -> Doc:
    start, end = dates_of(encounter)
    return Doc(
        key=key,
        kind=kind_of(encounter),
        start=start,
        end=end,
        patient=_identity(name),
        source=f"{name} encounter {encounter['id']} ({encounter['code']} {encounter['display']})",
    )


def packets(count: int, seed: int, ocr: CachedOcr | None = None) -> list[Packet]:
    rng = random.Random(f"{FAMILY}-{seed}")
    names = list(patients())
    order = rng.sample(names, len(names))
    out: list[Packet] = []
    for i in range(count):
        name = order[i % len(order)]
        found = encounters(name)
        chosen = _pick(rng, found, rng.randint(2, min(8, len(found))))
        chosen.sort(key=lambda e: e["low"], reverse=rng.random() < 0.5)  # the portal's date order
        latest = max(e["high"] for e in chosen)
        exported = latest + dt.timedelta(days=rng.randint(20, 700), seconds=rng.randint(0, 86399))
        parts = []
        for n, encounter in enumerate(chosen):
            doc = _doc(f"d{n + 1}", name, encounter)
            parts.append((doc, printer.render(summary_document(name, encounter, exported))))
        intruder = None
        if rng.random() < MIXED_RATE:
            other = rng.choice([n for n in names if n != name and _identity(n).name != _identity(name).name])
            encounter = rng.choice(encounters(other))
            doc = _doc("x1", other, encounter)
            other_exported = encounter["high"] + dt.timedelta(days=rng.randint(20, 700))
            page = first_page(printer.render(summary_document(other, encounter, other_exported)))
            intruder = (rng.randint(1, len(parts) - 1), doc, page)
        out.append(assemble(f"{FAMILY}-{i:02d}", FAMILY, parts, intruder, ocr))
    return out


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
