"""A FHIR server takes the Bundle as it is: Medplum's transaction processor (in memory, through
tests/fhir/server.mjs) stores one set of resources however often the same file's Bundle is
posted; and the Bundle passes HL7's R4 JSON Schema and the R4 models. The validators are shown
to fail on a Bundle that breaks R4, so their passing means something."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from shared.models import EncounterType, Timing
from tests.fhir_tools import model_errors, post, require_tools, schema_errors
from tests.unit.test_fhir import PATIENT, bundle_of, encounter, make_file


@pytest.fixture(autouse=True)
def tools():
    require_tools()


def sample_bundle(row=None) -> dict:
    return bundle_of(
        encounter(pages=[(1, 2)], encounter_type=EncounterType.INPATIENT, date_start=dt.date(2024, 1, 2),
                  date_end=dt.date(2024, 1, 9), provider="Dr Jane Smith", facility="Riverside Hospital"),
        encounter(pages=[(3, 3)], date_start=None, date_end=None, needs_review=True, review_reasons=["no_date"]),
        encounter(pages=[(4, 4)], timing=Timing.PLANNED, encounter_type=EncounterType.TELEHEALTH),
        page_count=5, identity_conflict=True, row=row or make_file(5), flags={5: "ocr_low_confidence"},
    )


def counts(stored: dict) -> dict[str, int]:
    return {kind: len(found) for kind, found in stored.items() if found}


def test_two_copies_posted_give_one_set():
    bundle = sample_bundle()
    once = post(bundle)
    twice = post(bundle, copy.deepcopy(bundle))
    assert [p["ok"] for p in twice["posts"]] == [True, True], twice["posts"]
    assert counts(once["stored"]) == {"DocumentReference": 6, "Encounter": 3, "Provenance": 3}
    assert counts(twice["stored"]) == counts(once["stored"])
    # the second post updated what the first created, at the same ids
    ids = lambda result: sorted(r["id"] for found in result["stored"].values() for r in found)  # noqa: E731
    assert ids(twice) == ids(once) == sorted(e["resource"]["id"] for e in bundle["entry"])
    assert set(twice["posts"][1]["statuses"]) == {"200"}  # updated in place, nothing created
    versions = lambda result: {r["id"]: r["meta"]["versionId"] for found in result["stored"].values() for r in found}  # noqa: E731
    assert all(versions(twice)[i] != versions(once)[i] for i in versions(once))  # each one written again
    # and every reference now points at a stored resource (the patient by its identifier)
    assert all(e["subject"]["identifier"]["value"] == str(PATIENT) for e in twice["stored"]["Encounter"])
    targets = {f"{r['resourceType']}/{r['id']}" for found in twice["stored"].values() for r in found}
    for provenance in twice["stored"]["Provenance"]:
        assert {t["reference"] for t in provenance["target"]} <= targets
        assert {e["what"]["reference"] for e in provenance["entity"]} <= targets


def test_another_file_of_the_same_patient_adds_its_own():
    result = post(sample_bundle(), sample_bundle())
    assert counts(result["stored"]) == {"DocumentReference": 12, "Encounter": 6, "Provenance": 6}


def test_the_bundle_is_valid_r4_for_the_schema_the_models_and_the_server():
    bundle = sample_bundle()
    assert schema_errors(bundle) == []
    assert model_errors(bundle) == []
    result = post(bundle)
    errors = [i for bad in result["invalid"] for i in bad["issues"] if i["severity"] == "error"]
    assert errors == []


def test_the_validators_fail_on_a_bundle_that_breaks_r4():
    bundle = sample_bundle()
    found = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    found["status"] = "done"  # not an R4 Encounter.status (a required binding)
    assert any("'done' is not one of" in e for e in schema_errors(bundle))
    del found["class"]  # Encounter.class is 1..1
    assert any("'class' is a required property" in e for e in schema_errors(bundle))
    assert model_errors(bundle) and "class" in model_errors(bundle)[0]
    bundle["entry"][0]["resource"]["date"] = "03/05/2024"  # not a FHIR instant
    assert any("date" in e for e in schema_errors(bundle))
    bundle["entry"][0]["resource"]["resourceType"] = "DocumentReferences"
    assert any("not an R4 resource type" in e for e in schema_errors(bundle))
