"""Pass 0.5 on pages as real systems render them (issue 22): C-CDA documents printed through
HL7's CDA stylesheet as a patient portal downloads them, and image-only two-page reports that
repeat their banner. The page texts are written here in the shape those renderers give (the
stylesheet's banner, "Legal:" name, "Patient-ID:", "Date/Time:" of the encounter and its
"Type:"), with invented patients."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from shared.encounters import HeuristicEncounters, boundaries, grouping
from shared.encounters.boundaries import BoundaryModel
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


def _read(text: str, number: int = 1, engine: str = "native") -> grouping.Page:
    """One page as Pass 0.5 reads it (an OCR'd one at confidence 0.9)."""
    page = PageText(page_number=number, text=text, engine=engine, confidence=None if engine == "native" else 0.9)
    return grouping.read_page(page, None)


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


# --- failure classes found on the development families (each fails on 7150b64) -----------------

CCD = """Summary of Patient Chart (October 15, 2014, 10:30:26AM -0500)
Patient
Legal: Nora QUILLFEATHER
Date of Birth: March 3, 1961 (53yr) Gender: Female
Patient-ID: 77-4410-9 (MRN)
Documentation Of
Care provision, Date/Time: from October 1, 2014 to October 15, 2014, Performer: Dr. Alma Reyes
Author
Dr. Alma Reyes, Authored On: October 15, 2014
ALLERGIES
Penicillin
"""
OPERATIVE = """Community Health and Hospitals: Operative Note (September 16, 2012, 7:11PM -0400)
Patient
Legal: Nora QUILLFEATHER
Date of Birth: March 3, 1961 (51yr) Gender: Female
Patient-ID: 77-4410-9 (MRN)
Documentation Of
Care provision, Colonoscopy, Date/Time: from September 9, 2012, 7:11PM -0400 to September 16, 2012
Author
Dr. Alma Reyes, Authored On: September 16, 2012
PROCEDURE DESCRIPTION
Colonoscopy to the cecum; two polyps removed.
"""
REFERRAL = """Referral Note (September 21, 2013, 05:00AM -0800)
Patient
Legal: Nora QUILLFEATHER
Date of Birth: March 3, 1961 (52yr) Gender: Female
REASON FOR REFERRAL
Weight management.
"""


def test_a_summary_of_care_is_other_and_takes_no_date_from_its_span_of_care():  # cda
    (ccd,) = _discover(CCD).encounters
    assert ccd.encounter_type == ET.OTHER
    assert (ccd.date_start, ccd.date_end) == (None, None)


def test_a_service_event_dates_a_document_that_prints_no_encounter():  # cda
    (note,) = _discover(OPERATIVE).encounters
    assert note.encounter_type == ET.PROCEDURE
    assert (note.date_start, note.date_end) == (dt.date(2012, 9, 9), dt.date(2012, 9, 16))


def test_the_time_beside_a_title_is_when_the_document_was_made():  # cda
    (letter,) = _discover(REFERRAL).encounters
    assert letter.encounter_type == ET.REFERRAL
    assert letter.date_start is None


def test_a_section_heading_that_names_a_kind_is_no_title():  # cda
    body = "Procedures\nProcedure\nDate\nColonic polypectomy\n1998\nREASON FOR REFERRAL\n" \
           "Patient referral for consultation for full care. Referral Nurse: Nurse Florence, RN\n"
    discovery = _discover(VISIT, body)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


def test_the_stylesheets_closing_patient_details_are_no_new_document():  # cda
    details = """Patient
Legal: Nora QUILLFEATHER, search: Nora QUILLFEATHER
Contact Details
Home Primary: 12 Elm Street
Date of Birth
March 3, 1961 (64yr)
Patient-IDs
77-4410-9 (MRN)
"""
    discovery = _discover(VISIT, LATER_PAGE, details, STAY, LATER_PAGE, details)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 6)]]


def _jsl(name: str, dob: str, opening: str, body: str) -> str:
    return f"Healthcare\nRecovery\nTrauma\nCenter\n{name} {dob}\nSierra Valley Medical Institute INC\n{opening}\n{body}\n"


def test_a_column_read_list_of_past_visits_dates_nothing():  # realpdf
    page = _jsl("Judith Petrov", "23/12/1959", "Doctor Notes", """Subjective Observations: Patient reports stable asthma control.
Assessment: Asthma well controlled on the current regimen.
Recommendations: Continue the current inhalers; seasonal flu vaccine recommended.""") + """Past Hospital Visits
Date
Reason
20/10/2024
Routine Asthma Check-up
01/04/2024
Annual Physical Exam
18/02/2024
Bronchitis
"""
    (visit,) = _discover(page).encounters
    assert visit.date_start is None


def test_a_running_header_name_and_birth_date_are_the_banner_not_the_visit_date():  # realpdf
    page = _jsl("Judith Ann Petrov", "23/12/1959", "Patient Summary",
                "Judith Ann Petrov, born on 23/12/1959, is a 65-year-old woman with asthma.")
    (visit,) = _discover(page).encounters
    assert visit.date_start is None
    assert visit.patient_name == "Judith Ann Petrov"
    assert visit.patient_dob == dt.date(1959, 12, 23)


def test_documents_under_one_running_header_start_where_the_first_pages_opening_comes_again():  # realpdf
    def record(age: str) -> list[str]:
        return [_jsl("Judith Petrov", "23/12/1959", "Patient Summary",
                     f"Judith Petrov, born on 23/12/1959, is a {age}-year-old woman with asthma."),
                _jsl("Judith Petrov", "23/12/1959", "Doctor Notes", f"Reviewed inhaler technique at {age}."),
                _jsl("Judith Petrov", "23/12/1959", "Medication Test", f"Spirometry done, age {age}.")]
    discovery = _discover(*record("64"), *record("65"))
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 6)]]


def test_an_encounter_type_named_with_its_snomed_tag_reads_as_the_visit_it_is():  # synthea
    general = VISIT.replace("Type: Office Visit", "Type: General examination of patient (procedure)")
    child = VISIT.replace("Type: Office Visit", "Type: Well child visit (procedure)")
    discovery = _discover(general, LATER_PAGE)
    assert discovery.encounters[0].encounter_type == ET.OUTPATIENT
    assert _discover(child).encounters[0].encounter_type == ET.OUTPATIENT


def test_a_visit_past_midnight_ends_on_its_first_day():  # synthea
    late = VISIT.replace("from August 4, 2025 10:15AM EDT",
                         "from June 8, 2022, 11:57:43PM to June 9, 2022, 00:28:29AM")
    (visit,) = _discover(late).encounters
    assert (visit.date_start, visit.date_end) == (dt.date(2022, 6, 8), dt.date(2022, 6, 8))


def test_an_identifier_cut_short_where_its_line_wrapped_is_the_same_patient():  # scanned
    whole = VISIT.replace("77-4410-9 (MRN)", "c6335846-f3bf-8b5a-dbc8-3903f2cf2826 (MRN)")
    cut = STAY.replace("77-4410-9 (MRN)", "c6335846-f3bf-8b5")
    discovery = _discover(whole, LATER_PAGE, cut, LATER_PAGE)
    assert not discovery.identity_conflict


# --- failure classes found on development packets of issue 22's second round (each fails on
# 3a42846) --------------------------------------------------------------------------------------


def _encounter_summary(exported: str, encounter: str, kind: str, when: str, body: str, ocr: bool = False) -> str:
    """A one-page Synthea encounter document as CDA.xsl prints it: the title with the export's
    time, the patient block, then the encounter's own block. ``ocr``: as Tesseract reads the
    print, the patient block's lines run together and a stray mark before a label."""
    patient = ("Patient Mara472 OSTROWSKI18 Date of Birth: May 2, 1988, 3:14:07PM (36yr) Gender: F\n"
               ": Patient-ID: 4f1c2a90-77de-4b1e-9c0a-5d2e8f6b1a33 (2.16.840.1.113883.19.5)\n") if ocr else (
               "Patient\nMara472 OSTROWSKI18\nDate of Birth: May 2, 1988, 3:14:07PM (36yr) Gender: F\n"
               "Patient-ID: 4f1c2a90-77de-4b1e-9c0a-5d2e8f6b1a33 (2.16.840.1.113883.19.5)\n")
    return f"""Encounter Summary ({exported})
{patient}Encounter
ID: {encounter}, Type: {kind}, Date/Time:
{when}
Documentation Of
Care provision, Date/Time: {when}
Author
https://github.com/synthetichealth/synthea, Organization: MILLBROOK FAMILY PRACTICE, Authored On: {exported}
{body}"""


ONE_EXPORT = "March 9, 2025, 8:04:29PM"
SUMMARIES = [
    ("b61f0e2c-1d4a-4c55-8e0b-3a7f9d2c6e11", "Encounter for check up (procedure)",
     "June 3, 2019 09:12:41AM - 09:27:41AM", "Problems\nStart\nStop\nDescription\nPrediabetes (finding)"),
    ("0c9d7a51-6b2e-4f0a-b3c1-9e4d2a8f7c60", "Encounter for symptom (procedure)",
     "January 14, 2021 10:40:02AM - 11:05:02AM", "Medications\nStart\nStop\nAmoxicillin 500 MG Oral Capsule"),
    ("7e2b4c19-3f8d-4a6e-a0d5-1c9b8e7f2a04", "General examination of patient (procedure)",
     "June 7, 2022 09:12:41AM - 09:42:41AM", "Immunizations\nDate\nDescription\nInfluenza, seasonal, injectable"),
]


def test_one_page_summaries_of_one_export_are_a_document_each():  # synthea
    # One export: each document opens with the same title, time and patient block, line for line;
    # only the encounter's own block (its ID, type and date) says a new document starts.
    pages = [_encounter_summary(ONE_EXPORT, *summary) for summary in SUMMARIES]
    discovery = _discover(*pages)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)], [(3, 3)]]
    assert [e.date_start for e in discovery.encounters] == [dt.date(2019, 6, 3), dt.date(2021, 1, 14),
                                                            dt.date(2022, 6, 7)]


def test_a_form_filled_again_cuts_whatever_a_model_makes_of_the_repeated_head():  # synthea
    # A boundary model trained on families whose next pages repeat their head (running banners)
    # reads a head repeated line for line as a continuation; the form's own values still cut.
    wary = BoundaryModel({"head_as_last": -3.0, "head_shape_as_last": -2.0, "head_repeated": -2.0}, bias=-1.0)
    pages = [PageText(page_number=i, text=_encounter_summary(ONE_EXPORT, *s), engine="native")
             for i, s in enumerate(SUMMARIES, 1)]
    discovery = HeuristicEncounters(model=wary).discover(pages)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)], [(3, 3)]]


def test_a_form_filled_again_is_another_document_when_ocr_runs_its_fields_together():  # scanned
    # The same documents printed and scanned: OCR runs the patient block's lines into one and
    # leaves a mark before "Patient-ID:"; the labelled fields are still the same form again.
    pages = [_encounter_summary(ONE_EXPORT, *summary, ocr=True) for summary in SUMMARIES]
    discovery = _discover(*pages, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)], [(3, 3)]]


