"""The encounter bench's rendered families (cda, synthea): HL7's stylesheet and Chromium's print,
packets of one patient with the truth per page. Skipped where the data in ../shared, lxml,
selenium, chromium or chromedriver is missing."""

from __future__ import annotations

import importlib

import pytest

FAMILIES = ["cda", "synthea"]
_built: dict[str, list] = {}


def _family(name: str):
    try:
        module = importlib.import_module(f"bench.encounter_families.{name}")
    except ImportError as error:  # lxml or selenium not installed
        pytest.skip(f"{name}: {error}")
    if not module.available():
        pytest.skip(f"{name}: data in ../shared, lxml, selenium, chromium or chromedriver missing")
    return module


def _packets(name: str):
    if name not in _built:
        _built[name] = _family(name).packets(2, 1, None)
    return _built[name]


def _family_name(identity) -> str:
    return identity.name.split()[-1].lower()


@pytest.mark.parametrize("name", FAMILIES)
def test_truth_covers_every_page_and_every_key_is_a_doc(name):
    for packet in _packets(name):
        assert packet.family == name
        assert len(packet.truth) == len(packet.pages) > 0
        assert all(key in packet.docs for key in packet.truth)
        assert set(packet.truth) == set(packet.docs)
        assert set(packet.patients) == set(packet.docs)
        assert packet.pdf is not None
        assert [page.page_number for page in packet.pages] == list(range(1, len(packet.pages) + 1))


@pytest.mark.parametrize("name", FAMILIES)
def test_every_page_has_a_native_text_layer(name):
    for packet in _packets(name):
        for page in packet.pages:
            assert page.engine == "native", (packet.name, page.page_number)
            assert page.text.strip(), (packet.name, page.page_number)


@pytest.mark.parametrize("name", FAMILIES)
def test_each_documents_first_page_prints_its_patient(name):
    for packet in _packets(name):
        seen = set()
        for page, key in zip(packet.pages, packet.truth):
            if key in seen:
                continue
            seen.add(key)
            assert _family_name(packet.docs[key].patient) in page.text.lower(), (packet.name, key)


@pytest.mark.parametrize("name", FAMILIES)
def test_one_patient_a_packet_but_one_page_in_a_mixed_one(name):
    for packet in _packets(name):
        counts: dict[str, int] = {}
        for key in packet.truth:
            who = packet.docs[key].patient.name
            counts[who] = counts.get(who, 0) + 1
        main = max(counts, key=counts.get)
        others = sum(n for who, n in counts.items() if who != main)
        assert others == (1 if packet.mixed else 0), (packet.name, counts)
        if packet.mixed:  # between two of the packet's documents, never first or last
            odd = [n for n, key in enumerate(packet.truth) if packet.docs[key].patient.name != main]
            assert 0 < odd[0] < len(packet.truth) - 1


def test_a_mixed_packet_is_built_somewhere():
    module = _family("cda")
    assert any(p.mixed for p in module.packets(6, 1, None))


@pytest.mark.parametrize("name", FAMILIES)
def test_service_dates_are_not_the_authored_date(name):
    for packet in _packets(name):
        for doc in packet.docs.values():
            assert doc.end is None or doc.start is not None and doc.end > doc.start
            if name == "synthea":
                assert doc.start is not None


@pytest.mark.parametrize("name", FAMILIES)
def test_the_same_seed_gives_the_same_packets(name):
    again = _family(name).packets(2, 1, None)
    first = _packets(name)
    assert [p.truth for p in again] == [p.truth for p in first]
    assert [[page.text for page in p.pages] for p in again] == [[page.text for page in p.pages] for p in first]
    assert [p.docs for p in again] == [p.docs for p in first]
