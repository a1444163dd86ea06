"""The URLs docpipe's FHIR Bundles use for what R4 has no element for, and the codes of the
terminologies they draw on. README.md ("FHIR") documents each; a test checks it does.

Everything of docpipe's own is under ``BASE``: identifier systems (``/sid/``), extensions
(``/StructureDefinition/``) and code systems (``/CodeSystem/``). They are names, not pages
to fetch, and they never change once published: a system that changed would make the
conditional create of the Patient, and every consumer's search, miss what was stored before.
"""

from __future__ import annotations

import uuid

from shared.models import EncounterType

BASE = "https://docpipe.dev/fhir"

# --- identifier systems: where a resource came from
SHELL_FILE_SYSTEM = f"{BASE}/sid/shell-file"  # value: the shell_file_id
PAGE_SYSTEM = f"{BASE}/sid/page"  # value: {shell_file_id}/page/{n}
ENCOUNTER_SYSTEM = f"{BASE}/sid/encounter"  # value: {shell_file_id}/encounter/{n}, n from 1 in manifest order
PATIENT_ID_SYSTEM = f"{BASE}/sid/patient-id"  # value: docpipe's patient_id (shell_files.patient_id)

# --- extensions
CONFIDENCE = f"{BASE}/StructureDefinition/confidence"  # Provenance: valueDecimal 0..1
PAGE_RANGE = f"{BASE}/StructureDefinition/page-range"  # Provenance.entity: sub-extensions first, last
PAGE_COUNT = f"{BASE}/StructureDefinition/page-count"  # DocumentReference (the file): valuePositiveInt
PAGE_NUMBER = f"{BASE}/StructureDefinition/page-number"  # DocumentReference (a page image): valuePositiveInt
TEXT_SOURCE = f"{BASE}/StructureDefinition/text-source"  # DocumentReference (a page image): valueCode native|ocr
SHA256 = f"{BASE}/StructureDefinition/sha256"  # Attachment: valueString, hex

# --- code systems
REVIEW_SYSTEM = f"{BASE}/CodeSystem/review"  # meta.tag: needs-review, identity-conflict
REVIEW_REASON_SYSTEM = f"{BASE}/CodeSystem/review-reason"  # meta.tag: no_date, conflicting_identity, ...
ENCOUNTER_TYPE_SYSTEM = f"{BASE}/CodeSystem/encounter-type"  # Encounter.type: docpipe's EncounterType values

NEEDS_REVIEW = "needs-review"
IDENTITY_CONFLICT = "identity-conflict"

# The namespace of the resource ids (UUIDv5 of names such as "{shell_file_id}/encounter/1").
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, BASE)

# --- HL7 terminologies
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"

# Encounter.class (R4: 1..1, extensible to v3 ActEncounterCode). Diagnostic reports, procedures
# and referral letters filed on their own are ambulatory: done within a stay, their pages are
# the stay's. Where a type says nothing of the setting, the class says so (NullFlavor UNK)
# rather than guess.
ENCOUNTER_CLASS: dict[EncounterType, tuple[str, str, str]] = {
    EncounterType.INPATIENT: (ACT_CODE, "IMP", "inpatient encounter"),
    EncounterType.EMERGENCY: (ACT_CODE, "EMER", "emergency"),
    EncounterType.OUTPATIENT: (ACT_CODE, "AMB", "ambulatory"),
    EncounterType.TELEHEALTH: (ACT_CODE, "VR", "virtual"),
    EncounterType.LAB: (ACT_CODE, "AMB", "ambulatory"),
    EncounterType.IMAGING: (ACT_CODE, "AMB", "ambulatory"),
    EncounterType.PROCEDURE: (ACT_CODE, "AMB", "ambulatory"),
    EncounterType.REFERRAL: (ACT_CODE, "AMB", "ambulatory"),
    EncounterType.MEDICATION_LIST: (NULL_FLAVOR, "UNK", "unknown"),
    EncounterType.ADMINISTRATIVE: (NULL_FLAVOR, "UNK", "unknown"),
    EncounterType.OTHER: (NULL_FLAVOR, "UNK", "unknown"),
}

ENCOUNTER_TYPE_DISPLAY: dict[EncounterType, str] = {
    EncounterType.INPATIENT: "Inpatient stay",
    EncounterType.EMERGENCY: "Emergency visit",
    EncounterType.OUTPATIENT: "Outpatient visit",
    EncounterType.TELEHEALTH: "Telehealth visit",
    EncounterType.LAB: "Laboratory report",
    EncounterType.IMAGING: "Imaging report",
    EncounterType.PROCEDURE: "Procedure",
    EncounterType.MEDICATION_LIST: "Medication list",
    EncounterType.REFERRAL: "Referral letter",
    EncounterType.ADMINISTRATIVE: "Administrative",
    EncounterType.OTHER: "Other",
}