def test_the_same_field_read_twice_by_ocr_is_no_new_form():  # scanned
    # A report's next page repeats its labelled banner; OCR reads a value a little differently.
    banner = ("Patient: Walter Brandt   DOB: 11/04/1950\nAccession: {acc}   Collected: 02/19/2025\n"
              "Physician: Dr. H. Varga\nClinic: Northside Pathology Services\n")
    first = banner.format(acc="SP25-01873") + "DIAGNOSIS\nA. Colon, sigmoid, biopsy: tubular adenoma.\n"
    second = banner.format(acc="SP25-0l873") + "MICROSCOPIC DESCRIPTION\nSections show colonic mucosa.\n"
    discovery = _discover(first, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


FOOT = "Lakeshore Family Medicine Group (555) 201-7788 12/03/2025"


def test_a_running_foot_ocr_read_higher_up_is_no_new_document():  # scanned
    # Every page of the record ends with the practice's foot; on the scan of page 3, OCR read the
    # foot's words from a two-column block higher up and split the rest over three lines.
    def page(body: str, foot: str = FOOT) -> str:
        return _jsl("Judith Petrov", "23/12/1959", "Doctor Notes", body) + f"Medication list reviewed.\n{foot}\n"

    third = _jsl("Judith Petrov", "23/12/1959 Lakeshore Family Medicine Group", "Medication Test",
                 "HbA1c pending") + "Lipid panel\n(555) 201-7788\n12/03/2025\n"
    discovery = _discover(page("Subjective: stable asthma."), page("Assessment: well controlled."), third,
                          engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)]]


def test_a_birth_date_the_file_prints_is_no_visit_date_where_ocr_garbled_a_banner():  # scanned
    # The second document's banner reads "Judith Petrov © 23/12/1959": OCR's mark hides that it
    # is the banner, but the first document said that date is her birth date.
    first = _jsl("Judith Petrov", "23/12/1959", "Patient Summary",
                 "Judith Petrov, born on 23/12/1959, is a 65-year-old woman with asthma.")
    second = "Page 1 of 1\nJudith Petrov © 23/12/1959\nRecovery Center\nDoctor Notes\nSubjective: stable asthma.\n"
    discovery = _discover(first, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)]]
    assert [e.date_start for e in discovery.encounters] == [None, None]


def test_a_summary_whose_title_time_ends_in_an_ocr_mark_is_still_a_summary():  # scanned
    ccd = CCD.replace("10:30:26AM -0500)", "10:30:26AM -0500) ©")
    (summary,) = _discover(ccd, engine="tesseract").encounters
    assert summary.encounter_type == ET.OTHER
    assert summary.date_start is None


def _lab_page(order: list[str], body: str) -> str:
    head = {"lab": "Northgate Reference Laboratory", "site": "Westbrook Patient Service Center",
            "phone": "Phone: 555-201-4410", "street": "1200 Commerce Parkway", "town": "Westbrook, ME 04092"}
    return "Meadowlands Lab Services\n" + "\n".join(head[k] for k in order) + \
        "\nPatient Name\nPETROV, JUDITH\n" + body + "\n©2024 Northgate Reference Laboratory\n"


def test_a_running_head_printed_in_another_order_still_stops_where_the_next_record_begins():  # realpdf
    # A lab report's pages repeat its two-column head, its blocks in the order they fit; the
    # next record's page prints none of it.
    first = _lab_page(["lab", "phone", "street", "town", "site"], "Glucose 98 mg/dL\nSodium 140 mmol/L")
    second = _lab_page(["street", "phone", "lab", "town", "site"], "Potassium 4.1 mmol/L\nChloride 101 mmol/L")
    record = _jsl("Judith Petrov", "23/12/1959", "Patient Summary",
                  "Judith Petrov, born on 23/12/1959, is a 65-year-old woman with asthma.")
    discovery = _discover(first, second, record)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 3)]]
    pages = [_read(t, i) for i, t in enumerate((first, second, record), 1)]
    features = dict(zip(boundaries.FEATURES, boundaries.features(grouping.Group(pages[:2]), pages[2]), strict=True))
    assert features["running_stopped"] == 1.0  # whatever else the page says


def test_each_page_reads_its_dates_as_it_writes_them_in_a_file_of_both_orders():  # realpdf
    # A US discharge summary (03/26/2009) packed with a record that writes day first (22/04/2025):
    # the file shows both orders; each page shows its own.
    summary = ("Patient ID: 12345\nCommunity Health Hospital\nDischarge Summary\nPatient Name: Petrov, Judith\n"
               "Date of Admission: 03/19/2009\nDate of Discharge: 03/26/2009\nHOSPITAL COURSE\nStroke, treated.\n")
    course = "DISCHARGE MEDICATIONS\n1. Aspirin 81 mg daily.\nFOLLOW UP\nClinic in two weeks.\n"
    record = ("Healthcare\nRecovery\nTrauma\nCenter\nJudith Petrov\n04/08/1959\nSierra Valley Medical Institute INC\n"
              "Patient Summary\nJudith Petrov, born on 04/08/1959, is a 65-year-old woman with asthma.\n"
              "Sierra Valley Medical Institute INC (402) 738-5912 22/04/2025\n")
    discovery = _discover(summary, course, record)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 3)]]
    assert discovery.encounters[0].date_start == dt.date(2009, 3, 19)
    assert discovery.encounters[1].patient_dob == dt.date(1959, 8, 4)


def test_a_consult_note_is_an_outpatient_documents_title():  # generated (clinical validation part)
    # "Consult note" is the C-CDA document type's own name (LOINC 11488-4); after a care plan of
    # the same letterhead, it is the next document's title.
    letterhead = "Good Health HIE\nHealth Information Management\n1002 Healthcare Drive, Portland, OR 97266\n" \
                 "Tel (555) 555-1002\nFax (555) 555-3683\n"
    plan = letterhead + "Good Health Hospital Care Plan\nPatient: Ann Lee\nDOB: 06/12/2004\nMRN: 9670612\n" \
                        "HEALTH CONCERNS SECTION\nCurrent every day smoker\nElectronically signed by: Dr. Ray\n"
    consult = letterhead + "Community Health Consult Note\nPatient: Ann Lee DOB: June 12, 2004 MRN: 9670612\n" \
                           "Visit date: July 31, 2013\nASSESSMENT\nUncontrolled type II diabetes.\n"
    discovery = _discover(plan, consult)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)]]
    assert discovery.encounters[1].encounter_type == ET.OUTPATIENT


def test_a_form_filled_again_starts_a_document_after_a_cut_that_split_the_one_before():  # synthea
    # The first summary's second page opens with its custodian's block, which reads as a
    # letterhead and cuts; the next summary fills the first one's form again all the same.
    first, _, third = (_encounter_summary(ONE_EXPORT, *summary) for summary in SUMMARIES)
    custodian = "Custodian\nNEEDHAM FAMILY PRACTICE\nASSOC. P.C.\nContact Details\n87 CHESTNUT ST\nNATICK, MA 01760\n"
    discovery = _discover(first, custodian, third)
    starts = [e.page_ranges[0][0] for e in discovery.encounters]
    assert starts[0] == 1 and 3 in starts


# --- failure classes found on development packets of issue 22's third round (each fails on
# 05a2aec) --------------------------------------------------------------------------------------

# A lab report whose banner is a form of boxed fields: its text layer gives a column of labels,
# then a column of values, so no label has its value on its own line. (The shape of LabCorp's
# report; the patient and the numbers are invented.)
COLUMN_BANNER = """Northgate Reference Laboratory
Phone: 555-201-7788
Control Number
Specimen Number
Patient ID

4471920
301-552-0183-0

Patient Last Name
Account Address
DELACROIX
Patient First Name
MARGUERITE
Total Volume
Patient Phone
Fasting
Age (Y/M/D)
Date of Birth
Sex

48/02/11
{dob}
F
Date and Time Collected
Date Reported
03/14/19 08:05
03/15/19
Tests Ordered
Comprehensive Metabolic Panel
SODIUM 139 mmol/L
POTASSIUM 4.1 mmol/L
Page 1 of 1
"""


def test_a_birth_date_in_a_column_of_values_below_its_label_is_read():  # realpdf (LabCorp)
    other = _discover(VISIT, LATER_PAGE, COLUMN_BANNER.format(dob="11/23/71"))
    assert [e.page_ranges for e in other.encounters] == [[(1, 2)], [(3, 3)]]
    assert other.identity_conflict  # born 1971, not 1961: another patient's report
    same = _discover(VISIT, LATER_PAGE, COLUMN_BANNER.format(dob="03/03/61"))
    assert not same.identity_conflict
    assert same.encounters[1].patient_dob == dt.date(1961, 3, 3)


def test_a_date_of_birth_label_left_blank_reads_no_other_date_as_the_birth():  # realpdf (LabCorp)
    blank = COLUMN_BANNER.replace("48/02/11\n{dob}\n", "")
    discovery = _discover(VISIT, LATER_PAGE, blank)
    assert not discovery.identity_conflict and discovery.encounters[1].patient_dob is None


def test_a_column_birth_date_that_reads_either_way_gives_no_birth_date_not_the_age_below_it():  # realpdf
    # The page prints an age as Y/M/D and month-first dates, so it shows no order: 08/11/86 is
    # unread, and the age below it (26/05/21) is no birth date either.
    unread = COLUMN_BANNER.replace("48/02/11\n{dob}\n", "08/11/86\n26/05/21\n")
    discovery = _discover(VISIT, LATER_PAGE, unread)
    assert not discovery.identity_conflict and discovery.encounters[1].patient_dob is None


# The stylesheet's closing block under a document's last sections: the document's identifiers,
# its custodian, and the patient and encounter again, each value on the line below its label.
CLOSING_BLOCK = """Set-ID
sTT988
(2.16.840.1.113883.19.5.99999.19)
Custodian
Good Health HIE
Contact Details
Workplace: 1009 Healthcare Drive
Patient
Legal: Nora QUILLFEATHER, search:
Nora QUILLFEATHER
Contact Details
Home Primary: 2222 Home Street
Date of Birth
March 3, 1961 (64yr)
Gender
Female
Encounter
ID
E-88121
Encounter Date
August 4, 2025
"""


def test_the_stylesheets_closing_block_under_a_last_page_is_no_new_banner():  # cda (seeds 12-14)
    discovery = _discover(VISIT, LATER_PAGE, CLOSING_BLOCK, STAY, LATER_PAGE)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 5)]]
    assert not discovery.identity_conflict


def test_a_banner_after_a_report_that_showed_only_a_column_birth_date_starts_a_document():  # realpdf
    # The lab report's banner is a column of values (its birth date read, its name not): the
    # next page's labelled banner of the same patient is a banner where there was none.
    same = COLUMN_BANNER.format(dob="03/03/61").replace("Page 1 of 1\n", "")  # no page count to say so
    summary = "Sierra Valley Medical Institute\nName: Nora Quillfeather\nDOB: 03/03/1961\nSex: Female\n" \
              "Smoking Status: Former\nAlcohol Use: Occasional\nType 2 diabetes mellitus, on metformin.\n"
    discovery = _discover(same, summary, LATER_PAGE)
    assert [e.page_ranges for e in discovery.encounters][:2] == [[(1, 1)], [(2, 3)]]


