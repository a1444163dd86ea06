"""The offline heuristic encounter provider, on hand-written page texts."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest

from shared.encounters import HeuristicEncounters
from shared.models import Box, Discovery, EncounterType, LayoutBlock, Manifest, PageText, Timing

ET = EncounterType


def _pages(*texts: str) -> list[PageText]:
    return [PageText(page_number=i, text=text, engine="native") for i, text in enumerate(texts, 1)]


def _discover(*texts: str, date_order: str = "dmy") -> Discovery:
    # Most fixtures here are Australian documents whose few numeric dates read both ways
    # (05/03/2024): they say so, as a deployment there would (DATE_ORDER=dmy). The tests of
    # the order itself use "auto", the default.
    pages = _pages(*texts)
    discovery = HeuristicEncounters(date_order=date_order).discover(pages)
    # Every result must make a valid manifest.
    Manifest.build(uuid.uuid4(), len(pages), discovery)
    return discovery


def _evidence(discovery: Discovery, index: int, field: str, texts: tuple[str, ...]) -> str | None:
    for item in discovery.encounters[index].evidence:
        if item.field == field:
            return texts[item.page_number - 1][item.start : item.end]
    return None


CLINIC_1 = """Riverside Medical Centre
12 Wharf Road, Riverside
CLINIC VISIT NOTE
Patient: Jane Example   DOB: 02/09/1971
Date of visit: 05/03/2024
Clinician: Dr Priya Raman
Reason for visit: review of hypertension. BP 142/90.
"""
CLINIC_1_CONT = """Riverside Medical Centre - Jane Example - continued
Plan: increase perindopril. Follow-up with GP in two weeks.
Signed: Dr Priya Raman
"""
GP_2 = """Northgate Family Clinic
GP FOLLOW-UP CONSULTATION
Patient: Jane Example   DOB: 02/09/1971
Date of service: 19 March 2024
Seen by: Dr Thomas Quigley
Blood pressure improved on higher dose. Continue current treatment.
"""

DISCHARGE = (
    """Lakeside General Hospital
DISCHARGE SUMMARY
Patient: Jane Example   DOB: 02/09/1971
Date of admission: 11/02/2024
Attending: Dr Samuel Okafor
Presented with fever and cough, treated for pneumonia.
Page 1 of 3
""",
    """Lakeside General Hospital - DISCHARGE SUMMARY
Page 2 of 3
Hospital course: IV antibiotics, switched to oral on day three.
Date of procedure: 13/02/2024 bronchoscopy, no endobronchial lesion.
""",
    """Lakeside General Hospital - Discharge Summary
