"""The realpdf, generated and scanned families of the encounter bench: whole truth, stable per
seed, re-identification that leaves no original surname, and the scanned pathology case (a
report's page 2 repeats its banner and stays the same document). Small packets only: OCR is
cached under build/encounter_families/ocr."""

from __future__ import annotations

import datetime as dt
import random
import re
import shutil

import pytest

from bench.encounter_families import common, generated, realpdf, scanned

needs_realpdf = pytest.mark.skipif(not realpdf.available(), reason="../shared/corpus/realfmt/pdfs absent")
needs_generated = pytest.mark.skipif(not generated.available(), reason="../shared/corpus/text absent")
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not on PATH")


def _consistent(packet: common.Packet) -> None:
    assert len(packet.truth) == len(packet.pages) > 0
    assert [p.page_number for p in packet.pages] == list(range(1, len(packet.pages) + 1))
    keys = {k for k in packet.truth if k is not None}
    assert keys == set(packet.docs) == set(packet.patients)
    for key, doc in packet.docs.items():
        assert doc.key == key
        assert doc.patient == packet.patients[key]
        pages = [i for i, k in enumerate(packet.truth) if k == key]
        assert pages == list(range(pages[0], pages[-1] + 1))  # a document's pages are contiguous


def _snapshot(packets: list[common.Packet]) -> list:
    return [(p.name, [(q.text, q.engine) for q in p.pages], p.truth, p.docs, p.patients, p.mixed) for p in packets]


@needs_realpdf
def test_realpdf_truth_table_covers_every_page() -> None:
    import pymupdf

    by_file: dict[str, list[int]] = {}
    for t in realpdf.TRUTH:
        by_file.setdefault(t.file, []).extend(range(t.first, t.last + 1))
    files = sorted(p.name for p in realpdf.FOLDER.glob("*.pdf"))
    assert sorted(by_file) == files
    for name, pages in by_file.items():
        with pymupdf.open(realpdf.FOLDER / name) as doc:
            assert sorted(pages) == list(range(1, len(doc) + 1)), name


@needs_realpdf
def test_realpdf_packets_are_whole_stable_and_reidentified() -> None:
    first = realpdf.packets(3, 5)
    assert _snapshot(first) == _snapshot(realpdf.packets(3, 5))
    assert all(2 <= len(p.docs) <= 5 and p.family == "realpdf" and p.pdf for p in first)
    for packet in first:
        _consistent(packet)
        for key, doc in packet.docs.items():
            truth = next(t for t in realpdf.TRUTH if t.key == key)
            text = "\n".join(p.text for p, k in zip(packet.pages, packet.truth, strict=True) if k == key)
            if doc.patient == truth.patient:  # the one document left with its own patient
                assert packet.mixed
                continue
            surname = truth.patient.name.split()[-1] if truth.patient.name[0].isalpha() else "SAMPLE"
            assert not re.search(rf"\b{re.escape(surname)}\b", text, re.IGNORECASE), (packet.name, key)
            for printed, _ in truth.dobs:
                assert printed not in text
            assert doc.patient.name.split()[-1].lower() in text.lower()
        if not packet.mixed:
            surnames = {d.patient.name.split()[-1].lower() for d in packet.docs.values()}
            assert len(surnames) == 1


@needs_generated
def test_generated_packets_are_of_family_generated() -> None:
    packets = generated.packets(1, 3, None)
    assert len(packets) == 1
    packet = packets[0]
    assert packet.family == "generated" and packet.part == "generated"
    assert isinstance(next(iter(packet.docs.values())), common.Doc)
    _consistent(packet)
    import pymupdf

    with pymupdf.open(stream=packet.pdf, filetype="pdf") as doc:
        assert len(doc) == len(packet.pages)


@needs_tesseract
def test_scanned_pathology_page_two_repeats_the_banner() -> None:
    import pymupdf

    report = scanned._report(random.Random(1), "r", common.Identity("Ingrid Szabo", dt.date(1950, 4, 2), "4455667"),
                             True)
    assert report.collected.year >= 2080
    for layout in range(3):
        with pymupdf.open(stream=scanned.print_report(report, layout, random.Random(layout)), filetype="pdf") as doc:
            one, two = doc[0].get_text(), doc[1].get_text()
        for repeated in (report.accession, "SZABO", "1950"):
            assert repeated in one.upper() and repeated in two.upper()
        assert ("Page 1 of 2" in one) == ("Page 2 of 2" in two)  # half the reports count their pages

    ocr = common.CachedOcr()
    packet = scanned.pathology("test-pathology", random.Random(7), ocr)
    _consistent(packet)
    assert packet.mixed and len({p.name for p in packet.patients.values()}) >= 2
    assert all(p.engine == "tesseract" for p in packet.pages)
    for i in range(0, len(packet.truth), 2):
        assert packet.truth[i] == packet.truth[i + 1]  # page 2 is the same report
        who = packet.patients[packet.truth[i]].name.split()[-1].upper()
        assert who in packet.pages[i + 1].text.upper()  # its banner, read again on page 2
    again = scanned.pathology("test-pathology", random.Random(7), ocr)
    assert _snapshot([again]) == _snapshot([packet])


@needs_tesseract
@needs_realpdf
def test_scanned_realpdf_keeps_the_source_truth() -> None:
    source = realpdf.packets(1, 2)[0]
    packet = scanned.rescan(source, "test-rescan", 2, common.CachedOcr())
    _consistent(packet)
    assert packet.family == "scanned" and set(packet.docs) <= set(source.docs)
    assert packet.truth == source.truth[: len(packet.truth)]
    assert all(p.engine == "tesseract" for p in packet.pages)