def _record_page(head: str, body: str) -> str:
    return head + "\n" + body + "\nSierra Valley Medical Institute INC (402) 738-5912\n22/04/2025\n"


# One vendor's patient records, as OCR reads their scans: a two-column running head (the
# letterhead beside the patient's name and birth date) that OCR runs together another way on
# each page; each record opens with its "Patient Summary". (Seeds 12-14's scanned packets.)
OCR_HEADS = (
    "a Healthcare ' = . Walter Abernathy 13/05/1996\n* Recovery , ' Sierra Valley Medical Institute INC\n"
    "U Trauma : ,\nCenter ; : :",
    "a Healthcare \" . Walter Abernatliy 13/05/1996\n, Recovery : Sierra Valley Medical Institute INC\n"
    "U Trauma : ; ; ; aan\n. Center",
    "Healthcare\not Recovery\n; 'Trauma\nWalter Abernathy 13/05/1996\nSierra Valley Medical Institute INC\nCenter",
)
RECORD = (
    "Patient Summary\nWalter Abernathy, born on 13/05/1996, is a 46-year-old patient with type 2 diabetes\n"
    "mellitus and peripheral neuropathy, managed with medication and lifestyle adjustments.",
    "Doctor Notes\nSubjective Observations: Patient reports stable blood sugar levels and controlled\n"
    "neuropathy symptoms. Assesment: well-managed type 2 diabetes mellitus.",
    "Medication Test: Status. On/Last\nHbA1c Done 08/11/2024\nLipid Panel Done 08/11/2024\n"
    "Comprehensive Metabolic Panel Done 08/11/2024",
)


def test_a_record_that_opens_as_the_last_one_did_under_a_running_head_ocr_reads_anew_starts_one():  # scanned
    pages = [_record_page(head, body) for head, body in zip(OCR_HEADS, RECORD)]
    again = [_record_page(OCR_HEADS[(i + 1) % 3], body) for i, body in enumerate(RECORD)]
    discovery = _discover(*pages, *again, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 6)]]


def test_a_reports_next_page_saying_continued_under_its_title_continues_it_whatever_ocr_misread():  # scanned
    # OCR read a stray comma after the first page's title and "S23" as "823" in the second
    # page's accession number: the banner is no longer the same, numbers and all. The second
    # page says "(continued)" on a line of its own under the title.
    one = dict(name="VASQUEZ, RUFUS", dob="08/27/1956", collected="04/27/2023")
    two = dict(name="MCALLISTER, DOLORES", dob="01/28/1978", collected="06/09/2016")
    first = "PATHOLOGY REPORT ,\nCLINICAL HISTORY\nLesion noted on examination; rule out malignancy.\n" \
            "GROSS DESCRIPTION\nReceived in formalin, three fragments of tan soft tissue."
    second = "PATHOLOGY REPORT\n(continued)\nMICROSCOPIC DESCRIPTION\nSections show benign prostatic tissue.\n" \
             "Electronically signed by Claire Dubois, MD"
    pages = [PATHOLOGY.format(body=first, acc="S23-84274", **one), PATHOLOGY.format(body=second, acc="823-84274", **one),
             PATHOLOGY.format(body=first, acc="S16-5543", **two), PATHOLOGY.format(body=second, acc="S16-5543", **two)]
    discovery = _discover(*pages, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)]]


def test_the_same_patients_next_record_under_the_same_running_head_starts_where_it_opens_again():  # realpdf
    # The vendor's records print one running head (letterhead, the patient's name and birth
    # date) on every page of every record: the banner repeats, numbers and all, across records
    # too. Below it, each record opens with its "Patient Summary" again. (Seed 13's packets.)
    head = "Healthcare\nRecovery\nTrauma\nCenter\nWalter Abernathy 13/05/1996\nSierra Valley Medical Institute INC"
    demographics = "\nPatient Demographics\nName: Walter Abernathy\nDOB: 13/05/1996\nAge: 46\nSex: Female"
    pages = [_record_page(head, body) for body in (RECORD[0] + demographics, *RECORD[1:])]
    discovery = _discover(*pages, *pages)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 6)]]


LAB_FOOT = """SAMPLE REPORT, 4471920
03/15/19 18:29 ET
Page {page} of 2
DUPLICATE FINAL REPORT
This document contains private and confidential health information protected by state and federal law.
If you have received this document in error, please call 800-555-7566
(c)2004-19 Northgate Reference Laboratory Holdings
All Rights Reserved
DOC1 Ver: 1.49
"""


def test_a_page_count_in_a_foot_with_lines_below_it_counts():  # realpdf (LabCorp)
    # "Page 1 of 2" on a line of its own, with the report's disclaimer and version lines below.
    lab = COLUMN_BANNER.format(dob="03/03/61").replace("Page 1 of 1\n", "")
    later = "Northgate Reference Laboratory\nTests Ordered\nLIPID PANEL\nCHOLESTEROL 182 mg/dL\nLDL 104 mg/dL\n"
    record = "Healthcare\nRecovery\nTrauma\nCenter\nDoctor Notes\nSubjective: stable, no new complaints.\n"
    discovery = _discover(VISIT, LATER_PAGE, lab + LAB_FOOT.format(page=1), later + LAB_FOOT.format(page=2), record)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)], [(5, 5)]]


STACKED_BANNER = """Northside Pathology Associates : SURGICAL PATHOLOGY REPORT
2200 Medical Park Dr, Suite 140, Columbus, OH 43214
Patient Name: {name}
Date of Birth: {dob}
Medical Record #: {mrn}
Accession No.: {acc}
Date Collected: 08/03/2015
CLINICAL HISTORY
Nodule noted on examination; rule out malignancy.
"""


def test_a_banners_fields_read_through_the_marks_ocr_puts_after_their_labels():  # scanned (seed 12)
    # "Medical Record #:" is a record number's label; OCR's stray marks after a label (": :",
    # ". -", ".~") stand between it and its value. Every date here reads either way.
    one = STACKED_BANNER.format(name=": Pearl Szabo", dob=".~ 1975-06-20", mrn="14476394", acc="S24-11375")
    two = STACKED_BANNER.format(name=". - Rufus Holloway", dob=", 09/08/1938", mrn="73865575", acc="S15-13799")
    page = grouping.read_page(PageText(page_number=1, text=one, engine="tesseract", confidence=0.8), None)
    assert page.patient.name[0] == "Pearl Szabo" and page.patient.identifier[0] == "14476394"
    assert page.patient.dob[0] == dt.date(1975, 6, 20)
    assert _discover(one, two, engine="tesseract").identity_conflict


def test_a_column_birth_date_the_page_prints_most_often_is_still_read():  # scanned (seed 9)
    # The record prints its patient's birth date three times (the running head, the summary,
    # the demographics, where OCR parted "DOB:" from its value): no other date is as frequent.
    def summary(name: str, dob: str) -> str:
        return f"Healthcare\nRecovery\nTrauma\nCenter\nPatient Summary\n{name} {dob}\n" \
               f"{name}, born on {dob}, is a patient with type 2 diabetes mellitus.\n" \
               f"Patient Demographics\nName: {name}\nDOB:\n{dob}\nAge: 65\nVisit Date: 15/11/2024\n"
    discovery = _discover(summary("Oscar Mulligan", "07/01/1988"), summary("Melissa Peter Cobb", "21/05/1939"))
    assert discovery.encounters[-1].patient_dob == dt.date(1939, 5, 21)
    assert discovery.identity_conflict


def test_one_patient_read_with_an_ocr_slip_in_the_birth_date_or_only_the_tail_of_a_wrapped_id():  # scanned (seed 16)
    from shared.encounters.identity import Identity, conflicts
    from shared.encounters.text import Span

    at = Span(1, 0, 1)
    born = Identity(dob=(dt.date(1992, 2, 5), at), name=("Jean Martinez", at))
    assert not conflicts(born, Identity(dob=(dt.date(1992, 2, 8), at), name=("Jean Martinez", at)))  # 5 read as 8
    assert conflicts(born, Identity(dob=(dt.date(1962, 7, 8), at)))  # another patient's
    whole = Identity(identifier=("69c18f19-3254-1d03-7969-415c70102c00", at))
    assert not conflicts(whole, Identity(identifier=("415c70102c00", at)))  # the line the id wrapped to
    assert conflicts(whole, Identity(identifier=("a11f7e02c9d4", at)))


def test_one_name_and_birth_date_under_two_numbers_and_a_mark_after_a_banner_line_are_one_patient():  # scanned (seed 17)
    from shared.encounters.identity import Identity, conflicts, read_identity
    from shared.encounters.text import Span

    at = Span(1, 0, 1)
    eve = Identity(name=("Eve Betterhalf", at), dob=(dt.date(1975, 5, 1), at), identifier=("444-22-2222", at))
    assert not conflicts(eve, dataclasses.replace(eve, identifier=("444-22-2200", at)))  # OCR read 22 as 00
    assert conflicts(eve, dataclasses.replace(eve, identifier=("444-22-2200", at), dob=(dt.date(1957, 5, 1), at)))
    assert not conflicts(Identity(identifier=("JTG73736", at)), Identity(identifier=("7673736", at)))  # OCR's letters
    # "|" that OCR read at a line's end makes no table of it and the next line
    text = "Patient-ID: a782782e-fdaa-01c6 (2.16.840.1.113883.19.5) |\nID: c9f628c7-4dfd, Type: Well child visit\n"
    assert read_identity(1, text, lines_of(text), None).identifier[0] == "a782782e-fdaa-01c6"


def test_a_running_head_of_single_words_ocr_read_apart_still_lets_a_record_reopen():  # scanned (seed 12)
    # OCR lost the name beside the letterhead on the record's first page, and read its words
    # one to a line; "Patient Summary" came out "@atient Summary".
    lost = "Healthcare\ncs Recovery\nTrauma\nCenter"
    heads = (lost, "Healthcare\nRecovery\nTrauma\nWalter Abernathy 13/05/1996\nSierra Valley Medical Institute INC",
             OCR_HEADS[1])
    bodies = (RECORD[0].replace("Patient Summary", "@atient Summary"), *RECORD[1:])
    pages = [_record_page(head, body) for head, body in zip(heads, bodies)]
    again = _record_page(OCR_HEADS[0], RECORD[0])
    discovery = _discover(*pages, again, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 4)]]