Discharge medications: amoxicillin 1 g three times daily.
Date of discharge: 16/02/2024
Page 3 of 3
""",
)


# --- splitting -----------------------------------------------------------------------------


def test_two_visits_on_different_dates_are_two_encounters() -> None:
    texts = (CLINIC_1, CLINIC_1_CONT, GP_2)
    discovery = _discover(*texts)

    assert discovery.provider == "heuristic"
    assert discovery.model is None
    assert (discovery.input_tokens, discovery.output_tokens) == (0, 0)
    first, second = discovery.encounters
    assert first.page_ranges == [(1, 2)]
    assert second.page_ranges == [(3, 3)]
    assert (first.date_start, first.date_end) == (dt.date(2024, 3, 5), dt.date(2024, 3, 5))
    assert (second.date_start, second.date_end) == (dt.date(2024, 3, 19), dt.date(2024, 3, 19))
    assert first.encounter_type == second.encounter_type == ET.OUTPATIENT
    assert first.provider == "Dr Priya Raman"
    assert first.facility == "Riverside Medical Centre"
    assert second.provider == "Dr Thomas Quigley"
    assert second.facility == "Northgate Family Clinic"
    assert first.timing == second.timing == Timing.HAPPENED


def test_same_title_and_clinic_but_a_new_visit_date_splits() -> None:
    note = "Riverside Medical Centre\nCLINIC VISIT NOTE\nDate of visit: {}\nReviewed blood pressure today.\n"
    discovery = _discover(note.format("05/03/2024"), note.format("02/04/2024"))

    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)]]
    assert [e.date_start for e in discovery.encounters] == [dt.date(2024, 3, 5), dt.date(2024, 4, 2)]


def test_page_one_of_n_restarting_splits_even_without_other_cues() -> None:
    page = "Progress notes for the patient, unchanged plan and medications.\nPage {} of {}\n"
    discovery = _discover(page.format(1, 2), page.format(2, 2), page.format(1, 1))

    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 3)]]


def test_a_page_count_ocr_read_with_letters_it_cannot_be_is_no_count_and_no_crash() -> None:
    # Found on the generated family (development seed 81, a scanned page): the page count's
    # patterns are case-insensitive, so "Page L" and "page i" matched them, and reading "L" as a
    # digit raised ValueError out of discovery. Only the letters OCR reads for digits ("I", "l",
    # "O") are read as digits.
    note = "Progress notes for the patient, unchanged plan and medications.\n"
    discovery = _discover(note + "Page L of 2\n", note + "page i / 2\n", note + "Page 2 of 2\n")
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 3)]]
    assert _discover(note + "Page I of 2\n", note + "Page 2 of 2\n", note + "Page l of l\n").encounters[1].page_ranges \
        == [(3, 3)]  # "I" and "l" are still the 1s OCR reads them for


def test_a_new_document_title_splits() -> None:
    lab = "PATHOLOGY REPORT\nHarbour Pathology\nCollected: 04/03/2024\nReported: 05/03/2024\nHbA1c 7.4 %\n"
    discovery = _discover(CLINIC_1, lab)

    assert [e.encounter_type for e in discovery.encounters] == [ET.OUTPATIENT, ET.LAB]
    assert discovery.encounters[1].date_start == dt.date(2024, 3, 4)
    assert discovery.encounters[1].date_end is None
    assert discovery.encounters[1].facility == "Harbour Pathology"


def test_a_page_after_page_n_of_n_starts_a_new_encounter() -> None:
    # The untitled form after a two-page note would otherwise join it: nothing on it says "new".
    note = "Riverside Medical Centre\nCLINIC VISIT NOTE\nDate of visit: 05/03/2024\nBlood pressure reviewed.\nPage {} of 2\n"
    form = "Name and address details held on file for the practice records team.\n"
    discovery = _discover(note.format(1), note.format(2), form)

    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 3)]]
    assert discovery.encounters[1].date_start is None


def test_a_salutation_opens_a_new_letter() -> None:
    form = "Patient details held on file for the records team.\nAddress and next of kin confirmed.\n"
    letter = (
        "Date: 12 September 2023\n\nDr Hannah Reuben\n. Dear Dr Reuben,\n"
        "Thank you for seeing this man who attended the emergency department with chest pain.\n"
    )
    discovery = _discover(form, letter)

    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)]]
    assert discovery.encounters[0].date_start is None  # the letter's date stays with the letter
    assert discovery.encounters[1].encounter_type == ET.REFERRAL  # a letter, not the ED visit it mentions
    assert discovery.encounters[1].date_start == dt.date(2023, 9, 12)


def test_a_letterhead_after_untitled_pages_starts_a_new_document() -> None:
    form = "Name, address and next of kin details are held on file here.\n"
    note = "Millbrook Medical Practice\nReviewed knee pain, improving with physiotherapy.\n"
    discovery = _discover(form, note)

    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)]]


def test_an_addressee_line_is_not_a_title() -> None:
    letter = (
        "Millbrook Medical Practice\nDate: 12 September 2023\nDr Hannah Reuben\n"
        "Cardiology Outpatients, Kingsbridge Hospital\nDear Dr Reuben,\nI would value your opinion.\n"
    )
    assert _discover(letter).encounters[0].encounter_type == ET.REFERRAL


def test_a_stray_dash_before_an_ocr_date_is_ignored() -> None:
    discovery = _discover("GP VISIT\nVisit date: -19/10/2023\nKnee pain for three months.\n")
    assert discovery.encounters[0].date_start == dt.date(2023, 10, 19)


def test_a_change_of_facility_in_the_letterhead_splits() -> None:
    a = "Riverside Medical Centre\nNotes from the review today, blood pressure stable and well.\n"
    b = "Lakeside General Hospital\nNotes from the review today, blood pressure stable and well.\n"
    discovery = _discover(a, b)

    assert [e.facility for e in discovery.encounters] == ["Riverside Medical Centre", "Lakeside General Hospital"]


def test_discharge_summary_over_three_pages_is_one_inpatient_stay() -> None:
    discovery = _discover(*DISCHARGE)

    (stay,) = discovery.encounters
    assert stay.encounter_type == ET.INPATIENT
    assert stay.page_ranges == [(1, 3)]
    assert stay.date_start == dt.date(2024, 2, 11)
    assert stay.date_end == dt.date(2024, 2, 16)
    assert stay.date_start < stay.date_end
    assert stay.provider == "Dr Samuel Okafor"
    assert stay.facility == "Lakeside General Hospital"
    assert _evidence(discovery, 0, "date_start", DISCHARGE) == "11/02/2024"
    assert _evidence(discovery, 0, "date_end", DISCHARGE) == "16/02/2024"
    assert _evidence(discovery, 0, "encounter_type", DISCHARGE) == "DISCHARGE SUMMARY"


@pytest.mark.parametrize(
    "first, second",
    [
        ("Clinic note, review of asthma control and inhaler technique.\n", "(continued)\nPlan: continue preventer.\n"),
        ("Clinic note, review of asthma control.\nContinued over\n", "Plan: continue preventer and review.\n"),
        (
            "Clinic note, review of asthma control.\nPage 1 of 2\n",
            "Page 2 of 2\nPlan: continue preventer and review.\n",
        ),
    ],
)
def test_continuation_pages_join_the_previous_encounter(first: str, second: str) -> None:
    discovery = _discover(first, second)

    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


def test_a_continuation_marker_beats_a_repeated_title_and_date() -> None:
    page2 = "DISCHARGE SUMMARY (continued)\nDate of visit: 20/02/2024 physiotherapy review on the ward.\n"
    discovery = _discover(DISCHARGE[0], page2)

    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


def test_continued_in_body_text_is_not_a_continuation_marker() -> None:
    meds = "MEDICATION LIST\nMetformin 1 g twice daily, continued at the same dose since last year\nPerindopril 10 mg\n"
    discovery = _discover(CLINIC_1, meds)

    assert [e.encounter_type for e in discovery.encounters] == [ET.OUTPATIENT, ET.MEDICATION_LIST]


def test_a_page_without_cues_joins_the_previous_encounter() -> None:
    discovery = _discover(CLINIC_1, "Examination unremarkable. Heart sounds dual, chest clear.\n")

    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)]]


# --- blank pages ---------------------------------------------------------------------------


def test_blank_pages_belong_to_no_encounter_and_do_not_break_one() -> None:
    pages = _pages(CLINIC_1, "   \n  . ,\n", CLINIC_1_CONT, "")
    discovery = HeuristicEncounters().discover(pages)
    manifest = Manifest.build(uuid.uuid4(), len(pages), discovery)

    (visit,) = discovery.encounters
    assert visit.page_ranges == [(1, 1), (3, 3)]
    assert manifest.page_assignments == {1: 0, 2: None, 3: 0, 4: None}


def test_a_leading_blank_page_is_skipped() -> None:
    discovery = _discover("", GP_2)

    assert [e.page_ranges for e in discovery.encounters] == [[(2, 2)]]


def test_only_blank_pages_give_no_encounters() -> None:
    discovery = _discover("", "  \n", "~ ' ,")

    assert discovery.encounters == []


def test_any_readable_text_gives_at_least_one_encounter() -> None:
    discovery = _discover("Some words written here without any clinical cue whatsoever.")

    (encounter,) = discovery.encounters
    assert encounter.encounter_type == ET.OTHER
    assert encounter.date_start is None
    assert 0 <= encounter.confidence <= 1


# --- dates ---------------------------------------------------------------------------------


def test_a_birth_date_alone_gives_no_date() -> None:
    text = "Patient: Jane Example\nDOB: 02/09/1971\nDate of birth 2 September 1971\nNotes about the patient's asthma.\n"
    (encounter,) = _discover(text).encounters

    assert encounter.date_start is None
    assert encounter.date_end is None


def test_a_birth_date_on_the_same_line_as_the_visit_date_is_not_used() -> None:
    text = "CLINIC NOTE\nDOB: 02/09/1971 Date of visit: 05/03/2024 Patient: Jane Example\nReview today.\n"
    (encounter,) = _discover(text).encounters

    assert encounter.date_start == dt.date(2024, 3, 5)


@pytest.mark.parametrize("bad", ["31/02/2024", "30/02/2023", "00/03/2024", "32/01/2024", "15/15/2024", "12/05/1812"])
def test_impossible_dates_are_not_accepted(bad: str) -> None:
    text = f"CLINIC VISIT NOTE\nDate of visit: {bad}\nReview of asthma and medications.\n"
    (encounter,) = _discover(text).encounters

    assert encounter.date_start is None
    assert encounter.date_end is None


def test_a_leap_day_is_a_real_date() -> None:
    (encounter,) = _discover("CLINIC VISIT NOTE\nDate of visit: 29/02/2024\nReview today.\n").encounters

    assert encounter.date_start == dt.date(2024, 2, 29)


@pytest.mark.parametrize(
    "written",
    [
        "2024-03-05",
        "2024/03/05",
        "05/03/2024",
        "5/3/2024",
        "05-03-2024",
        "05.03.2024",
        "05/03/24",
        "March 5, 2024",
        "Mar 5 2024",
        "5 March 2024",
        "5th March, 2024",
        "5-Mar-2024",
        "05-MAR-2024",
        "05 / 03 / 2024",
        "2024 - 03 - 05",
        "O5/O3/2O24",
    ],
)
def test_date_formats(written: str) -> None:
    text = f"CLINIC VISIT NOTE\nDate of visit: {written}\nReview of asthma and medications.\n"
    discovery = _discover(text)

    (encounter,) = discovery.encounters
    assert encounter.date_start == dt.date(2024, 3, 5)
    assert _evidence(discovery, 0, "date_start", (text,)) == written


def test_numeric_dates_are_month_first_only_when_the_document_shows_it() -> None:
    us = "Clinic Visit Note\nDate of visit: 03/05/2024\nPrevious labs 03/15/2024 reviewed.\n"
    au = "Clinic Visit Note\nDate of visit: 03/05/2024\nPrevious labs 15/03/2024 reviewed.\n"

    assert _discover(us, date_order="auto").encounters[0].date_start == dt.date(2024, 3, 5)
    assert _discover(au, date_order="auto").encounters[0].date_start == dt.date(2024, 5, 3)


def test_date_roles() -> None:
    text = (
        "Lakeside General Hospital\nDischarge Summary\n"
        "Admitted: 01/03/2024   Discharged: 07/03/2024\n"
        "Printed 09/03/2024\nFollow-up appointment on 21/03/2024 in clinic.\n"
        "HbA1c was 8.1% on 12/12/2023.\n"
    )
    (stay,) = _discover(text).encounters

    assert (stay.date_start, stay.date_end) == (dt.date(2024, 3, 1), dt.date(2024, 3, 7))


def test_collected_before_reported() -> None:
    text = "PATHOLOGY REPORT\nReported: 05/03/2024\nCollected: 04/03/2024\nSodium 139\n"
    (lab,) = _discover(text).encounters

    assert lab.encounter_type == ET.LAB
    assert lab.date_start == dt.date(2024, 3, 4)
    assert lab.date_end is None


def test_a_label_on_the_line_above_a_date() -> None:
    text = "Discharge Summary\nDate of admission\n11/02/2024\nDate of discharge\n16/02/2024\nPneumonia treated.\n"
    (stay,) = _discover(text).encounters

    assert (stay.date_start, stay.date_end) == (dt.date(2024, 2, 11), dt.date(2024, 2, 16))


def test_unlabelled_body_dates_are_not_used() -> None:
    text = "\n".join(
        ["Clinic note"] + ["Review of symptoms and examination findings."] * 10 + ["Last HbA1c 12/01/2024."]
    )
    (encounter,) = _discover(text).encounters

    assert encounter.date_start is None


def test_a_letter_date_in_the_letterhead_is_used() -> None:
    text = (
        "Elm Grove Medical Centre\n12 April 2024\nDear Dr Helen Chen,\n"
        "Thank you for seeing Jane.\nYours sincerely,\nDr Thomas Quigley\n"
    )
    discovery = _discover(text)

    (letter,) = discovery.encounters
    assert letter.date_start == dt.date(2024, 4, 12)
    assert letter.provider == "Dr Thomas Quigley"  # the signer, not the addressee
    assert letter.encounter_type == ET.REFERRAL


def test_an_appointment_letter_is_planned() -> None:
    text = (
        "Eastside Cardiology Clinic\nAPPOINTMENT LETTER\nDear Ms Example,\n"
        "Your appointment is booked for 20/05/2024 at 10:30 with Dr Helen Chen.\nPlease arrive early.\n"
    )
    (visit,) = _discover(text).encounters

    assert visit.timing == Timing.PLANNED
    assert visit.date_start == dt.date(2024, 5, 20)
    assert visit.encounter_type == ET.OUTPATIENT


def test_a_discharge_date_alone_sets_only_the_end() -> None:
    (stay,) = _discover("Discharge Summary\nDischarged: 16/02/2024\nPneumonia treated.\n").encounters

    assert (stay.date_start, stay.date_end) == (None, dt.date(2024, 2, 16))


def test_a_discharge_date_before_admission_is_dropped() -> None:
    text = "Discharge Summary\nAdmitted: 11/02/2024\nDischarged: 01/02/2024\nPneumonia treated.\n"
    (stay,) = _discover(text).encounters

    assert stay.date_start == dt.date(2024, 2, 11)
    assert stay.date_end is None


# --- classification, provider, facility ------------------------------------------------------


@pytest.mark.parametrize(
    "title, kind",
    [
        ("DISCHARGE SUMMARY", ET.INPATIENT),
        ("Emergency Department Discharge Letter", ET.EMERGENCY),
        ("Clinic Visit Note", ET.OUTPATIENT),
        ("Telehealth Consultation", ET.TELEHEALTH),
        ("Pathology Report", ET.LAB),
        ("Radiology Report", ET.IMAGING),
        ("CT Abdomen and Pelvis", ET.IMAGING),
        ("Operation Note", ET.PROCEDURE),
        ("Medication List", ET.MEDICATION_LIST),
        ("Referral Letter", ET.REFERRAL),
        ("Letter to the GP", ET.REFERRAL),
        ("Patient Registration Form", ET.ADMINISTRATIVE),
        ("Insurance Claim Form", ET.ADMINISTRATIVE),
    ],
)
def test_titles_decide_the_type(title: str, kind: EncounterType) -> None:
    text = f"Lakeside General Hospital\n{title}\nPatient: Jane Example\nFindings and notes follow here.\n"
    discovery = _discover(text)

    assert discovery.encounters[0].encounter_type == kind
    assert _evidence(discovery, 0, "encounter_type", (text,))


@pytest.mark.parametrize(
    "body, kind",
    [
        ("She was admitted to the ward and discharged home after three days on the ward.", ET.INPATIENT),
        ("Triage category 3 in the emergency department, seen in ED and sent home.", ET.EMERGENCY),
        ("Specimen collected this morning, results within the reference range.", ET.LAB),
        ("Ultrasound of the liver and MRI of the spine were reviewed.", ET.IMAGING),
        ("Seen in clinic for a follow-up visit with her GP.", ET.OUTPATIENT),
        ("Nothing in this text names any kind of healthcare event.", ET.OTHER),
    ],
)
def test_keywords_decide_the_type_without_a_title(body: str, kind: EncounterType) -> None:
    assert _discover(body).encounters[0].encounter_type == kind


@pytest.mark.parametrize(
    "line, provider",
    [
        ("Provider: Jane Smith", "Jane Smith"),
        ("Attending: Dr Samuel Okafor", "Dr Samuel Okafor"),
        ("Clinician: Dr A. Nguyen", "Dr A. Nguyen"),
        ("Seen by: Dr Thomas Quigley (General Practitioner)", "Dr Thomas Quigley"),
        ("Consultant Cardiologist Dr Helen Chen", "Dr Helen Chen"),
        ("Reviewed today by Dr Priya Raman in clinic", "Dr Priya Raman"),
    ],
)
def test_provider(line: str, provider: str) -> None:
    text = f"Clinic Visit Note\n{line}\nReview of blood pressure today.\n"
    discovery = _discover(text)

    assert discovery.encounters[0].provider == provider
    assert _evidence(discovery, 0, "provider", (text,)) == provider


def test_an_addressee_is_not_the_provider() -> None:
    (letter,) = _discover("Referral Letter\nDear Dr Helen Chen,\nPlease see this patient.\n").encounters

    assert letter.provider is None


@pytest.mark.parametrize(
    "line, facility",
    [
        ("Facility: Riverside Medical Centre", "Riverside Medical Centre"),
        ("ST VINCENT'S HOSPITAL", "ST VINCENT'S HOSPITAL"),
        ("Seen at Bayside Medical Center today.", "Bayside Medical Center"),
        ("Harbour Pathology", "Harbour Pathology"),
        ("The Northgate Family Clinic", "Northgate Family Clinic"),
    ],
)
def test_facility(line: str, facility: str) -> None:
    text = f"{line}\nClinic Visit Note\nReview of blood pressure today.\n"
    discovery = _discover(text)

    assert discovery.encounters[0].facility == facility
    assert _evidence(discovery, 0, "facility", (text,)) == facility


def test_ocr_noise_around_markers_and_dates() -> None:
    page1 = "’ Lakeside General Hospital\nDISCHARGE SUMMARY .\nAdmitted : 2024 - 02 - 11 Ward: 6 East\nPage 1 of 2\n"
    page2 = "Lakeside Genera! Hospital\nPage ¢ 2 of 2\nDischarged: l6/O2/2024 .\n"
    (stay,) = _discover(page1, page2).encounters

    assert stay.page_ranges == [(1, 2)]
    assert (stay.date_start, stay.date_end) == (dt.date(2024, 2, 11), dt.date(2024, 2, 16))


def test_evidence_and_confidence() -> None:
    texts = (CLINIC_1, CLINIC_1_CONT, GP_2)
    discovery = _discover(*texts)

    for encounter in discovery.encounters:
        fields = {e.field for e in encounter.evidence}
        # The banners show a name and a birth date (no identifier): those are evidenced too.
        assert fields == {"date_start", "date_end", "provider", "facility", "encounter_type", "patient_name", "patient_dob"}
        for item in encounter.evidence:
            assert item.page_number in encounter.pages()
            assert 0 <= item.start < item.end <= len(texts[item.page_number - 1])
        assert 0.5 < encounter.confidence <= 1
    bare = _discover("Some words written here without any clinical cue whatsoever.").encounters[0]
    assert bare.confidence < discovery.encounters[0].confidence


# --- determinism and validity -----------------------------------------------------------------


def test_deterministic_and_independent_of_input_order() -> None:
    pages = _pages(CLINIC_1, CLINIC_1_CONT, GP_2, "", *DISCHARGE)
    provider = HeuristicEncounters()
    expected = provider.discover(pages).model_dump()

    shuffled = list(pages)
    random.Random(7).shuffle(shuffled)
    assert provider.discover(pages).model_dump() == expected
    assert provider.discover(shuffled).model_dump() == expected
    assert HeuristicEncounters().discover(pages).model_dump() == expected


def test_mixed_document_makes_a_valid_manifest() -> None:
    texts = (CLINIC_1, CLINIC_1_CONT, GP_2, "", *DISCHARGE)
    pages = _pages(*texts)
    discovery = HeuristicEncounters().discover(pages)
    manifest = Manifest.build(uuid.uuid4(), len(pages), discovery)

    assert [e.encounter_type for e in manifest.encounters] == [ET.OUTPATIENT, ET.OUTPATIENT, ET.INPATIENT]
    assert manifest.page_assignments == {1: 0, 2: 0, 3: 1, 4: None, 5: 2, 6: 2, 7: 2}


def test_discovery_writes_no_text_anywhere(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    canary = "Zebediah Canarywood"
    caplog.set_level("DEBUG")

    _discover(f"CLINIC VISIT NOTE\nPatient: {canary}\nDate of visit: 05/03/2024\n", "")

    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    assert canary not in caplog.text


# --- printed EHR documents (issue 14) --------------------------------------------------------

VISIT_TABLE_BANNER = """Maple Grove Family Medicine
410 Elm Street, Springfield, IL 62704
OFFICE VISIT
Patient Name | Date of Birth | MRN
Martha Collins | 03/14/1968 | 4471902
CHIEF COMPLAINT
Annual exam.
HISTORY OF PRESENT ILLNESS
Martha is a 50-year-old female who presents for her annual exam and feels well today.
"""

NOTE_CREATED = """Community Health and Hospitals
PROGRESS NOTE
Patient: Martha Collins    DOB: 03/14/1968    MRN: 4471902
Document created: 05/02/2019
CHIEF COMPLAINT
Annual exam and blood pressure review today.
"""


def _visit(name: str, dob: str, mrn: str, day: str) -> str:
    return f"""Maple Grove Family Medicine
