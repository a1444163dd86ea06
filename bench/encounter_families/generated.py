"""Our own generator (``bench/_clinical.py``) as one family among the others: HL7 C-CDA examples
and ACI-Bench notes printed in varied EHR layouts, some scanned, 2-8 to a packet, about 0.3
mixed. Half the packets come from its development part, half from its validation part.

``_clinical`` is used unchanged: its ``plan`` and ``build`` make the packet (its scanned
documents read through ``common.CachedOcr``, which has the ocr callable's signature), its
``print_doc`` prints each document again from the plan's own seed (the same bytes ``build``
read), so ``Packet.pdf`` is the packet as one file for the scanned family.
"""

from __future__ import annotations

import random

from bench import _clinical
from bench.encounter_families.common import CachedOcr, Doc, Identity, Packet

FAMILY = "generated"


def available() -> bool:
    return _clinical.available()


def _identity(who: _clinical.Identity) -> Identity:
    return Identity(who.name, who.dob, who.mrn)


def _pdf(plan: dict) -> bytes:
    """The plan's documents printed as ``_clinical.build`` prints them, in one file (a blank
    page where it puts one)."""
    import pymupdf

    out = pymupdf.open()
    for item in plan["items"]:
        data, _ = _clinical.print_doc(item["doc"], item["patient"], item["layout"], random.Random(item["seed"]),
                                      width=item.get("width"))
        with pymupdf.open(stream=data, filetype="pdf") as part:
            out.insert_pdf(part)
        if item["blank_after"]:
            out.new_page(width=_clinical.A4[0], height=_clinical.A4[1])
    data = out.tobytes(garbage=3, deflate=True, no_new_id=True)
    out.close()
    return data


def convert(packet: _clinical.Packet, pdf: bytes | None) -> Packet:
    docs = {key: Doc(key, d.kind, d.start, d.end, _identity(packet.patients[key]), source=f"{d.part} {d.key}")
            for key, d in packet.docs.items()}
    return Packet(name=f"generated-{packet.name}", family=FAMILY, pages=packet.pages, truth=packet.truth, docs=docs,
                  patients={k: _identity(v) for k, v in packet.patients.items()}, mixed=packet.mixed,
                  scanned=list(packet.scanned), pdf=pdf)


def packets(count: int, seed: int, ocr: CachedOcr | None = None) -> list[Packet]:
    if not available() or count <= 0:
        return []
    docs = _clinical.sources()
    dev = (count + 1) // 2
    plans = _clinical.plan(docs, "dev", dev, seed) + _clinical.plan(docs, "val", count - dev, seed)
    # Without an OCR engine its scanned documents are read from their text layer (as _clinical does).
    return [convert(_clinical.build(p, ocr), _pdf(p)) for p in plans]