def test_a_page_opening_with_the_documents_first_line_again_starts_the_next_document():  # scanned, synthea (seed 14)
    # One export's summaries open with the same title and time; OCR garbled the second one's
    # patient block, so its form is not read again. Its first line is the first page's, and no
    # line of the page before holds it.
    title = "Encounter Summary (January 1, 2024, 7:23:31PM)"
    first = f"{title}\nPatient Hermelinda ROBEL Date of Birth: March 27, 1973 Gender: F\nEncounter\n" \
            "Type: Emergency room admission (procedure)\nMedications\nAcetaminophen 325 MG Oral Tablet\n"
    # the next page's head reads much as the first page's (the sections it carries on)
    second = "Medications\nAcetaminophen 325 MG Oral Tablet\nEncounter\nType: Emergency room admission (procedure)\n" \
             "Problems\nPrediabetes http://snomed.info/sct 15777000\nImmunizations\nInfluenza vaccine\n" \
             "Custodian\nTRINITY FAMILY MEDICINE\n3 WASHINGTON ST STE 220\nNORTH EASTON, MA\n"
    garbled = f"{title}\n\ne Patient\n\nEncounter |\nDocumentation Of\nCare provision\nMedications\n"
    discovery = _discover(first, second, garbled, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)]]


def test_a_date_under_an_authored_on_label_that_ends_the_line_above_is_no_encounter_date():  # scanned, synthea (seed 14)
    # OCR wrapped "Authored On:" and its date; the encounter's own date line is unreadable.
    page = "Encounter Summary\nPatient\nLegal: Nora QUILLFEATHER\nDate of Birth: March 3, 1961\n" \
           "Author Organization: TRINITY FAMILY MEDICINE, Authored On:\nJanuary 1, 2024, 7:23:31PM\nMedications\n"
    (only,) = _discover(page, engine="tesseract").encounters
    assert only.date_start is None


def test_a_row_of_a_tables_column_ocr_read_apart_is_no_title():  # scanned, realpdf (seeds 15, 16)
    # The record's last page carries on its tests table; OCR read the table column by column,
    # so "Chest X-Ray" stands in a list of the tests' names, near the top: a row, not a title.
    tests = "Medical Tests\nPulmonary Function Test\nChest X-Ray\nBlood Glucose{mark}\nECG{mark}\nArterial Blood Gas\n" \
            "Sputum Culture\nDone\nDone\nPending\nPending"
    pages = [_record_page(head, body) for head, body in zip(OCR_HEADS, RECORD)]
    head = "Healthcare\n\n« Recovery\nTrauma\n\n'Center\nWalter Abernathy 13/05/1996"
    for mark in ("", " .", " -"):  # the marks OCR reads after a row
        discovery = _discover(*pages, _record_page(head, tests.format(mark=mark)), engine="tesseract")
        assert [e.page_ranges for e in discovery.encounters] == [[(1, 4)]], mark


def test_a_facility_name_wrapped_under_its_label_is_no_letterhead():  # scanned, synthea (seed 15)
    # The stylesheet's closing block on the document's last page: OCR wrapped "Organization:"
    # and the facility's name it labels, so the name stands on a line of its own near the top.
    first = "Encounter Summary (January 1, 2025, 01:50:49AM)\nPatient\nLegal: Virgil CRIST\n" \
            "Date of Birth: January 23, 1959 (65yr) Gender: M\nEncounter\n" \
            "ID: 957913e9066f, Type: Encounter for symptom, Date/Time: May 23, 1981 07:15:35AM\n" \
            "Problems\nPrediabetes http://snomed.info/sct 15777000\nChronic sinusitis (disorder)\n"
    closing = "Author\n\nhttps://github.com/synthetichealth/synthea,\nOrganization: CARDIOVASCULAR\n" \
              "CENTER AT TUFTS MEDICAL CENTER\nINC\n\nContact Details\nnot applicable\n800, WASHINGTON ST\n" \
              "WORCESTER, MA 016550002\n"
    discovery = _discover(first, closing, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


def test_a_running_head_ocr_ran_together_another_way_still_holds_the_records_next_page():  # scanned, realpdf (seed 15)
    # OCR lost a letter of the letterhead and ran its lines into the banner's on one page, not
    # on the next: the head's lines are not the last page's, but its words are.
    heads = ("Healthcare\n\n« Recovery\nTrauma\n- Center",
             "af, “ealthcare Walter Abernathy 13/05/1996\nU Recoveiy Sierra Valley Medical Institute INC\n\n"
             "Trauma\nCenter",
             ". Healthcare\n\nof Recovery\nTrauma\n\nWalter Abernathy 13/05/1996\nSierra Valley Medical Institute INC\n\n"
             "Center")
    pages = [_record_page(head, body) for head, body in zip(heads, RECORD)]
    assert [e.page_ranges for e in _discover(*pages, engine="tesseract").encounters] == [[(1, 3)]]
    # What the page-pair model reads: the last page's head held, as with a text layer's
    read = [grouping.read_page(PageText(page_number=i, text=t, engine="tesseract", confidence=0.8), None)
            for i, t in enumerate(pages, 1)]
    x = dict(zip(boundaries.FEATURES, boundaries.features(grouping.Group(read[:2]), read[2]), strict=True))
    assert x["head_as_last"] >= 0.6 and x["head_as_first"] >= 0.6


def test_a_name_with_a_letter_beyond_ascii_is_read_whole():  # scanned (seed 15)
    # Names are not ASCII ("Zoë Núñez"); OCR reads "McAllister" as "MéAllister" on one page of
    # two: cut at "é", the name was "Otis M", another patient's.
    from shared.encounters.identity import read_identity

    def banner(name: str, mrn: str) -> str:
        return f"Patient Name: {name}\nDate of Birth: 02/26/1979\nMedical Record #: {mrn}\n"

    for name in ("Zoë Núñez", "Otis MéAllister"):
        text = banner(name, "95116952")
        assert read_identity(1, text, lines_of(text), True).name[0] == name
    text = banner("Otis McAllister", "- 95116952")  # a mark OCR read between the label and its value
    assert read_identity(1, text, lines_of(text), True).identifier[0] == "95116952"
    pages = [STACKED_BANNER.format(name=name, dob="02/26/1979", mrn="95116952", acc="S15-82946")
             for name in ("Otis McAllister", "Otis MéAllister")]
    discovery = _discover(*pages, engine="tesseract")
    assert not discovery.identity_conflict and len(discovery.encounters) == 1


CDA_FIRST_READ = """Progress Note (March 29, 2005, 5:15:04PM -0500)

Patient

Guardian

Encounter

Documentation Of
Author

Legal: Owen HOLLINGSWORTH Date of Birth: January 29, 1966 (39yr) Gender: Male
Patient-ID: 49426943 (Examples), 943-42-6943 (SSN)
Ralph RELATIVE - grandfather
ID: 9937012 (Examples), Type: Office or other outpatient visit, Date/Time: March 29, 2005
ALLERGIES
Penicillin G benzathine Hives
"""
CDA_MIDDLE_READ = """Patient Provider Provider

; Patient
Planned Care Start Date Rating Provider
Encounter for Check-up October 15, 2013
PROBLEMS
Type II diabetes mellitus with ulcer
RESULTS
Hemoglobin 13.2 g/dL
"""
CDA_CLOSING_READ = """Date of Birth
Race

Patient-IDs

Guardian

Provider Organization .

January 29, 1966 (39yr) Gender
White Ethnicity
49426943 (Examples) Language
943-42-6943 (SSN)

Ralph RELATIVE - grandfather

* Good Health Clinic
Contact Details
"""


def test_the_stylesheets_closing_block_repeating_the_first_pages_lines_deep_down_does_not_reopen():  # scanned, cda (seed 15)
    # The closing block prints the patient's demographics again: a line of the first page's
    # head ("Ralph RELATIVE - grandfather") comes back, but nine lines down, under lines no
    # page before opened with: the page does not open as the first page did.
    discovery = _discover(CDA_FIRST_READ, CDA_MIDDLE_READ, CDA_CLOSING_READ, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)]]


def test_a_running_header_names_its_patient_and_an_ocr_slip_in_the_number_under_that_name_is_no_other_patient():  # scanned, generated (seed 17)
    # The note's next page prints "Name | MRN ... | Clinic: Title" as its running header; OCR
    # read the first page's MRN 444-22-2222 as 444-22-2200.
    from shared.encounters.identity import Identity, conflicts, read_identity
    from shared.encounters.text import Span

    header = "Eve Betterhalf | 'MRN 444-22-2222 | Riverbend Cardiology Clinic: Clinic Note\n"
    assert read_identity(2, header, lines_of(header), True).name[0] == "Eve Betterhalf"
    first = "Riverbend Cardiology Clinic\n55 River Street, Dayton, OH 45402\nRiverbend Cardiology Clinic: Clinic Note\n" \
            "Patient: Eve Betterhalf DOB: 05/01/1975 MRN: 444-22-2200\nVisit date: 08/02/2018\n" \
            "Author: Dr. Samuel Ortiz, MD\nCHIEF COMPLAINT\nHeadaches.\n"
    later = header + "eye exam. Questions were invited and answered today.\nINSTRUCTIONS\n" \
                     "The patient will follow up once the MRI results are available.\n" \
                     "Electronically signed by: Dr. Samuel Ortiz, MD on 07/08/2019\n"
    discovery = _discover(first, later, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]] and not discovery.identity_conflict
    at = Span(1, 0, 1)
    eve = Identity(name=("Eve Betterhalf", at), identifier=("444-22-2222", at))
    assert conflicts(eve, Identity(name=("Ada Lovelace", at), identifier=("444-22-2200", at)))  # another's name
    assert conflicts(eve, Identity(name=("Eve Betterhalf", at), identifier=("719-04-3851", at)))  # another number


VISIT_NOTE = ("CHIEF COMPLAINT\nAnnual exam.\nHISTORY OF PRESENT ILLNESS\n"
              "Martha Collins is a 50-year-old female with a past medical history\n"
              "significant for congestive heart failure, depression, and hypertension\n"
              "who presents for her annual exam. It has been a year since I last saw the\npatient.\n",
              "Echocardiogram demonstrates decreased ejection fraction of 45%.\nASSESSMENT AND PLAN\n"
              "Martha Collins is a 50-year-old female with a past medical history\n"
              "significant for congestive heart failure, depression, and hypertension.\n"
              "We will increase her lisinopril to 40 mg daily.\n")


def test_a_note_that_names_its_patient_only_in_its_text_is_another_patients_beside_a_banner():  # realpdf (seed 17)
    # A Word-made visit note has no banner: "Martha Collins is a 50-year-old female" names its
    # patient. Filed before another patient's record, it is hers, not his.
    head = "Healthcare\nRecovery\nTrauma\nCenter\nWalter Abernathy 13/05/1996\nSierra Valley Medical Institute INC"
    record = [_record_page(head, body) for body in RECORD]
    discovery = _discover(*VISIT_NOTE, *record)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 5)]]
    assert discovery.identity_conflict and discovery.encounters[0].patient_name == "Martha Collins"


def test_a_name_the_text_tells_on_a_later_page_does_not_overrule_the_banners():  # generated
    # Our generator prints a banner over a transcript that names someone else: a banner's name stands.
    first = "Patient: Eve Betterhalf DOB: 05/01/1975 MRN: 444-22-2222\nVisit date: 08/02/2018\n" + VISIT_NOTE[0]
    discovery = _discover(first, VISIT_NOTE[1])
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]] and not discovery.identity_conflict