410 Elm Street, Springfield, IL 62704
OFFICE VISIT
Patient: {name}    DOB: {dob}    MRN: {mrn}
Date of service: {day}
CHIEF COMPLAINT
Follow-up of hypertension. Blood pressure controlled on lisinopril, no side effects reported.
"""


FAX_COVER = """FAX
To: Records Department    Fax: (555) 555-0100
From: Maple Grove Family Medicine    Fax: (217) 555-0142
Date: 06/01/2019
Pages: 3 (including cover)
Re: requested medical records
CONFIDENTIALITY NOTICE: This facsimile contains privileged and confidential
information intended only for the addressee. If you received it in error,
please notify the sender and destroy all copies.
"""


def test_a_birth_date_in_a_banner_table_is_never_the_encounter_date():
    discovery = _discover(VISIT_TABLE_BANNER)
    (encounter,) = discovery.encounters
    assert encounter.date_start is None and encounter.date_end is None


def test_a_document_created_date_is_never_the_encounter_date():
    (encounter,) = _discover(NOTE_CREATED).encounters
    assert encounter.date_start is None


def test_a_change_of_patient_banner_starts_an_encounter():
    # Same clinic, same title, same day: only the banner says these are two records.
    discovery = _discover(
        _visit("Martha Collins", "03/14/1968", "4471902", "04/02/2019"),
        _visit("Andrew Perez", "11/02/1957", "5530117", "04/02/2019"),
    )
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 1)], [(2, 2)]]


def test_a_fax_cover_sheet_belongs_to_no_encounter():
    discovery = _discover(FAX_COVER, _visit("Martha Collins", "03/14/1968", "4471902", "04/02/2019"))
    assert [e.page_ranges for e in discovery.encounters] == [[(2, 2)]]


def test_a_birth_date_printed_alone_in_the_banner_is_never_the_encounter_date():
    # The banner's DOB is labelled once; the same date printed bare in the letterhead is still a birth date.
    page = """Maple Grove Family Medicine
