"""Whose record each encounter is, through Postgres: identity fields, review flags, the conflict."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest

from shared.adapters.postgres import PostgresDb
from shared.encounters import HeuristicEncounters
from shared.models import FileStatus, Manifest, PageText, ShellFile
from tests.integration.test_rls import as_role

PAGES = [
    """Maple Grove Family Medicine
410 Elm Street, Springfield, IL 62704
OFFICE VISIT
Patient: Martha Collins    DOB: 03/14/1968    MRN: 4471902
Date of service: 04/02/2019
CHIEF COMPLAINT
Follow-up of hypertension. Blood pressure controlled on lisinopril.
""",
    """Maple Grove Family Medicine
410 Elm Street, Springfield, IL 62704
OFFICE VISIT
Patient Name | Date of Birth | MRN
Andrew Perez | 11/02/1957 | 5530117
Date of service: 04/02/2019
CHIEF COMPLAINT
Joint pain after a kidney transplant, reviewed with the transplant team.
""",
]


def _discovering_file(db: PostgresDb, pages: int) -> ShellFile:
    row = ShellFile(id=uuid.uuid4(), patient_id=uuid.uuid4(), storage_key="originals/x/y/original.pdf",
                    status=FileStatus.QUEUED)
    db.create_shell_file(row)
    db.begin_preprocess(row.id)
    db.finish_preprocess(row.id, pages, needs_ocr=False)
    return row


def test_identity_fields_round_trip_and_stay_behind_row_level_security(stack_settings, stack_deps):
    # Given a file whose two pages are two patients' visit notes (a misfiled page),
    db: PostgresDb = stack_deps.db
    row = _discovering_file(db, 2)
    pages = [PageText(page_number=n, text=t, engine="native") for n, t in enumerate(PAGES, 1)]
    discovery = HeuristicEncounters().discover(pages)
    manifest = Manifest.build(row.id, 2, discovery, pages)

    # When its discovery is stored,
    assert db.complete_discovery(manifest) is True

    # Then each encounter row says whose it is and why it needs review,
    rows = db.query(
        "select ordinal, patient_name, patient_dob, patient_identifier, needs_review, review_reasons, evidence"
        " from healthcare_encounters where shell_file_id = %s order by ordinal", (row.id,)
    )
    assert [(r["patient_name"], r["patient_dob"], r["patient_identifier"]) for r in rows] == [
        ("Martha Collins", dt.date(1968, 3, 14), "4471902"),
        ("Andrew Perez", dt.date(1957, 11, 2), "5530117"),
    ]
    for r, page in zip(rows, PAGES, strict=True):
        assert r["needs_review"] is True and "conflicting_identity" in r["review_reasons"]
        span = next(e for e in r["evidence"] if e["field"] == "patient_identifier")
        assert page[span["start"] : span["end"]] == r["patient_identifier"]
    # the stored manifest carries the conflict and the review flag,
    stored = db.manifest(row.id)
    assert stored.identity_conflict and stored.needs_review
    assert [e.patient_name for e in stored.encounters] == ["Martha Collins", "Andrew Perez"]

    # and the identity columns are row-level-secured like the rest of the row.
    url = stack_settings.database_url.get_secret_value()
    with as_role(url, "authenticated", row.patient_id) as conn:
        mine = conn.execute("select patient_name from healthcare_encounters where shell_file_id = %s",
                            (row.id,)).fetchall()
        assert len(mine) == 2
    with as_role(url, "authenticated", uuid.uuid4()) as conn:
        assert conn.execute("select patient_name from healthcare_encounters where shell_file_id = %s",
                            (row.id,)).fetchall() == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # anon holds no privilege on the table at all
        with as_role(url, "anon") as conn:
            conn.execute("select patient_name from healthcare_encounters")