def test_a_running_headers_name_and_number_make_no_banner_of_a_later_page():  # generated (seed 10)
    # Read from the running header, the name and the MRN beside it name the patient, but the
    # page with a section titled as a kind below it is no document's first page.
    first = "Community Health and Hospitals\nDISCHARGE SUMMARY\nPatient: Christina Morgan DOB: 04/12/1961 MRN: 9594293\n" \
            "Admitted: 03/02/2021 Discharged: 03/06/2021\nREASON FOR ADMISSION\nAbdominal pain.\n"
    later = "Christina Morgan  |  MRN 9594293  |  DISCHARGE SUMMARY\nGastroenterology\nCardiology\nDietitian\n" \
            "HOSPITAL COURSE\nPatient presented with dark stools and pain lower left quadrant of abdomen.\n" \
            "Appendix was removed. Will discharge.\nHOSPITAL DISCHARGE INSTRUCTIONS\n" \
            "- Take all of your prescription medication as directed.\n"
    discovery = _discover(first, later)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


def test_a_name_read_with_a_word_of_the_letterhead_and_an_ocr_slip_is_the_same_patients():  # scanned, realpdf (seed 12)
    # OCR ran the letterhead's first word into the running head's name, and read "Castellano"
    # as "Castellario": the name's words are all there, give or take a letter.
    from shared.encounters.identity import Identity, conflicts
    from shared.encounters.text import Span

    at = Span(1, 0, 1)
    banner = Identity(name=("Miriam Ray Castellano", at), dob=(dt.date(1930, 12, 19), at))
    assert not conflicts(banner, Identity(name=("Healthcare Miriam Ray Castellario", at), dob=(dt.date(1930, 12, 19), at)))
    assert not conflicts(Identity(name=("Sorensen, Beatrice P", at)), Identity(name=("Beatrice Sorensen", at)))
    assert conflicts(banner, Identity(name=("Miriam Ray Holloway", at)))  # another surname
    assert conflicts(Identity(name=("Oscar Brennan", at)), Identity(name=("Healthcare Oscar Ray Delgado", at)))


def _two_page_report(head: str, first_line: str, second_line: str) -> list[str]:
    """A pathology report's two pages, each under ``head`` (a letterhead, the patient's banner,
    the accession line, the heading), its banner line on each page as given."""
    first = head.format(banner=first_line) + (
        "CLINICAL HISTORY\nPolyp noted on examination; rule out malignancy.\nSPECIMEN\nA. Stomach, antrum, biopsy\n"
        "GROSS DESCRIPTION\nReceived in formalin labeled with the patient's name, 2 tan-pink tissue fragments.\n")
    second = head.format(banner=second_line) + (
        "MICROSCOPIC DESCRIPTION\nSections show the lesion described in the diagnosis below.\nFINAL DIAGNOSIS\n"
        "A. Stomach, antrum, biopsy: chronic gastritis.\nElectronically signed by Helen Marsh, MD on 06/12/2016\n")
    return [first, second]


VALLEY_HEAD = ("Valley Regional Laboratory - Anatomic Pathology\n77 Hospital Way, Fresno, CA 93721\n{banner}\n"
               "ACCESSION #: S16-5543 COLLECTED: 06/09/2016 RECEIVED: 06/09/2016\nPATHOLOGY REPORT\n")


def test_a_reports_banner_repeated_with_an_ocr_slip_in_the_patients_number_continues_it():  # scanned (seed 14)
    # A two-page pathology report whose page 2 repeats its letterhead, banner and heading; OCR
    # read one digit of the record number on page 2 wrong (88777723 as 88777728). The patient is
    # the same (name and birth date agree), so the banner is the report's own, repeated.
    pages = _two_page_report(VALLEY_HEAD, "PATIENT: MCALLISTER, DOLORES DOB: 01/28/1978 MRN: 88777723",
                             "PATIENT: MCALLISTER, DOLORES DOB: 01/28/1978 MRN: 88777728")
    discovery = _discover(*pages, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]
    assert not discovery.identity_conflict


def test_a_title_with_a_mark_ocr_read_after_it_is_still_the_title():  # scanned (seed 20)
    # A two-page pathology report repeating its head on page 2; on page 1 OCR read a mark after
    # the title ("SURGICAL PATHOLOGY REPORT ."), on page 2 not. Page 1 is titled as page 2 is, so
    # page 2's title is no other kind's: the report's own head repeated.
    one = dict(name="Marlene Pritchard", dob="12/04/1951", acc="S23-66241", collected="06/30/2023")
    first = PATHOLOGY.format(body="GROSS DESCRIPTION\nReceived in formalin, 1 tan-pink tissue fragment.", **one)
    second = PATHOLOGY.format(body="MICROSCOPIC DESCRIPTION\nSections show benign prostatic tissue.\n"
                                   "Electronically signed by Dr. H. Varga, pathologist", **one)
    first = first.replace("SURGICAL PATHOLOGY REPORT", "SURGICAL PATHOLOGY REPORT .")
    discovery = _discover(first, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]
    assert discovery.encounters[0].encounter_type == ET.LAB


def test_a_coded_term_with_its_snomed_tag_is_a_row_of_a_list_not_a_title():  # scanned, synthea (seed 20)
    # A record's next page opens inside its care plan's table, which OCR read column by column:
    # "Care plan (record artifact)" is a SNOMED term with its semantic tag, a row of the list,
    # not a care plan document's title.
    first = ("Patient Manuel BODE Date of Birth: August 15, 1976\nImmunizations\n"
             "Influenza, seasonal, injectable, preservative free 2021-07-25T08:46:37Z\n"
             "http://hl7.org/fhir/sid/cvx 140\nPlan of Care\n")
    second = ("Start\nStop Description\nCode\n2013-05-05T08:46:37Z\nCare plan (record artifact)\n"
              "http://snomed.info/sct 734163000\n2016-08-21T03:46:37Z\nLifestyle education regarding hypertension\n"
              "http://snomed.info/sct 443402002\n")
    discovery = _discover(first, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


def test_a_tables_heading_row_under_a_name_column_is_no_patients_name():  # scanned, cda (seed 20)
    # The stylesheet's problem list is a table headed "Name | Dates | Status"; OCR read its heading
    # row as "Name : Dates Status" near the top of the record's next page. Column headings are no
    # patient: no conflict, no cut.
    first = CCD
    second = ("Planned Activity Planned Date\nColonoscopy Oct 12, 2014\nProblem List.\nName : Dates Status\n"
              "Dark stools Onset: Sept 6 2014 Active\nAppendicitis Onset: Sept 8 2014 Active\n")
    discovery = _discover(first, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]
    assert not discovery.identity_conflict


def test_a_reports_banner_repeated_with_its_number_read_on_one_page_only_continues_it():  # scanned (seed 16)
    # Page 2 repeats the banner with the same number, but a mark OCR put before its label
    # ("_MRN:") keeps the number from being read there: the lines still match as printed.
    head = ("St. Brigid Medical Center, Department of Pathology\n9 Abbey Road, Worcester, MA 01608\n{banner}\n"
            "ACCESSION #: S21-64985 COLLECTED: 05/21/2021 RECEIVED: 05/21/2021\nPATHOLOGY REPORT\n")
    first = head.format(banner="PATIENT: FONTAINE, OTIS DOB: 02/07/1960 MRN: 23126481") \
        + "CLINICAL HISTORY\nThyroid nodule.\nGROSS DESCRIPTION\nReceived in formalin, 4 tan-pink tissue fragments.\n"
    second = head.format(banner="PATIENT: FONTAINE, OTIS DOB: 02/07/1960 _MRN: 23126481") \
        + ("MICROSCOPIC DESCRIPTION\nSections show a benign follicular nodule.\nFINAL DIAGNOSIS\n"
           "Thyroid, left lobe: follicular adenoma.\nElectronically signed by Helen Marsh, MD on 05/24/2021\n")
    discovery = _discover(first, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


def test_a_note_without_the_running_head_ocr_read_anew_on_every_page_before_it_starts_a_document():  # scanned (seeds 8, 13)
    # The vendor's record repeats its two-column head on every page, read another way by OCR
    # each time; the visit note after it prints no head at all, and names the same patient.
    pages = [_record_page(head, body) for head, body in zip(OCR_HEADS, RECORD)]
    note = [page.replace("Martha Collins", "Walter Abernathy") for page in VISIT_NOTE]
    discovery = _discover(*pages, *note, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 5)]]


def test_a_collection_date_behind_the_marks_ocr_put_around_it_dates_the_report():  # scanned (seed 14)
    # OCR read the form's rule as "_" before the date and a speck as "©" after it, on both
    # pages; the report date below is clean. The specimen's collection dates the report.
    head = ("St. Brigid Medical Center, Department of Pathology PATHOLOGY REPORT\n9 Abbey Road, Worcester, MA 01608\n"
            "{banner}\nMedical Record #: 16861705\nAccession No.: S21-17646\n"
            "Date Collected: _ 2021-04-07 ©\nDate Reported: ~ 2021-04-09\n")
    pages = _two_page_report(head, "Patient Name: Rufus Szabo", "Patient Name: Rufus Szabo")
    pages[1] = pages[1].replace('_ 2021-04-07 ©', '_ "2021-04-07').replace("~ 2021-04-09", "2021-04-09")
    (report,) = _discover(*pages, engine="tesseract").encounters
    assert report.date_start == dt.date(2021, 4, 7)


def test_dates_in_rows_of_a_table_at_the_top_of_a_page_date_no_visit():  # scanned (seed 15)
    # The record's last page opens, under its running head, with a table of tests and the day
    # each was done; OCR lost the table's rules. Each row's date stands after a few words, as a
    # letter's date would, but every row has one: a list, not the page's own date.
    head = "Healthcare\nof Recovery\nTrauma\nAgnes Ray Kowalski 11/07/1985\nSierra Valley Medical Institute INC\nCenter\n"
    rows = ("Medication Test Status On/Last\nHbAIc Done 28/10/2024\nLipid Panel Done 28/10/2024\n"
            "Complete Blood Count (CBC) Done 28/10/2024\nUrine Microalbumin Pending 03/11/2024\n")
    (visit,) = _discover(head + rows + "Sierra Valley Medical Institute INC\n(402) 738-5912\n",
                         engine="tesseract").encounters
    assert visit.date_start is None


def test_a_running_heads_name_behind_the_marks_ocr_read_before_it_is_the_records_patient():  # scanned (seed 10)
    # Another patient's discharge summary, then a record whose running head OCR read with a
    # word and marks before the name ("a Healthcare ' = . Walter Abernathy 13/05/1996"): the
    # name beside the birth date is the record's banner, not only a name its text tells.
    summary = (("Community Health Hospital Patient ID: 12345\nDischarge Summary Patient Name: Levin, Henry L.\n"
                "Date of Discharge: 03/26/2009\nDISCHARGE DIAGNOSES:\n1. Acute cerebrovascular accident.\n"
                "2. Hypertension.\nThe patient was admitted to the MICU.\n1|Page"),
               ("HOSPITAL COURSE PER PROBLEM LIST:\n1. Acute cerebrovascular accident: the patient was not a\n"
                "candidate for tissue plasminogen activator. A neurology consult was obtained.\n2|Page"))
    record = [_record_page(head, body) for head, body in zip(OCR_HEADS, RECORD)]
    discovery = _discover(*summary, *record, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 5)]]
    assert discovery.identity_conflict
    assert discovery.encounters[1].patient_name == "Walter Abernathy"