Martha Collins  1968-03-14
OFFICE VISIT
Patient: Martha Collins    DOB: 1968-03-14
Reason for visit: annual exam, feels well, no complaints today.
"""
    (encounter,) = _discover(page).encounters
    assert encounter.date_start is None and "no_date" in encounter.review_reasons


def test_fax_created_signed_and_previous_visit_dates_are_never_encounter_dates():
    page = """06/01/2019 14:22  FROM: (217) 555-0142  TO: (555) 555-0100  P. 2/3
Maple Grove Family Medicine
OFFICE VISIT
Patient: Martha Collins    DOB: 03/14/1968    MRN: 4471902
Document created: 05/30/2019
Previous visit: 01/15/2019
Reason for visit: annual exam, feels well, no complaints today.
Electronically signed by: Dr. Laura Chen, MD on 05/30/2019
"""
    (encounter,) = _discover(page).encounters
    assert (encounter.date_start, encounter.date_end) == (None, None)


def test_a_service_date_range_gives_start_and_end():
    page = _visit("Martha Collins", "03/14/1968", "4471902", "09/09/2012 - 09/16/2012")
    (encounter,) = _discover(page).encounters
    assert (encounter.date_start, encounter.date_end) == (dt.date(2012, 9, 9), dt.date(2012, 9, 16))


def _untitled(first_heading: str, body: str, footer: str = "") -> str:
    return f"{first_heading}\n{body}\nPLAN\nContinue current treatment and review results when available.\n{footer}"


def test_the_section_sequence_starting_again_starts_a_weakly_bounded_encounter():
    # No titles, no banners, no page numbers: only the headings say a second note begins.
    pages = (
        _untitled("CHIEF COMPLAINT", "Knee pain after a fall while hiking last weekend."),
        "HISTORY\nThe pain is worse on stairs and better with rest and ice.\n",
        _untitled("CHIEF COMPLAINT", "Follow-up of diabetes, sugars are well controlled."),
    )
    discovery = _discover(*pages)
    assert [e.page_ranges for e in discovery.encounters] == [[(1, 2)], [(3, 3)]]
    assert all("weak_boundary" in e.review_reasons for e in discovery.encounters)


def test_a_changed_running_footer_starts_an_encounter():
    footer_a = "Printed 05/06/2019 Maple Grove Family Medicine"
    footer_b = "Harbor View Internal Medicine - Confidential patient information"
    pages = (
        _untitled("ASSESSMENT", "Stable angina, no change to medication.", footer_a),
        "Continued counselling on diet and exercise for weight loss.\n" + footer_a,
        "Review of labs shows normal renal function and electrolytes.\n" + footer_b,
    )
    assert [e.page_ranges for e in _discover(*pages).encounters] == [[(1, 2)], [(3, 3)]]


def test_the_same_patient_printed_differently_is_no_conflict():
    # "Collins, Martha", a day-first reading of the same birth date, an OCR slip in the MRN.
    second = """Cedar Ridge Primary Care
