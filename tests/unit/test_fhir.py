"""Encounters as a FHIR R4 transaction Bundle (shared/fhir): one test per mapping rule.

Each rule is read off the Bundle as a FHIR consumer reads it (JSON), on manifests built the way
the discover stage builds them. The README's mapping table states the same rules."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

from shared.fhir import build_bundle, codes
from shared.models import (
    Discovery,
    Encounter,
    EncounterType,
    FileStatus,
    Manifest,
    PageText,
    ShellFile,
    ShellFilePage,
    TextSource,
    Timing,
)

ROOT = Path(__file__).resolve().parents[2]
PATIENT = uuid.UUID("00000000-0000-4000-8000-00000000d0c5")
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
PATIENT_REFERENCE = {"type": "Patient", "identifier": {"system": "https://docpipe.dev/fhir/sid/patient-id",
                                                       "value": str(PATIENT)}}


def make_file(page_count: int = 3, sfid: uuid.UUID | None = None) -> ShellFile:
    sfid = sfid or uuid.uuid4()
    return ShellFile(
        id=sfid,
        patient_id=PATIENT,
        storage_key=f"originals/{PATIENT}/{sfid}/original.pdf",
        mime_type="application/pdf",
        byte_size=48213,
        sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        page_count=page_count,
        status=FileStatus.COMPLETED,
        created_at=dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.timezone.utc),
    )


def make_pages(row: ShellFile) -> list[ShellFilePage]:
    return [
        ShellFilePage(
            shell_file_id=row.id,
            page_number=n,
            storage_key=f"processed/{PATIENT}/{row.id}/page-{n:04d}.jpg",
            width=1700,
            height=2200,
            text_source=TextSource.NATIVE,
        )
        for n in range(1, row.page_count + 1)
    ]


def encounter(pages=((1, 1),), **fields) -> Encounter:
    values = {"encounter_type": EncounterType.OUTPATIENT, "date_start": dt.date(2024, 3, 5),
              "date_end": dt.date(2024, 3, 5), "confidence": 0.9, **fields}
    return Encounter(page_ranges=list(pages), **values)


def bundle_of(*encounters: Encounter, page_count: int = 3, identity_conflict: bool = False, row=None,
              flags: dict[int, str] | None = None) -> dict:
    row = row or make_file(page_count)
    texts = [PageText(page_number=n, text="x", engine="native", flag=(flags or {}).get(n))
             for n in range(1, row.page_count + 1)]
    discovery = Discovery(encounters=list(encounters), provider="heuristic", identity_conflict=identity_conflict)
    manifest = Manifest.build(row.id, row.page_count, discovery, texts)
    return build_bundle(row, make_pages(row), manifest)


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def only(bundle: dict, kind: str) -> dict:
    found = resources(bundle, kind)
    assert len(found) == 1, [r["resourceType"] for r in found]
    return found[0]


def file_document(bundle: dict) -> dict:
    (doc,) = [d for d in resources(bundle, "DocumentReference")
              if any(i["system"] == codes.SHELL_FILE_SYSTEM for i in d["identifier"])]
    return doc


def tags(resource: dict) -> set[tuple[str, str]]:
    return {(t["system"], t["code"]) for t in resource.get("meta", {}).get("tag", [])}


def full_url(bundle: dict, resource: dict) -> str:
    (entry,) = [e for e in bundle["entry"] if e["resource"] is resource]
    return entry["fullUrl"]


def extension(element: dict, url: str) -> list[dict]:
    return [e for e in element.get("extension", []) if e["url"] == url]


# --- the Bundle ------------------------------------------------------------------------


def test_a_transaction_bundle_of_the_file_its_pages_its_encounters_and_their_provenance():
    bundle = bundle_of(encounter(pages=[(1, 2)]), encounter(pages=[(3, 3)], encounter_type=EncounterType.LAB))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Patient") == 0  # the patient is named, not made: see the patient's test
    assert kinds.count("DocumentReference") == 1 + 3  # the file, and a page image each
    assert kinds.count("Encounter") == 2 and kinds.count("Provenance") == 2
    json.dumps(bundle)  # plain JSON, as it is stored and posted


# --- types to class ------------------------------------------------------------------

CLASSES = {
    EncounterType.INPATIENT: (ACT, "IMP"),
    EncounterType.EMERGENCY: (ACT, "EMER"),
    EncounterType.OUTPATIENT: (ACT, "AMB"),
    EncounterType.TELEHEALTH: (ACT, "VR"),
    EncounterType.LAB: (ACT, "AMB"),
    EncounterType.IMAGING: (ACT, "AMB"),
    EncounterType.PROCEDURE: (ACT, "AMB"),
    EncounterType.REFERRAL: (ACT, "AMB"),
    EncounterType.MEDICATION_LIST: (NULL_FLAVOR, "UNK"),
    EncounterType.ADMINISTRATIVE: (NULL_FLAVOR, "UNK"),
    EncounterType.OTHER: (NULL_FLAVOR, "UNK"),
}


def test_every_encounter_type_has_a_class():
    assert set(CLASSES) == set(EncounterType)


@pytest.mark.parametrize("kind", list(EncounterType), ids=lambda k: k.value)
def test_types_to_class_and_type(kind):
    found = only(bundle_of(encounter(encounter_type=kind)), "Encounter")
    assert (found["class"]["system"], found["class"]["code"]) == CLASSES[kind]
    assert found["class"].get("display")
    # our type stays as it is: the text, and a code of docpipe's own code system
    (concept,) = found["type"]
    assert concept["text"] == kind.value
    assert concept["coding"] == [{"system": codes.ENCOUNTER_TYPE_SYSTEM, "code": kind.value,
                                  "display": concept["coding"][0]["display"]}]


# --- timing to status ----------------------------------------------------------------


def test_timing_to_status():
    bundle = bundle_of(encounter(pages=[(1, 1)]), encounter(pages=[(2, 2)], timing=Timing.PLANNED))
    assert [e["status"] for e in resources(bundle, "Encounter")] == ["finished", "planned"]


def test_a_document_that_records_no_encounter_gives_no_encounter():
    # an insurance letter, a form: its pages stay in the file's DocumentReference, but no
    # Encounter (and so no Provenance) is made up for it
    bundle = bundle_of(encounter(pages=[(1, 1)]), encounter(pages=[(2, 3)], timing=Timing.NONE))
    assert len(resources(bundle, "Encounter")) == 1 and len(resources(bundle, "Provenance")) == 1
    assert len(file_document(bundle)["context"]["encounter"]) == 1


# --- dates to period -----------------------------------------------------------------


def test_dates_to_period():
    stay = only(bundle_of(encounter(encounter_type=EncounterType.INPATIENT, date_start=dt.date(2024, 1, 2),
                                    date_end=dt.date(2024, 1, 9))), "Encounter")
    assert stay["period"] == {"start": "2024-01-02", "end": "2024-01-09"}
    visit = only(bundle_of(encounter(date_start=dt.date(2024, 3, 5), date_end=dt.date(2024, 3, 5))), "Encounter")
    assert visit["period"] == {"start": "2024-03-05", "end": "2024-03-05"}


def test_a_start_without_an_end_is_never_given_one():
    found = only(bundle_of(encounter(date_start=dt.date(2024, 3, 5), date_end=None)), "Encounter")
    assert found["period"] == {"start": "2024-03-05"}


def test_an_encounter_without_a_date_has_no_period_and_is_tagged_for_review():
    undated = encounter(date_start=None, date_end=None, needs_review=True, review_reasons=["no_date"], confidence=0.5)
    bundle = bundle_of(undated)
    found = only(bundle, "Encounter")
    assert "period" not in found
    expected = {(codes.REVIEW_SYSTEM, "needs-review"), (codes.REVIEW_REASON_SYSTEM, "no_date")}
    assert tags(found) == expected
    assert tags(only(bundle, "Provenance")) == expected
    assert tags(file_document(bundle)) == {(codes.REVIEW_SYSTEM, "needs-review")}


def test_a_sure_encounter_carries_no_review_tag():
    bundle = bundle_of(encounter())
    assert tags(only(bundle, "Encounter")) == set() and tags(file_document(bundle)) == set()


# --- identity conflict ---------------------------------------------------------------


def test_an_identity_conflict_tags_the_document_and_every_encounter():
    bundle = bundle_of(
        encounter(pages=[(1, 1)], patient_name="A"),
        encounter(pages=[(2, 3)], patient_name="B", needs_review=True, review_reasons=["conflicting_identity"]),
        identity_conflict=True,
    )
    conflict = (codes.REVIEW_SYSTEM, "identity-conflict")
    assert conflict in tags(file_document(bundle))
    assert all(conflict in tags(e) for e in resources(bundle, "Encounter"))
    assert all(conflict in tags(p) for p in resources(bundle, "Provenance"))
    second = resources(bundle, "Encounter")[1]
    assert (codes.REVIEW_REASON_SYSTEM, "conflicting_identity") in tags(second)
    # every encounter stays the uploading patient's: the file was filed under that id, and the
    # tag says it shows more than one patient; no name read from a page becomes a Patient
    assert resources(bundle, "Patient") == []
    assert all(e["subject"] == PATIENT_REFERENCE for e in resources(bundle, "Encounter"))
    assert '"A"' not in json.dumps(bundle) and '"B"' not in json.dumps(bundle)


# --- the patient ---------------------------------------------------------------------


def test_the_patient_is_named_by_docpipes_patient_id_on_every_subject():
    # A logical reference: no Patient is created (none duplicated in a store that knows the
    # person under its own ids, no conditional create for the transaction to serialise)
    bundle = bundle_of(encounter(pages=[(1, 3)]))
    subjects = [e["resource"]["subject"] for e in bundle["entry"] if "subject" in e["resource"]]
    assert len(subjects) == 1 + 3 + 1 and all(s == PATIENT_REFERENCE for s in subjects)
    assert resources(bundle, "Patient") == []


# --- provider and facility -----------------------------------------------------------


def test_provider_and_facility_are_display_references_not_resources():
    found = only(bundle_of(encounter(provider="Dr Jane Smith", facility="Riverside Clinic")), "Encounter")
    assert found["serviceProvider"] == {"type": "Organization", "display": "Riverside Clinic"}
    (participant,) = found["participant"]
    assert participant["individual"] == {"type": "Practitioner", "display": "Dr Jane Smith"}
    assert participant["type"][0]["coding"][0]["code"] == "PPRF"
    bundle = bundle_of(encounter(provider="Dr Jane Smith", facility="Riverside Clinic"))
    assert resources(bundle, "Organization") == [] and resources(bundle, "Practitioner") == []


def test_no_provider_or_facility_no_participant_or_service_provider():
    found = only(bundle_of(encounter(provider=None, facility=None)), "Encounter")
    assert "participant" not in found and "serviceProvider" not in found


# --- the evidence: Provenance --------------------------------------------------------


def test_a_provenance_per_encounter_names_the_document_its_pages_and_our_confidence():
    bundle = bundle_of(encounter(pages=[(1, 1), (3, 3)], confidence=0.72), page_count=3)
    found, provenance = only(bundle, "Encounter"), only(bundle, "Provenance")
    assert provenance["target"] == [{"reference": full_url(bundle, found)}]
    document = file_document(bundle)
    source, *pages = provenance["entity"]
    assert source["role"] == "source" and source["what"] == {"reference": full_url(bundle, document)}
    ranges = [{e["url"]: e["valuePositiveInt"] for e in r["extension"]} for r in extension(source, codes.PAGE_RANGE)]
    assert ranges == [{"first": 1, "last": 1}, {"first": 3, "last": 3}]
    page_docs = {extension(p, codes.PAGE_NUMBER)[0]["valuePositiveInt"]: full_url(bundle, p)
                 for p in resources(bundle, "DocumentReference") if p is not document}
    assert [p["what"]["reference"] for p in pages] == [page_docs[1], page_docs[3]]
    assert extension(provenance, codes.CONFIDENCE) == [{"url": codes.CONFIDENCE, "valueDecimal": 0.72}]
    assert provenance["recorded"]
    assert provenance["agent"][0]["who"]["display"].startswith("docpipe")


def test_the_files_document_reference():
    row = make_file(3)
    bundle = bundle_of(encounter(), row=row)
    document = file_document(bundle)
    assert document["status"] == "current"
    assert document["identifier"] == [{"system": codes.SHELL_FILE_SYSTEM, "value": str(row.id)}]
    assert document["date"].startswith("2026-12-01T09:30:00")
    (content,) = document["content"]
    attachment = content["attachment"]
    assert attachment["contentType"] == "application/pdf" and attachment["size"] == 48213
    assert attachment["url"].endswith(row.storage_key)
    assert extension(attachment, codes.SHA256) == [{"url": codes.SHA256, "valueString": row.sha256}]
    assert "hash" not in attachment  # R4 defines Attachment.hash as SHA-1: ours is SHA-256
    assert extension(document, codes.PAGE_COUNT) == [{"url": codes.PAGE_COUNT, "valuePositiveInt": 3}]
    assert document["context"]["encounter"] == [{"reference": full_url(bundle, only(bundle, "Encounter"))}]


def test_a_page_image_is_a_document_reference_transforming_the_file():
    row = make_file(2)
    bundle = bundle_of(encounter(pages=[(1, 2)]), row=row, page_count=2, flags={2: "ocr_empty"})
    document = file_document(bundle)
    pages = [d for d in resources(bundle, "DocumentReference") if d is not document]
    assert [extension(p, codes.PAGE_NUMBER)[0]["valuePositiveInt"] for p in pages] == [1, 2]
    for page in pages:
        assert page["relatesTo"] == [{"code": "transforms", "target": {"reference": full_url(bundle, document)}}]
        assert page["content"][0]["attachment"]["contentType"] == "image/jpeg"
    assert pages[1]["content"][0]["attachment"]["url"].endswith(f"processed/{PATIENT}/{row.id}/page-0002.jpg")
    # a page OCR read empty is for review, where a consumer looks
    assert tags(pages[1]) == {(codes.REVIEW_SYSTEM, "needs-review"), (codes.REVIEW_REASON_SYSTEM, "ocr_empty")}
    assert tags(pages[0]) == set()


# --- idempotent: stable ids and PUTs -------------------------------------------------


def test_ids_derive_from_the_file_so_the_same_file_gives_the_same_requests():
    row = make_file(3)
    first = bundle_of(encounter(pages=[(1, 2)]), encounter(pages=[(3, 3)]), row=row)
    again = bundle_of(encounter(pages=[(1, 2)]), encounter(pages=[(3, 3)]), row=row)
    other = bundle_of(encounter(pages=[(1, 2)]), encounter(pages=[(3, 3)]))
    requests = [e["request"] for e in first["entry"]]
    assert requests == [e["request"] for e in again["entry"]]
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in again["entry"]]
    # every resource is PUT at its own id; nothing is a POST
    for entry in first["entry"]:
        resource, request = entry["resource"], entry["request"]
        assert request == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
    ids = {e["resource"]["id"] for e in first["entry"]}
    other_ids = {e["resource"]["id"] for e in other["entry"]}
    assert len(ids) == len(first["entry"]) and not ids & other_ids
    # and the patient is the same for every file of that patient
    assert {json.dumps(e["resource"].get("subject"), sort_keys=True) for e in first["entry"] + other["entry"]} - {"null"} == {
        json.dumps(PATIENT_REFERENCE, sort_keys=True)}


def test_identifiers_say_where_each_resource_came_from():
    row = make_file(2)
    bundle = bundle_of(encounter(pages=[(1, 2)]), row=row, page_count=2)
    (found,) = resources(bundle, "Encounter")
    assert found["identifier"] == [{"system": codes.ENCOUNTER_SYSTEM, "value": f"{row.id}/encounter/1"}]
    pages = [d for d in resources(bundle, "DocumentReference") if d is not file_document(bundle)]
    assert [p["identifier"][0]["value"] for p in pages] == [f"{row.id}/page/1", f"{row.id}/page/2"]


# --- documented ----------------------------------------------------------------------


def test_every_extension_code_system_and_identifier_system_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    urls = [value for name, value in vars(codes).items() if name.isupper() and isinstance(value, str)
            and value.startswith(codes.BASE)]
    assert len(urls) >= 10
    assert [u for u in urls if u not in readme] == []