def test_a_records_last_page_opening_as_its_first_did_where_ocr_misread_the_middle_ones_continues_it():  # scanned (seed 15)
    # OCR read the running head's words one to a line on the record's first and last pages,
    # and garbled them on the middle one ("ealthcare", "Recoveiy"): the last page opens as the
    # first did and the middle one did not, but its head is the middle one's all the same.
    heads = ("Healthcare\nRecovery\nTrauma\nCenter",
             "af, \u201cealthcare Walter Abernathy 13/05/1996\nU Recoveiy Sierra Valley Medical Institute INC\nTrauma\nCenter",
             ". Healthcare\nof Recovery\nTrauma\nWalter Abernathy 13/05/1996\nSierra Valley Medical Institute INC\nCenter")
    bodies = (RECORD[0] + "\nPatient Demographics\nName: Walter\nAbernathy\nDOB: 13/05/1996\nAge: 46", *RECORD[1:])
    pages = [_record_page(head, body) for head, body in zip(heads, bodies)]
    discovery = _discover(*pages, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)]]


def test_a_page_opening_with_the_document_befores_first_line_where_ocr_garbled_its_own_starts_one():  # scanned, synthea (seed 12)
    # Three summaries of one export; OCR garbled the second one's title ("Encounter coon") and
    # read the third one's blocks in another order, so neither its form nor the second one's
    # first line is read again. Its first line is the one the first document opened with.
    title = "Encounter Summary (January 1, 2024, 7:23:31PM)"
    patient = "Patient Hermelinda ROBEL Date of Birth: March 27, 1973 Gender: F\n" \
              "Patient-ID: 5e919c08-ef1d-c960-e1b8-5a03864190aa (2.16.840.1.113883.19.5)\n"
    second = "Medications\nAcetaminophen 325 MG Oral Tablet\nProblems\nPrediabetes http://snomed.info/sct 15777000\n" \
             "Immunizations\nInfluenza vaccine\nCustodian\nTRINITY FAMILY MEDICINE\n3 WASHINGTON ST STE 220\n" \
             "NORTH EASTON, MA\n"
    first = f"{title}\n{patient}Encounter ID: 9c1d, Type: Emergency room admission (procedure), Date/Time:\n" \
            "August 10, 2019 9:21:08PM - 11:13:08PM\nMedications\n"
    garbled = f"_ Encounter coon (January 1, 2024, 7:23: 31PM)\n{patient}Encounter ID: 4e2a, Type: General " \
              "examination of patient (procedure), Date/Time:\nJune 7, 2022 9:12:41AM - 9:42:41AM\nImmunizations\n"
    reordered = f"{title}\nDocumentation Of\nCare provision, Date/Time: March 3, 2023 8:00:00AM - 8:15:00AM\n" \
                f"Authored On: January 1, 2024, 7:23:31PM\n{patient}Medications\n"
    discovery = _discover(first, second, garbled, second, reordered, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)], [(5, 6)]]


def test_a_record_after_a_note_opens_as_the_record_before_the_note_did():  # realpdf (seed 7)
    # The vendor's records of one patient with her visit note filed between two of them. Each
    # record's first page prints the name and birth date at its top, and again in a block of
    # demographics, the birth date under its label. The note has no head and names her in its
    # text: the record after it stops no running head, and its banner is a banner.
    def record(age: str) -> list[str]:
        return [_jsl("Judith Petrov", "23/12/1959", "Patient Summary",
                     f"Judith Petrov, born on 23/12/1959, is a {age}-year-old woman with asthma.\n"
                     "Patient Demographics\nName: Judith Petrov\nDOB:\n23/12/1959\nAge: 65\nSex: Female\n"
                     "Sierra Valley Medical Institute INC (402) 738-5912 22/04/2025"),
                _jsl("Judith Petrov", "23/12/1959", "Doctor Notes", f"Reviewed inhaler technique at {age}."),
                _jsl("Judith Petrov", "23/12/1959", "Medication Test", f"Spirometry done, age {age}.")]
    note = [page.replace("Martha Collins", "Judith Petrov") for page in VISIT_NOTE]
    discovery = _discover(*record("63"), *note, *record("64"), *record("65"))
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 5)], [(6, 8)], [(9, 11)]]


def test_a_records_next_page_opening_with_the_running_head_the_record_before_opened_with_continues_it():  # scanned (seeds 15, 16, 20)
    # Two records of one patient under the vendor's running head. OCR lost the name beside the
    # letterhead on the second record's first page; its next page opens with the head as the
    # first record's first page read it. A running head is no title: that page continues.
    lost = "Healthcare\ncs Recovery\nTrauma\nCenter"
    first = [_record_page(OCR_HEADS[0], body) for body in RECORD]
    second = [_record_page(head, body) for head, body in zip((lost, OCR_HEADS[0], OCR_HEADS[2]), RECORD)]
    discovery = _discover(*first, *second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)], [(4, 6)]]


SCANNED_SUMMARY_HEAD = ("Encounter Summary (July 14, 2022, 07:20:38AM)\n"
                        "Patient Emilio417 HERNANDEZ971 Date of Birth: December 31, 2011, 12:36:37AM (10yr) Gender: M\n"
                        "Patient-ID: 9bb6263e-8144-8756-f62a-638a10b85f75 (2.16.840.1.113883.19.5)\n")
SCANNED_SUMMARY_BODY = "Medications\nStart Stop Description Code\nAcetaminophen 325 MG Oral Tablet 313782\n"


def test_an_authored_on_label_ocr_wrapped_before_its_on_dates_no_encounter():  # scanned, synthea (seed 22)
    # OCR wrapped "Authored On:" after "Authored": the line of the date opens with "On:" alone.
    page = SCANNED_SUMMARY_HEAD + ("Author https://github.com/synthetichealth/synthea, Organization: SALEM FAMILY "
                                   "HEALTH CENTER, Authored\nOn: July 14, 2022, 07:20:38AM\n") + SCANNED_SUMMARY_BODY
    (summary,) = _discover(page, engine="tesseract").encounters
    assert summary.date_start is None


def test_a_stray_bar_ocr_read_before_a_line_makes_no_table_row_of_it():  # scanned, synthea (seed 22)
    # A "|" at the start of a line, cells on one side only: the service event's date still reads.
    page = SCANNED_SUMMARY_HEAD + ("| Documentation Of Care provision, Date/Time: September 14, 2017 04:56:23AM - "
                                   "05:11:23AM\n") + SCANNED_SUMMARY_BODY
    (summary,) = _discover(page, engine="tesseract").encounters
    assert summary.date_start == dt.date(2017, 9, 14)


def test_an_identifier_cut_short_where_its_line_wrapped_and_misread_elsewhere_is_the_same_patient():  # scanned (seed 23)
    # OCR lost the name on every page. It read the identifier's first letter as a digit, and a
    # letter twice, on one page; on the other, the identifier's line wrapped, only its start
    # was read, and the birth date was lost.
    def summary(when: str, ident: str, born: str) -> str:
        return (f"Encounter Summary (January 2, 2023, 06:16:23AM)\nPatient {born} Gender: F\n"
                f"Patient-ID: {ident}\nEncounter ID: {when[:4]}, Type: General examination, Date/Time: {when}\n"
                "Medications\nAcetaminophen 325 MG Oral Tablet\n")
    misread = summary("March 20, 2019", "0344384c-dce6d-ec08-28d8-3fb05a6f02a9 (2.16.840.1.113883.19.5)",
                      "Date of Birth: April 11, 1978")
    cut = summary("March 18, 2020", "c344384c-dc6d-ec08-28d8-3fb05a6", "")
    discovery = _discover(misread, cut, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)]]
    assert not discovery.identity_conflict


def test_the_stylesheets_closing_block_ocr_read_from_a_pages_top_reopens_no_document():  # scanned, cda (seed 25)
    # OCR read the closing block's labels one to a line at the top of a page ("Patient",
    # "Guardian": single words the first page's head prints too), and the next page opens with
    # "Documentation Of", a line of the first page's head. Two labels alike are no running head.
    first = ("Community Health and Hospitals: Discharge Summary (September 17, 2014, 7:04PM -0500)\nPatient\n"
             "Guardian\nEncounter\nDocumentation Of\nDate of Birth: January 30, 1944 (70yr) Gender: Male\n"
             "Legal: Owen KOWALCZYK\nPatient-ID: 91155275 (2.16.840.1.113883.19.5.99999.2)\n"
             "ID: 9937012, Date/Time: from September 9, 2014, 7:04PM -0500 to September 16, 2014, 7:04PM -0500\n"
             "HOSPITAL COURSE\nThe patient was admitted for appendicitis and underwent an appendectomy.\n")
    body = ("DISCHARGE MEDICATIONS\nAcetaminophen 500 mg every six hours as needed for pain.\n"
            "Ondansetron 4 mg every eight hours as needed for nausea.\nFOLLOW UP\nSurgery clinic in two weeks.\n")
    labels = ("Patient .\nDate of Birth\nRace\nPatient-IDs\nGuardian\nProvider\nOrganization\n"
              "Planned Activity Planned Date\nColonoscopy Oct 12, 2014\n")
    details = ("Documentation Of -\ncare provision\nPerformer - Primary\nCare Provider\nPrimary Care Provider\n"
               "Dr. Henry SEVEN of Community\nHealth and Hospitals\nContact Details\n1001 Village Avenue\n")
    discovery = _discover(first, body, labels, details, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 4)]]


def test_the_stylesheets_closing_block_ocr_read_with_the_patient_on_its_labels_lines_is_no_banner_again():  # scanned, cda (seeds 17, 25)
    # OCR read the closing block from a page's top, the patient's birth date on its label's
    # line: a banner, by its fields. But its lines are none of the first page's banner: the
    # document lists its patient again, it does not print its banner again.
    first = ("Community Health Consult Note (August 1, 2013, 05:00AM -0800)\n"
             "Patient | Legal: Caleb SZABO Patient-ID: 53164613 (SSN) Date of Birth: February 1, 1949 (64yr) Gender: Male\n"
             "Encounter ID: 9937012, Type: Office visit, Date/Time: July 31, 2013\n"
             "REASON FOR VISIT\nWeight reduction consultation.\nASSESSMENT\nObesity, slow healing wound on the left knee.\n")
    body = ("NUTRITION SECTION\nNutritional Status: well nourished\nDiet: Low sodium diet\nPhysical Examination\n"
            "Key Findings: 1. Obesity. 2. Slow healing open wound on left knee.\nTREATMENT PLAN\n"
            "Document Id (2.16.840.1.113883.19.5.99999.1)\nVersion 1\n")
    closing = ("Set-ID sTT988\n(2.16.840.1.113883.19.5.99999.19)\n"
               "Custodian Good Health HIE Contact Details - Workplace: 1009 Healthcare Drive\nPortland, OR 99123\n"
               "Tel Workplace: +1(555)-1009\n"
               "Patient Legal: Caleb SZABO, search: Caleb Contact Details: Home Primary: 2222 Home Street\n"
               "Date of Birth February 1, 1949 (64yr) Gender Male\nRace White Ethnicity Not Hispanic or Latino\n")
    discovery = _discover(first, body, closing, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)]]