1200 Ridge Avenue, Boulder, CO 80302
PROGRESS NOTE
Patient: Collins, Martha    DOB: 14/03/1968    MRN: 447I902
Date of service: 14/05/2019
Seen for a cough that started a week ago, no fever, chest clear.
"""
    discovery = _discover(_visit("Martha Collins", "03/14/1968", "4471902", "04/02/2019"), second)
    assert len(discovery.encounters) == 2 and not discovery.identity_conflict
    assert not any("conflicting_identity" in e.review_reasons for e in discovery.encounters)


def test_two_patients_in_one_file_are_flagged_and_need_review():
    pages = _pages(
        _visit("Martha Collins", "03/14/1968", "4471902", "04/02/2019"),
        _visit("Andrew Perez", "11/02/1957", "5530117", "05/02/2019"),
    )
    discovery = HeuristicEncounters().discover(pages)
    manifest = Manifest.build(uuid.uuid4(), 2, discovery, pages)
    assert discovery.identity_conflict and manifest.identity_conflict and manifest.needs_review
    assert [(e.patient_name, e.patient_dob, e.patient_identifier) for e in discovery.encounters] == [
        ("Martha Collins", dt.date(1968, 3, 14), "4471902"),
        ("Andrew Perez", dt.date(1957, 11, 2), "5530117"),
    ]
    assert all(e.needs_review and "conflicting_identity" in e.review_reasons for e in discovery.encounters)


def test_identity_evidence_spans_point_at_the_banner():
    text = _visit("Martha Collins", "03/14/1968", "4471902", "04/02/2019")
    discovery = _discover(text)
    assert _evidence(discovery, 0, "patient_name", (text,)) == "Martha Collins"
    assert _evidence(discovery, 0, "patient_dob", (text,)) == "03/14/1968"
    assert _evidence(discovery, 0, "patient_identifier", (text,)) == "4471902"


def test_low_ocr_confidence_needs_review_and_lowers_confidence():
    text = _visit("Martha Collins", "03/14/1968", "4471902", "04/02/2019")
    clear = HeuristicEncounters().discover([PageText(page_number=1, text=text, engine="tesseract", confidence=0.93)])
    murky = HeuristicEncounters().discover([PageText(page_number=1, text=text, engine="tesseract", confidence=0.41)])
    assert not clear.encounters[0].needs_review
    assert murky.encounters[0].review_reasons == ["low_ocr_confidence"]
    assert murky.encounters[0].confidence < clear.encounters[0].confidence


SUMMARY_OF_CARE = """Good Health HIE
1002 Healthcare Drive, Portland, OR 97266
CONTINUITY OF CARE DOCUMENT
Patient: Eve Betterhalf    DOB: 05/01/1975    MRN: 444222222
ENCOUNTERS
Encounter | Performer | Location | Date
Office visit | Dr. Henry Seven | Good Health Clinic | 06/15/2013
Emergency visit | Dr. Anita Patel | Community Hospital | 03/02/2012
RESULTS
Test | Result | Date
Hemoglobin A1c | 6.9 % | 07/31/2013
"""


def test_dates_in_the_rows_of_a_table_are_history_not_the_encounter_date():
    # A summary of care lists past encounters and results; it is no encounter of those dates.
    (encounter,) = _discover(SUMMARY_OF_CARE).encounters
    assert (encounter.date_start, encounter.date_end) == (None, None)


# Dates a document prints that are not its encounter's: each of these, on a note that prints no
# service date of its own, must leave the encounter undated rather than give it that date.
_NOTE = """Maple Grove Family Medicine
410 Elm Street, Springfield, IL 62704
Tel (217) 555-0142
Patient: Martha Collins    DOB: 03/14/1968    MRN: 4471902
PROGRESS NOTE
CHIEF COMPLAINT
Follow-up of chronic conditions.
HISTORY OF PRESENT ILLNESS
The patient returns for review of her blood pressure and diabetes. She reports feeling well and
has been taking her medications as prescribed. No chest pain, no shortness of breath.
{line}
ASSESSMENT AND PLAN
Continue current management. Recheck labs in three months.
"""


@pytest.mark.parametrize(
    "line",
    [
        "Result date: 02/11/2019",  # a result's date, in a results section
        "Start date: 01/02/2017",  # a medication's start
        "Immunization date: 10/01/2018",  # an immunisation given some other day
        "Date resolved: 04/04/2016",  # a problem's resolution
        "She is currently scheduled to have surgery on 06/24/2019.",  # the plan, told in prose
        "She was seen in the emergency department on 04/02/2019 for dizziness.",  # history, in prose
        "Admitted to the hospital on 02/03/2018 for pneumonia, discharged on 02/07/2018.",  # a past stay
        "Next appointment: 08/20/2019",  # a visit note's follow-up is no appointment letter
        "Fax received 05/31/2019 from the cardiology clinic.",
        "Date signed: 05/30/2019",
        "Printed on: 06/01/2019",
    ],
)
def test_a_date_the_note_mentions_is_not_its_encounter_date(line: str) -> None:
    (encounter,) = _discover(_NOTE.format(line=line)).encounters
    assert (encounter.date_start, encounter.date_end) == (None, None)
    assert "no_date" in encounter.review_reasons


def test_a_field_labelled_date_in_the_letterhead_beats_a_date_told_in_prose() -> None:
    page = _NOTE.replace("PROGRESS NOTE\n", "PROGRESS NOTE\nDate: 05/10/2019\n").format(
        line="She is currently scheduled to have surgery on 06/24/2019.")
    (encounter,) = _discover(page, date_order="auto").encounters  # a US note: 06/24 shows the order
    assert encounter.date_start == dt.date(2019, 5, 10)


@pytest.mark.parametrize(
    "label",
    ["Prevlous visit", "Prev1ous visit", "Prcvious visit", "D0B", "Date 0f Birth", "Prlnted", "Signcd on"],
)
def test_ocr_misread_labels_still_say_what_a_date_is_for(label: str) -> None:
    page = _NOTE.format(line=f"{label}: 01/15/2019")
    (encounter,) = _discover(page).encounters
    assert encounter.date_start is None


def test_a_running_header_repeating_the_title_continues_a_document_whose_title_ocr_lost() -> None:
    first = """Lakeshore Orthopedic Associates
