"""FHIR_OUTPUT=storage: the discover stage stores the file's Bundle beside its page images, at
processed/{patient_id}/{shell_file_id}/bundle.json, written before the file is completed (so a
completed file never lacks it) and again, identically placed, by a redelivered message."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.bootstrap import Deps
from shared.models import FileStatus
from shared.settings import Settings
from shared.submit import submit
from tests.fakes import CannedOcr, InMemoryDb, InMemoryQueue, InMemoryStorage, OneEncounterPerDocument
from tests.unit.test_stages import _text_pdf, drain


def make_deps(tmp_path, fhir_output: str) -> Deps:
    return Deps(
        settings=Settings(storage_backend="local", local_storage_dir=tmp_path / "store", fhir_output=fhir_output),
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=InMemoryDb(),
        ocr=CannedOcr(),
        encounters=OneEncounterPerDocument(),
    )


def test_fhir_output_storage_stores_the_bundle_beside_the_pages(tmp_path):
    deps = make_deps(tmp_path, "storage")
    patient = uuid.uuid4()
    sfid = submit(deps, _text_pdf(tmp_path / "a.pdf", pages=2), patient)
    drain(deps)
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    key = f"processed/{patient}/{sfid}/bundle.json"
    bundle = json.loads(deps.storage.objects[key])
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Encounter") == 1 and kinds.count("DocumentReference") == 3
    # the attachments point where the file and its pages are stored
    urls = [e["resource"]["content"][0]["attachment"]["url"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "DocumentReference"]
    assert all(u.startswith("file://") for u in urls)
    assert any(u.endswith(f"processed/{patient}/{sfid}/page-0002.jpg") for u in urls)


def test_fhir_output_none_stores_no_bundle_and_builds_no_storage(tmp_path):
    deps = make_deps(tmp_path, "none")
    sfid = submit(deps, _text_pdf(tmp_path / "a.pdf", pages=1), uuid.uuid4())
    drain(deps)
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    assert not [k for k in deps.storage.objects if k.endswith("bundle.json")]


def test_the_setting_is_none_or_storage():
    assert Settings().fhir_output == "none"
    with pytest.raises(ValueError):
        Settings(fhir_output="server")
