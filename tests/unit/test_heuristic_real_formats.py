"""Pass 0.5 on pages as real systems render them (issue 22): C-CDA documents printed through
HL7's CDA stylesheet as a patient portal downloads them, and image-only two-page reports that
repeat their banner. The page texts are written here in the shape those renderers give (the
stylesheet's banner, "Legal:" name, "Patient-ID:", "Date/Time:" of the encounter and its
"Type:"), with invented patients."""

from __future__ import annotations

import datetime as dt
import uuid

from shared.encounters import HeuristicEncounters
from shared.encounters.cues import section_headings
from shared.encounters.text import lines_of
from shared.models import Discovery, EncounterType, Manifest, PageText

ET = EncounterType


def _discover(*texts: str, engine: str = "native") -> Discovery:
    pages = [PageText(page_number=i, text=t, engine=engine, confidence=None if engine == "native" else 0.85)
             for i, t in enumerate(texts, 1)]
    discovery = HeuristicEncounters().discover(pages)
    Manifest.build(uuid.uuid4(), len(pages), discovery)
    return discovery


def _summary(title: str, authored: str, encounter: str, when: str, body: str) -> str:
    """A first page as CDA.xsl prints an encounter document: the banner, the title with the
    document's (authored) time, the Patient and Encounter blocks, then the sections."""
    return f""" Date of Birth: March 3, 1961 (64yr) Gender: Female
Patient-ID:  77-4410-9 (MRN)
{title} ({authored}, 09:12AM -0400)
Patient
Legal: Nora QUILLFEATHER
Encounter
ID: {encounter} (Encounter ID), Type: {{type}}, Date/Time: {when}
Author
Dr. Alma Reyes, Authored On: {authored}
{body}"""


VISIT_BODY = """ALLERGIES
Substance
Reaction
Penicillin
Rash
PROBLEMS
Essential hypertension (onset 2019)
MEDICATIONS
Medication
Directions
Lisinopril 10 MG Oral Tablet
1 daily
VITAL SIGNS
Blood pressure 138/86 mm[Hg]
"""
LATER_PAGE = """Body mass index 27.4 kg/m2
Heart rate 72 /min
RESULTS
Result Type
Result Value
Hemoglobin A1c
5.9 %
PLAN OF TREATMENT
Continue lisinopril. Recheck blood pressure in three months. Low sodium diet reviewed with the patient.
"""

VISIT = _summary("Encounter Summary", "August 12, 2025", "E-88121", "from August 4, 2025 10:15AM EDT",
                 VISIT_BODY).replace("{type}", "Office Visit")
STAY = _summary("Encounter Summary", "August 12, 2025", "E-90310", "from June 2, 2025 to June 6, 2025",
                VISIT_BODY).replace("{type}", "Inpatient encounter")
SAME_DAY = _summary("Encounter Summary", "August 12, 2025", "E-88140", "from August 4, 2025 2:40PM EDT",
                    VISIT_BODY).replace("{type}", "Office Visit")
PHONE = _summary("Telephone Encounter Summary", "August 12, 2025", "E-91004", "July 16, 2025",
                 VISIT_BODY).replace("{type}", "Telephone encounter")


def test_a_portal_export_of_encounter_summaries_is_one_encounter_per_document():
    # Every document opens with the same banner and a title of the same form; no page number,
    # no known title, no "Name:" label. The page that opens as the first page did, after a
    # page that did not, starts the next document.
    discovery = _discover(VISIT, LATER_PAGE, STAY, LATER_PAGE, PHONE)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)], [(5, 5)]]


def test_two_encounter_summaries_of_one_day_are_two_encounters():
    # A morning visit and an afternoon one: no date falls outside the other's, so only the
    # page's structure says where the second document begins.
    discovery = _discover(VISIT, LATER_PAGE, SAME_DAY, LATER_PAGE)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)]]


def test_the_stylesheets_patient_block_names_the_patient_and_its_identifier():
    discovery = _discover(VISIT, LATER_PAGE)
    (encounter,) = discovery.encounters
    assert encounter.patient_name == "Nora QUILLFEATHER"
    assert encounter.patient_dob == dt.date(1961, 3, 3)
    assert encounter.patient_identifier == "77-4410-9"


def test_the_encounters_date_time_is_its_date_not_the_authored_date_in_the_title():
    discovery = _discover(VISIT, LATER_PAGE, STAY, LATER_PAGE)
    visit, stay = discovery.encounters
    assert (visit.date_start, visit.date_end) == (dt.date(2025, 8, 4), dt.date(2025, 8, 4))
    assert (stay.date_start, stay.date_end) == (dt.date(2025, 6, 2), dt.date(2025, 6, 6))


def test_the_encounter_type_the_stylesheet_prints_is_the_type():
    discovery = _discover(VISIT, LATER_PAGE, STAY, LATER_PAGE, PHONE)
    assert [e.encounter_type for e in discovery.encounters] == [ET.OUTPATIENT, ET.INPATIENT, ET.TELEHEALTH]


def test_a_time_zone_on_a_line_of_its_own_is_no_section_heading():
    lines = lines_of("Date/Time: July 16, 2025, 10:00\nAM EDT\nMEDICATIONS\nLisinopril\n")
    assert section_headings(lines) == ["MEDICATIONS"]


PATHOLOGY = """NORTHSIDE PATHOLOGY SERVICES
SURGICAL PATHOLOGY REPORT
Patient: {name}    DOB: {dob}
Accession: {acc}    Collected: {collected}
Physician: Dr. H. Varga
{body}
"""


def test_the_second_page_of_a_report_repeating_its_banner_and_heading_continues_it():
    # Image-only pathology reports of two patients, each two pages; page 2 repeats the banner
    # and the report's heading as page 1 printed them, with no page count.
    one = dict(name="Walter Brandt", dob="11/04/1950", acc="SP25-01873", collected="02/19/2025")
    two = dict(name="Irene Castillo", dob="06/23/1972", acc="SP25-02210", collected="03/02/2025")
    first = "DIAGNOSIS\nA. Colon, sigmoid, biopsy: tubular adenoma, no high-grade dysplasia.\nGROSS DESCRIPTION\n" \
            "Received in formalin, three fragments of tan soft tissue measuring 0.3 cm each."
    second = "MICROSCOPIC DESCRIPTION\nSections show colonic mucosa with crowded tubular glands.\n" \
             "Electronically signed by Dr. H. Varga, pathologist"
    pages = [PATHOLOGY.format(body=first, **one), PATHOLOGY.format(body=second, **one),
             PATHOLOGY.format(body=first, **two), PATHOLOGY.format(body=second, **two)]
    discovery = _discover(*pages, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)]]
    assert discovery.identity_conflict
    assert [e.date_start for e in discovery.encounters] == [dt.date(2025, 2, 19), dt.date(2025, 3, 2)]