7 Lakeshore Drive, Madison, WI 53703
Tel (608) 555-0166
Lakeshore Orthopedic Associates: Clinic ‘Note
Patient: Isabella Jones DOB: 05/01/2005 MRN: 998991
Visit date: 10/09/2022
CHIEF COMPLAINT
Knee pain.
"""
    second = """Isabella Jones | MRN 998991 | Lakeshore Orthopedic Associates: Clinic Note
PHYSICAL EXAM
Mild effusion of the right knee.
"""
    (visit,) = _discover(first, second).encounters
    assert visit.page_ranges == [(1, 2)]


def test_a_numeric_date_whose_order_the_file_does_not_settle_is_not_guessed() -> None:
    # A US clinic's note in which every numeric date could be read either way: reading
    # 06/08/2020 as 6 August instead of June 8 invents a date. Nothing in the file tells the
    # order, so the date is left out (and the encounter needs review) unless the deployment
    # says which order its documents use.
    text = (
        "Maple Grove Family Medicine\nPROGRESS NOTE\nPatient: Ann Example    MRN: 123456\n"
        "Encounter date: 06/08/2020\nFollow-up of hypertension.\n"
    )
    (encounter,) = _discover(text, date_order="auto").encounters
    assert encounter.date_start is None
    assert "no_date" in encounter.review_reasons

    (us,) = HeuristicEncounters(date_order="mdy").discover(_pages(text)).encounters
    (au,) = HeuristicEncounters(date_order="dmy").discover(_pages(text)).encounters
    assert us.date_start == dt.date(2020, 6, 8)
    assert au.date_start == dt.date(2020, 8, 6)


def test_a_date_told_in_a_sentence_at_the_top_of_a_page_is_no_letterhead_date() -> None:
    # A page opening an encounter with the middle of a note (its first page lost): the first
    # lines are prose, and a date inside them dates a result, not this encounter.
    text = (
        "RESULTS\n"
        "Labs reviewed, 03/03/2021: CBC, U&Es, coagulation, and CRP are all normal. Pituitary\n"
        "hormone profile demonstrates a low TSH, all other results were normal.\n"
    )
    (encounter,) = _discover(text).encounters
    assert encounter.date_start is None


@pytest.mark.parametrize(
    ("written", "expected"),
    [("Letter sent 7 March 2023.", dt.date(2020, 8, 6)), ("Letter sent March 7, 2023.", dt.date(2020, 6, 8))],
)
def test_the_order_a_file_writes_month_names_in_settles_its_numeric_dates(written: str, expected: dt.date) -> None:
    text = f"Maple Grove Family Medicine\nPROGRESS NOTE\nEncounter date: 06/08/2020\n{written}\n"
    (encounter,) = _discover(text, date_order="auto").encounters
    assert encounter.date_start == expected


# --- Textract's LAYOUT as boundary cues ---------------------------------------------------

_RESULTS = "\n".join(f"Sodium {130 + i} mmol/L   reference 135-145" for i in range(16))
_LAB_PAGE_1 = "Patient: Jane Example   DOB: 02/09/1971\n" + _RESULTS
# The title of a new report that Textract reads out of order, below the table it sits beside:
# past the first lines, where the text alone never looks for a title.
_LAB_PAGE_2 = "Patient: Jane Example   DOB: 02/09/1971\n" + _RESULTS + "\nDischarge Summary\nAdmitted for observation."


def _textract_pages(*layouts: list[LayoutBlock]) -> list[PageText]:
    return [
        PageText(page_number=i, text=text, engine="textract", layout=layout)
        for i, (text, layout) in enumerate(zip((_LAB_PAGE_1, _LAB_PAGE_2), layouts), 1)
    ]


def test_a_layout_title_starts_an_encounter() -> None:
    # Given two pages of one patient whose second holds a title deep in its text
    without = HeuristicEncounters().discover(_textract_pages([], []))
    assert len(without.encounters) == 1  # the text alone reads one document

    # When Textract's LAYOUT says that line is the page's title (LAYOUT_TITLE)
    title = LayoutBlock(kind="title", text="Discharge Summary", box=Box(x0=0.1, y0=0.1, x1=0.5, y1=0.13))
    found = HeuristicEncounters().discover(_textract_pages([], [title]))

    # Then the title is a boundary cue: the second page starts an inpatient stay
    assert [e.page_ranges for e in found.encounters] == [[(1, 1)], [(2, 2)]]
    assert found.encounters[1].encounter_type == ET.INPATIENT


def test_a_layout_header_with_page_1_starts_an_encounter() -> None:
    # Given two pages that read as one document from their text, the second with a
    # "Page 1 of 2" in the middle of its text, where no page marker is looked for
    marker = "Report 2 Page 1 of 2"
    second = _RESULTS[: len(_RESULTS) // 2] + "\n" + marker + "\n" + _RESULTS[len(_RESULTS) // 2 :]
    pages = [
        PageText(page_number=1, text=_LAB_PAGE_1, engine="textract"),
        PageText(page_number=2, text="Patient: Jane Example   DOB: 02/09/1971\n" + second, engine="textract"),
    ]
    assert len(HeuristicEncounters().discover(pages).encounters) == 1

    # When Textract's LAYOUT says that line is the page's header (LAYOUT_HEADER)
    pages[1] = pages[1].model_copy(update={"layout": [LayoutBlock(kind="header", text=marker)]})
    found = HeuristicEncounters().discover(pages)

    # Then "Page 1 of 2" in the header starts a document
    assert [e.page_ranges for e in found.encounters] == [[(1, 1)], [(2, 2)]]


def test_a_fax_transmission_line_below_the_top_of_the_page_dates_no_encounter() -> None:
    # A fax header that OCR read after the page's first lines (a stamp, a page number above it).
    text = (
        "RECEIVED\n2/3\n"
        "03/22/2021 14:22 FROM: (217) 555-0142 TO: (555) 555-0100 P. 2/3\n"
        "Maple Grove Family Medicine\nPROGRESS NOTE\nFollow-up of hypertension.\n"
    )
    (encounter,) = _discover(text, date_order="auto").encounters
    assert encounter.date_start is None


_VISIT_WITH_HISTORY = """Cedar Ridge Primary Care
1200 Ridge Avenue, Boulder, CO 80302
PROGRESS NOTE
Patient: Ana Lopez    DOB: 04/22/1961    MRN: 5521870
Visit date: 03/14/2019
Provider: Dr. Laura Chen, MD
CHIEF COMPLAINT
Follow-up of congestive heart failure.
HOSPITALIZATIONS
Admission Date: 10/28/2014 12:22pm    Discharge Date: 10/31/2014 3:04pm
Location: Good Day Hospital    Discharge Disposition: Nursing Home
"""


def test_dates_in_a_list_of_past_encounters_are_not_this_encounters() -> None:
    # Given a visit note whose body lists an earlier hospital stay in "Label: value" fields
    (encounter,) = _discover(_VISIT_WITH_HISTORY, date_order="auto").encounters

    # Then the encounter is the visit, its date the one its head gives
    assert (encounter.date_start, encounter.date_end) == (dt.date(2019, 3, 14), dt.date(2019, 3, 14))


def test_a_list_of_past_encounters_on_the_next_page_neither_dates_nor_splits_the_document() -> None:
    # Given the same note whose list of past encounters continues on its second page
    second = """Ana Lopez  |  MRN 5521870  |  PROGRESS NOTE