def test_a_label_ocr_ran_onto_a_family_name_in_capitals_is_no_part_of_the_name():  # scanned, cda (seed 13)
    # OCR lost the space between the family name the stylesheet prints in capitals and the
    # label after it ("Legal: Lena MARSHPatient-ID: ..."); the document's closing block
    # lists the same patient under its labels, read apart.
    first = ("Transfer Summary (September 21, 2013, 05:00AM -0800)\n"
             "Patient Legal: Lena MARSHPatient-ID: 61234570 (SSN) - Date of Birth: May 9, 1941 (72yr) Gender: Male\n"
             "Encounter ID: 4410022, Type: Transfer of care, Date/Time: September 20, 2013\n"
             "REASON FOR TRANSFER\nContinued rehabilitation after a hip fracture.\n")
    closing = ("Patient\nDate of Birth\nRace\nPatient-IDs\nGuardian\n"
               "Legal: Lena MARSH, search:\nLena MARSH\nMay 9, 1941 (72yr)\nWhite\n")
    page = grouping.read_page(PageText(page_number=1, text=first, engine="tesseract", confidence=0.8), None)
    assert page.patient.name[0] == "Lena MARSH"
    discovery = _discover(first, closing, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]
    assert not discovery.identity_conflict


def test_a_name_with_a_letterhead_word_and_the_same_name_with_a_middle_name_are_one_patient():  # scanned, realpdf (seed 14)
    # OCR ran the letterhead's first word into the name on one record's running head; the
    # patient's next record gives her middle name. Each has a word the other lacks, at another
    # place in the name: one patient. A different word at the same place is another patient.
    from shared.encounters.identity import Identity, conflicts
    from shared.encounters.text import Span

    def record(head: str, name: str, age: int) -> list[str]:
        return [_record_page(f"{head}\nRecovery Sierra Valley Medical Institute INC\nTrauma\nCenter",
                             f"Patient Summary\n{name}, born on 24/07/1983, is a {age}-year-old patient with asthma,\n"
                             "managed with an inhaled steroid."),
                _record_page(f"Healthcare\nRecovery\nTrauma\n{name} 24/07/1983\nCenter",
                             "Doctor Notes\nSubjective Observations: Patient reports fewer night symptoms.")]
    pages = record("x Healthcare Ida Quinlan 24/07/1983", "Ida Quinlan", 41) \
        + record("Healthcare\nIda Mae Quinlan 24/07/1983", "Ida Mae Quinlan", 42)
    discovery = _discover(*pages, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 4)]]
    assert not discovery.identity_conflict
    at = Span(1, 0, 1)
    assert not conflicts(Identity(name=("Healthcare Ida Quinlan", at)), Identity(name=("Ida Mae Quinlan", at)))
    assert conflicts(Identity(name=("Ida Mae Quinlan", at)), Identity(name=("Ida Rose Quinlan", at)))
    assert conflicts(Identity(name=("Healthcare Ida Quinlan", at)), Identity(name=("Ida Mae Holloway", at)))


def test_a_name_a_notes_prose_tells_makes_no_other_patient_of_one_birth_date_and_record_number():  # generated (seed 25)
    # The first visit's banner lost its name; its dictation calls her by her maiden name. Every
    # banner shows one birth date and one record number: one patient. A name a banner prints
    # under the same number is still compared (a label is the record's own word).
    from shared.encounters.identity import Identity, conflicts
    from shared.encounters.text import Span

    first = ("Lakeshore Orthopedic Associates\nOFFICE VISIT\nDOB: 1987-05-07 MRN: 2826399\n"
             "Date of service: 2020-06-16\nCHIEF COMPLAINT\nJoint pain.\nHISTORY OF PRESENT ILLNESS\n"
             "The patient presents with some joint pain in her left elbow.\n")
    prose = ("Anna Morris is a 26-year-old female with a past medical history significant for epilepsy\n"
             "who presents with some joint pain.\nPLAN\nLeft elbow pain.\n- Initiate meloxicam 15 mg once daily.\n")
    second = ("Lakeshore Orthopedic Associates: Clinic Note\nPatient Name | Date of Birth | MRN\n"
              "Anna Howard | 1987-05-07 | 2826399\nDate of service: 2018-08-02\nCHIEF COMPLAINT\nHeadaches.\n"
              "HISTORY OF PRESENT ILLNESS\nShe presents for the evaluation of headaches.\n")
    discovery = _discover(first, prose, second)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 3)]]
    assert not discovery.identity_conflict
    at = Span(1, 0, 1)
    howard = Identity(name=("Anna Howard", at), dob=(dt.date(1987, 5, 7), at), identifier=("2826399", at))
    told = dataclasses.replace(howard, name=("Anna Morris", at), name_from="text")
    assert not conflicts(told, howard) and not conflicts(howard, told)
    assert conflicts(dataclasses.replace(told, name_from="label"), howard)
    assert conflicts(dataclasses.replace(told, identifier=("4410022", at)), howard)  # another record's number
    # One record's number is one patient without a birth date to compare (seed 86); a birth date
    # alone is not enough
    assert not conflicts(dataclasses.replace(told, dob=None), howard)
    assert conflicts(dataclasses.replace(told, identifier=None), howard)


def test_a_banner_table_row_whose_column_bar_ocr_read_as_a_bracket_still_names_the_patient():  # generated (seed 46)
    # OCR read the second "|" of the banner's row as "[" on a scanned visit note, whose
    # dictation calls the patient by another name: the row still gives the name, the birth
    # date and the record number, and the file one patient.
    first = ("Harbor View Internal Medicine\nDepartment of Medicine\n88 Bay Road, Portsmouth, NH 03801\n"
             "Harbor View Internal Medicine: Clinic Note\nPatient: William Russell DOB: 1962-05-03 MRN: 6288503\n"
             "Encounter date: 2019-08-04\nAttending: Dr. Marcus Hill, DO\nCHIEF COMPLAINT\nRight knee injury.\n"
             "HISTORY OF PRESENT ILLNESS\nWilliam Russell is a pleasant 57-year-old male who presents to the clinic.\n")
    second = ("Maple Grove Family Medicine\n410 Elm Street, Springfield, IL 62704\nOFFICE VISIT.\n"
              "Patient Name | Date of Birth | MRN\nWilliam Russell | 05/03/1962 [ 6288503\n"
              "Date of service: 02/16/2023\nAttending: Dr. Elena Novak, MD\nCHIEF COMPLAINT\n"
              "Psoriatic arthritis management.\nHISTORY OF PRESENT ILLNESS\n"
              "Judy Gomez is a 61-year-old female who presents today for management of psoriatic arthritis.\n")
    discovery = _discover(first, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)]]
    assert not discovery.identity_conflict
    page = _read(second, 2, "tesseract")
    assert (page.patient.name[0], page.patient.identifier[0]) == ("William Russell", "6288503")
    assert discovery.encounters[1].patient_dob == dt.date(1962, 5, 3)


def test_a_page_opening_mid_sentence_takes_no_title_from_the_orders_below():  # generated (seeds 44, 47)
    # A visit note's second page carries its plan's sentence on, then lists its orders: "MRI,
    # right knee" is an order, not an imaging report's title, with or without a running head.
    first = ("Cedar Ridge Primary Care\n1200 Ridge Avenue, Boulder, CO 80302\nTel (303) 555-0119\n"
             "Patient: Eve Betterhalf DOB: 1975-05-01 MRN: 444222222\nVisit date: 2023-02-16\n"
             "Author: Dr. James Okoro, MD\nCedar Ridge Primary Care: Progress Note\nHISTORY OF PRESENT ILLNESS\n"
             "The patient reports that she fell off of a tandem bicycle and struck her right knee.\n"
             "ASSESSMENT AND PLAN\nI have recommended that the patient be placed in a brace, and that\n")
    rest = ("the patient attend formal physical therapy to work on her range of motion and strengthening. I advised\n"
            "her to ice her right knee a few times a day to reduce the swelling.\n"
            "ORDERS\nMRI, right knee\nPrescription medication\n2/2\n")
    assert [e.page_ranges for e in _discover(first, rest).encounters] == [[(1, 2)]]
    headed = "Eve Betterhalf  |  MRN 444222222  |  PROGRESS NOTE\n" + rest
    assert [e.page_ranges for e in _discover(first, headed).encounters] == [[(1, 2)]]
    page = _read(rest, 2)
    assert page.title is None
    # A title on a page's first lines is still one
    imaging = _read("MRI, right knee\nClinical history: pain.\n")
    assert imaging.title[0] == ET.IMAGING


def test_the_same_clinics_next_visit_under_the_same_letterhead_and_banner_is_another_document():  # generated (seed 27)
    # Two visits of one patient at one clinic, a scanned blank page between them: the head repeats
    # line for line (the letterhead's address and telephone, the patient's banner), but a page
    # dated outside the document's days is no report's next page; the other service date starts
    # a document.
    def visit(label: str, when: str, title: str, complaint: str) -> str:
        return ("Harbor View Internal Medicine\n88 Bay Road, Portsmouth, NH 03801\nTel (603) 555-0187\n"
                "Patient Name | Date of Birth | MRN\nJeremy Adams | 04/01/1964 | 9411677\n"
                f"{label}: {when}\nAuthor: Dr. Laura Chen, MD\n{title}\nCHIEF COMPLAINT\n{complaint}\n"
                "HISTORY OF PRESENT ILLNESS\nThe patient presents today for follow-up.\n")

    first = visit("Date of service", "07/15/2022", "OFFICE VISIT", "History of depression.")
    second = visit("Encounter date", "12/15/2023", "Harbor View Internal Medicine: Clinic Note",
                   "Emergency room follow-up.")
    discovery = _discover(first, "", second)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(3, 3)]]
    # A report's banner with its own accession number, on its next page, still holds it
    report = ("Harbor View Pathology\n88 Bay Road, Portsmouth, NH 03801\nTel (603) 555-0187\n"
              "Patient: Jeremy Adams DOB: 04/01/1964 MRN: 9411677\nAccession: S22-4471  Collected: 07/15/2022\n")
    pages = [report + "SURGICAL PATHOLOGY REPORT\nDIAGNOSIS\nSkin, left forearm, shave biopsy.\n",
             report + "MICROSCOPIC DESCRIPTION\nSections show a benign compound nevus.\n"]
    assert [e.page_ranges for e in _discover(*pages).encounters] == [[(1, 2)]]