ENCOUNTER HISTORY
Encounter: Office outpatient visit    Performer: Dr. Samir Kahn
Encounter date: August 15, 2012    Diagnosis: Costal Chondritis
Encounter Type: Inpatient    Start Date: 10/28/2014 12:22pm    End Date: 10/31/2014 3:04pm
"""
    found = _discover(_VISIT_WITH_HISTORY, second, date_order="auto")

    # Then it stays one encounter, dated by its first page's head
    assert [e.page_ranges for e in found.encounters] == [[(1, 2)]]
    assert found.encounters[0].date_start == dt.date(2019, 3, 14)


def test_an_undated_summary_takes_no_date_from_its_list_of_encounters() -> None:
    # Given a summary of care that says when it was created and lists the patient's encounters
    text = """Community Health and Hospitals
CONTINUITY OF CARE DOCUMENT
Patient: Ana Lopez    DOB: 04/22/1961    MRN: 5521870
Document created: 06/01/2015
ENCOUNTERS
Encounter: Checkup Examination    Date: September 27, 2012 at 1:00pm
Admission Date: 10/28/2014 12:22pm    Discharge Date: 10/31/2014 3:04pm
"""
    (encounter,) = _discover(text, date_order="auto").encounters

    # Then it carries no date, and says so
    assert (encounter.date_start, encounter.date_end) == (None, None)
    assert "no_date" in encounter.review_reasons


@pytest.mark.parametrize(
    "head",
    [
        # an upper-case letterhead with its contact fields and a department line
        "ST MARY'S HOSPITAL\n12 Main Street, Springfield\nTel: (217) 555-0100\nDEPARTMENT OF CARDIOLOGY\n",
        # a fax machine's line above a title the heuristic does not know
        "09/16/2012 14:53  FROM: (555) 555-1002  TO: (555) 555-0100  P. 2/4\nCommunity Hospital\nWOUND CARE NOTE\n",
        # OCR's stray "|" after a letterhead line, and an upper-case study name
        "Ashford Imaging\nMRI Department |\nMRI RIGHT KNEE\n",
    ],
)
def test_upper_case_lines_above_the_banner_do_not_hide_the_service_date(head: str) -> None:
    # Given a page whose upper-case lines above its banner read like section headings
    text = head + "Patient: Ana Lopez    DOB: 04/22/1961\nVisit date: 03/14/2019\nHISTORY\nSeen for review.\n"
    (encounter,) = _discover(text, date_order="auto").encounters

    # Then its service date still dates the encounter: the body begins below the banner
    assert encounter.date_start == dt.date(2019, 3, 14)


def test_a_page_that_opens_inside_a_section_has_no_head() -> None:
    # Given a second page that opens with a section heading and its paragraph, and lists an
    # earlier stay further down
    second = """PLAN
We discussed treatment options and I have recommended that we proceed with surgery next month.
PAST ENCOUNTERS
Admission Date: 10/28/2014    Discharge Date: 10/31/2014
"""
    found = _discover(_VISIT_WITH_HISTORY.split("HOSPITALIZATIONS")[0], second, date_order="auto")

    # Then the stay neither splits the note nor dates it
    assert [(e.page_ranges, e.date_start) for e in found.encounters] == [([(1, 2)], dt.date(2019, 3, 14))]


def _kept_lines():
    from shared.encounters import dates
    return dates._raw_dates.cache_info().currsize


def _kept_pairs():
    from shared.encounters import boundaries
    return boundaries.same.cache_info().currsize


@pytest.mark.parametrize("kept", [_kept_lines, _kept_pairs], ids=["page text", "pair of lines"])
def test_a_discovery_keeps_nothing_it_read_once_it_is_done(monkeypatch, kept):
    # Given a visit note and its continuation pages read by OCR: the heuristic asks for each
    # line's dates several times, and compares the pages' heads line by line, as OCR reads a
    # line another way on each page
    from shared.encounters import grouping

    pages = [PageText(page_number=n, text=t, engine="tesseract") for n, t in
             enumerate([CLINIC_1, CLINIC_1_CONT, CLINIC_1_CONT], 1)]

    # When it has been discovered
    HeuristicEncounters().discover(pages)
    # Then no line it read, nor pair of lines it compared, is kept for the next file, which may
    # be another patient's
    assert kept() == 0

    # and so when the discovery fails once its pages are grouped
    group_pages = grouping.group_pages

    def fails_once_grouped(pages, *args):
        group_pages(pages, *args)
        assert kept() > 0  # what the discovery kept meanwhile
        raise RuntimeError("failed half way")

    monkeypatch.setattr(grouping, "group_pages", fails_once_grouped)
    with pytest.raises(RuntimeError):
        HeuristicEncounters().discover(pages)
    assert kept() == 0


def test_a_text_without_a_digit_has_no_date():
    from shared.encounters.dates import raw_dates

    assert raw_dates("Follow up in three weeks, sooner if worse") == []
    assert [r.parts for r in raw_dates("Seen 05/03/2024 and 7 March 2023")] == [(5, 3, 2024), (2023, 3, 7)]