def test_a_running_header_of_name_record_number_and_title_is_no_tables_head_row():  # generated (seeds 51, 53)
    # A report's later pages open with a running header, "name | MRN number | title", whose title
    # says "Patient ..." or "Outpatient ...": the line below is the page's text (a row of vital
    # signs, a sentence with "I" in it), not a banner's values. The header names the patient, and
    # the file is one patient's in one document.
    first = ("Good Health HIE\nMedical Records\n1002 Healthcare Drive, Portland, OR 97266\n"
             "Patient Chart Summary\nPatient: Roy Sanchez\nDOB: 1972-05-31\nMRN: 4728668\n"
             "Document created: 2013-08-15\nALLERGIES AND ADVERSE REACTIONS\nSubstance | Reaction\n"
             "Penicillin | Nausea\nVITAL SIGNS\nDate | Jul 3, 2013 | Aug 14, 2013\n")
    vitals = ("Roy Sanchez  |  MRN 4728668  |  Patient Chart Summary\nBlood Pressure | 132/88 | 128/80\n"
              "Electronically signed by: Dr. Patricia Primary on 2013-08-15\n2/2\n")
    discovery = _discover(first, vitals)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]
    assert not discovery.identity_conflict
    page = _read(vitals, 2)
    assert (page.patient.name[0], page.patient.identifier[0]) == ("Roy Sanchez", "4728668")

    visit = ("Cedar Ridge Primary Care\n1200 Ridge Avenue, Boulder, CO 80302\nPatient: Angela Powell\n"
             "DOB: 07/07/1936\nMRN: 4305875\nVisit date: 10/22/2021\nCedar Ridge Primary Care: Outpatient Visit Note\n"
             "ASSESSMENT AND PLAN\nI explained to him that his pain medication could not be increased for\n")
    rest = ("Angela Powell  |  MRN 4305875  |  Cedar Ridge Primary Care: Outpatient Visit Note\n"
            "this issue and that I would need to refer him to pain management for that, but I did provide him with a "
            "prescription for\nDemerol.\nElectronically signed by: Dr. Laura Chen, MD on 01/05/2022\nPage 2 of 2\n")
    discovery = _discover(visit, rest)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]
    assert not discovery.identity_conflict
    # Below a banner table's own head row, a sentence is no row: its "I"s are no bars OCR misread
    table = ("Maple Grove Family Medicine\nPatient Name | Date of Birth | MRN\n"
             "this issue and that I would need to refer him, but I did provide him with a prescription\n")
    page = _read(table, 1, "tesseract")
    assert page.patient.name is None


def test_a_sentence_after_a_dated_lead_is_no_title():  # generated (seed 54)
    # A visit note's second page reads its results: "Independent review and interpretation of MRI
    # brain, 03/04/2021: The MRI reveals a" is a line of the note (a field, its date, a sentence
    # wrapped on), not an imaging report's title after a facility's name.
    first = ("Cedar Ridge Primary Care\n1200 Ridge Avenue, Boulder, CO 80302\nTel (303) 555-0119\n"
             "Cedar Ridge Primary Care: Clinic Note\nPatient: Sharon Brooks DOB: 05/15/1972 MRN: 7581330\n"
             "Visit date: 03/05/2021\nCHIEF COMPLAINT\nPituitary lesion.\nHISTORY OF PRESENT ILLNESS\n"
             "Bruce Ward is a 52-year-old male with a pituitary lesion. On examination\n")
    rest = ("in the upper or lower extremities.\nEyes\nVisual acuity and eye movements are normal.\n"
            "RESULTS\nLabs reviewed, 03/03/2021: CBC, U&Es, coagulation, and CRP are all normal.\n"
            "Pituitary hormone profile demonstrates a low TSH, all other results were normal.\n"
            "Independent review and interpretation of MRI brain, 03/04/2021: The MRI reveals a\n"
            "pituitary lesion with elevation and compression of the optic chiasm.\nASSESSMENT\n- Pituitary adenoma\n")
    assert [e.page_ranges for e in _discover(first, rest).encounters] == [[(1, 2)]]
    assert _read(rest, 2).title is None
    # A facility's name before a title is still a lead
    headed = _read("Kingsbridge Hospital: Radiology Report\nMRI brain\n")
    assert headed.title[0] == ET.IMAGING


def test_a_banner_row_ocr_broke_still_gives_its_birth_date_and_record_number():  # generated (seed 86)
    # OCR moved the banner row's name off its line on a scanned visit note ("December 3, 1979 |
    # 1376196" under three heads), whose dictation calls the patient by another name: the row's
    # cells still fall under their heads by what they hold, and the next page's running header,
    # with the same record number, is the same patient's.
    first = ("Maple Grove Family Medicine\n410 Elm Street, Springfield, IL 62704\nTel (217) 555-0142\n\n"
             "Patient Name | Date of Birth | MRN\nDecember 3, 1979 | 1376196\n"
             "Date of service: January 8, 2019 ~\n\nAuthor: Dr. James Okoro, MD\n\nTheresa Morgan\n\n"
             "PROGRESS NOTE\n\nCHIEF COMPLAINT\n\nShortness of breath.\n\nHISTORY OF PRESENT ILLNESS\n\n"
             "Alan Butler is a 61-year-old male presenting with complaints of shortness of\nbreath.\n")
    second = ("Theresa Morgan | MRN 1376196 — | PROGRESS NOTE\n\n"
              "' The patient is a 61-year-old male who presents for shortness of breath.\n\n"
              "- Medical Treatment: I recommended the patient continue Protonix.\n")
    discovery = _discover(first, second, engine="tesseract")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]
    assert not discovery.identity_conflict
    page = _read(first, 1, "tesseract")
    assert (page.patient.dob[0], page.patient.identifier[0]) == (dt.date(1979, 12, 3), "1376196")
    # A record number that differs is still another patient's
    other = second.replace("1376196", "7994560")
    assert _discover(first, other, engine="tesseract").identity_conflict


def test_a_sentence_before_a_colon_is_no_facilitys_name():  # generated (seed 59)
    # A scanned visit note's second page: "... see procedure note above: We will arrange for x-ray"
    # ends a sentence of the plan with a colon OCR read there; the words after it are no imaging
    # report's title after a facility's name.
    first = ("Riverbend Cardiology Clinic\n\n55 River Street, Dayton, OH 45402\nTel (937) 555-0123\n\n"
             "Patient: Theresa Morgan\nDOB: 12/03/1979\n\n~ MRN: 1376196\n\nEncounter date: 03/09/2021\n"
             "Author: Dr. Anita Patel, MD\n\nOUTPATIENT VISIT NOTE.\n\n_ CHIEF COMPLAINT\n"
             "Rheumatoid arthritis management.\n\nHISTORY OF PRESENT ILLNESS\n\n"
             "Mr. Nelson is a 72-year-old male who presents today for ongoing management of rheumatoid arthritis.\n")
    rest = ("Theresa Morgan | MRN 1376196 | OUTPATIENT VISIT NOTE\n\nRight knee pain.\n\n"
            "He has right knee. pain and swelling, with pain level 6/10. On exam today, the right knee continues to be hot,\n"
            "which is ongoing inflammation. We performed a fluid aspiration of the right knee today, see procedure note:\n"
            "above. A steroid injection to. the right knee was given today, see procedure note ‘above: We will arrange for x-ray\n"
            "of the right knee and refer him to physical therapy.\n\n"
            "Electronically signed by: Dr. Anita Patel, MD on 10/06/2021\n")
    assert [e.page_ranges for e in _discover(first, rest, engine="tesseract").encounters] == [[(1, 2)]]
    assert _read(rest, 2, "tesseract").title is None
    # A facility's name of several words before its title is still a lead
    lead = "Good Health Hospital Department of Internal Medicine: Discharge Summary\nAdmitted 01/02/2020\n"
    assert _read(lead).title[0] == ET.INPATIENT


def test_a_plans_item_whose_sentence_ocr_ran_on_is_no_title():  # generated (seed 66)
    # "- Specialist Referrals: Referral to physical therapy." on a scanned visit note's second page,
    # its bullet read as "_ >" and a mark after it as "Lo": an item of the plan, no referral
    # letter's title.
    first = ("Maple Grove Family Medicine\n410 Elm Street, Springfield, IL 62704\nTel (217) 555-0142\n"
             "Patient: Carolyn Jones DOB: 1971-02-11 MRN: 8612988\nDate of service: 2022-03-14\n"
             "PROGRESS NOTE\nCHIEF COMPLAINT\nLow back pain.\nHISTORY OF PRESENT ILLNESS\n"
             "Mr. Logan Walker is a 58-year-old male who presents today for low back pain.\n")
    rest = ("Carolyn Jones | MRN 8612988 | PROGRESS NOTE\n\n- ASSESSMENT AND PLAN . '\n"
            "Mr. Logan Walker is a 58-year-old male with a past medical history of diabetes type 2, hypertension,\n"
            "and osteoarthritis, who presents today = low back pain. ,\nLumbar strain.\n"
            "- Medical Reasoning: He injured his lower back while moving heavy boxes.\n"
            "- Medical Treatment: Initiate meloxicam 15 mg once a day.\n"
            "_ > Specialist Referrals: Referral to physical therapy. Lo\n"
            "- Patient Education and Counseling: He was encouraged to continue icing the area.\n")
    assert [e.page_ranges for e in _discover(first, rest, engine="tesseract").encounters] == [[(1, 2)]]
    assert _read(rest, 2, "tesseract").title is None
    # A letter's title is still one
    letter = _read("St. Mary's Hospital\nReferral Letter\nDear Dr. Hill,\n")
    assert letter.title[0] == ET.REFERRAL


def test_a_clinic_a_sentence_names_near_a_pages_top_is_no_letterhead():  # generated (seed 111)
    # A visit note's second page opens with its plan's prose: "a referral to our Hand Clinic" in
    # its fourth line is the text's, not another facility's letterhead.
    first = ("Riverbend Cardiology Clinic\n55 River Street, Dayton, OH 45402\nTel (937) 555-0123\n"
             "OUTPATIENT VISIT NOTE\nPatient Name | Date of Birth | MRN\nTheresa Morgan | 1979-12-03 | 1376196\n"
             "Visit date: 2019-12-11\nCHIEF COMPLAINT\nNumbness and tingling of both hands.\n"
             "HISTORY OF PRESENT ILLNESS\nThe patient complains of numbness, tingling, and pain in both hands.\n")
    rest = ("Diagnosis discussed with patient, I explained that the nerves in his wrists are aggravated by the past trauma\n"
            "and tingling. Further testing is indicated to measure the responsiveness of the nerves to determine where the nerve\n"
            "irritation is coming from. We will plan for a follow-up visit after the EMG testing is performed. If still symptomatic,\n"
            "consider a referral to our Hand Clinic possibly for injections or carpal tunnel release surgery. We could also refer to an\n"
            "orthopedist for the same treatment.\nINSTRUCTIONS\nFollow-up after EMG testing.\n"
            "Electronically signed by: Dr. Laura Chen, MD on 2020-03-28\n2/2\nPrinted 2020-03-28 Riverbend Cardiology Clinic\n")
    assert [e.page_ranges for e in _discover(first, rest).encounters] == [[(1, 2)]]
    assert _read(rest, 2).letterhead_facility is None
    # A letterhead's line is still one, a short lead before it included
    for head in ("Harbor View Hospital\n", "Seen at Harbor View Hospital\n"):
        page = _read(head + "Discharge Summary\n")
        assert page.letterhead_facility == "Harbor View Hospital"
