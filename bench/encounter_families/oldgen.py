"""The old generated bench: the packets ``bench/encounters_eval.py`` scored before the families.

A packet is what a patient uploads: several source documents (a discharge summary, GP notes,
lab and imaging reports, letters, a medication list...) of one fictional patient (Harold
Vance), concatenated in a shuffled order, some of them scanned, now and then a blank back side
between them. The sources are written here and drawn with PyMuPDF in three fonts and several
layouts: they were written alongside the heuristic, so a perfect score here measures fit, not
accuracy. It stays as the regression check the issue asks for ("no worse than today").

Scores, micro-averaged over every packet: page accuracy (true encounters matched one-to-one
to predicted ones by page overlap), boundary precision/recall/F1, type and date accuracy,
date precision, dates invented, undated-page precision, manifests valid.
"""


from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import io
import json
import random
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from docpipe_samples import wrap  # noqa: E402
from shared.adapters.tesseract import TesseractOcr  # noqa: E402
from shared.errors import PipelineError  # noqa: E402
from shared.models import Discovery, EncounterType, Manifest, PageText  # noqa: E402
from shared.pages.documents import Limits, open_document  # noqa: E402
from shared.pages.sniff import DocumentKind  # noqa: E402
from shared.ports import EncounterProvider  # noqa: E402
from shared.settings import Settings  # noqa: E402

from bench.encounter_families.scoring import count_boundaries, match_encounters  # noqa: E402

ET = EncounterType
PATIENT = "Harold Vance"
DOB = "03/11/1949"
MRN = "LGH-2231907"
A4 = (595, 842)
SCAN_DPI = 200
SCANNED = 0.4  # share of source documents in a packet that come as scans

# --- the source documents -------------------------------------------------------------------
#
# A page is a list of blocks (style, text). Styles: "head" letterhead name, "sub" letterhead
# detail, "title", "kv" a line, "para" a wrapped paragraph, "table" a fixed-width row, "gap".

Block = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Source:
    key: str
    kind: EncounterType
    start: dt.date | None
    end: dt.date | None
    facility: str
    pages: tuple[tuple[Block, ...], ...]
    font: str = "helv"  # helv, tiro, cour
    letterhead: str = "left"  # left, center, box
    numbering: str = "of"  # of ("Page k of N" footer), slash ("k/N" header), continued, none


def _p(*blocks: Block) -> tuple[Block, ...]:
    return tuple(blocks)


G: Block = ("gap", "")
PT = ("kv", f"Patient: {PATIENT}    DOB: {DOB}    MRN: {MRN}")


def _sources() -> list[Source]:
    return [
        Source(
            "stay_pneumonia", ET.INPATIENT, dt.date(2023, 5, 14), dt.date(2023, 5, 21), "St Aldhelm Hospital",
            (
                _p(("head", "St Aldhelm Hospital"), ("sub", "Department of Respiratory Medicine  |  Ward 7B"), G,
                   ("title", "DISCHARGE SUMMARY"), G, PT,
                   ("kv", "Date of admission: 14/05/2023"), ("kv", "Date of discharge: 21/05/2023"),
                   ("kv", "Consultant: Dr Miriam Achebe"), G,
                   ("kv", "Presenting complaint"),
                   ("para", "Five days of productive cough, fevers to 39.2 C and increasing breathlessness. "
                            "Saturations 88% on air in the emergency department, CURB-65 score of 2."),
                   G, ("kv", "Diagnosis"), ("para", "Left lower lobe community acquired pneumonia with type 1 "
                                                    "respiratory failure. Background of COPD (GOLD 2).")),
                _p(("kv", "Hospital course"),
                   ("para", "Commenced on intravenous co-amoxiclav and clarithromycin with controlled oxygen "
                            "via nasal prongs. Sputum culture grew Streptococcus pneumoniae sensitive to "
                            "penicillin. Switched to oral amoxicillin on day four. Oxygen weaned on day five. "
                            "Reviewed by physiotherapy, mobilising independently on the ward."),
                   G, ("kv", "Investigations"),
                   ("table", "CRP        212  ->  38 mg/L"), ("table", "WCC        16.4 -> 9.1 x10^9/L"),
                   ("table", "Sodium     131  ->  137 mmol/L"),
                   ("para", "Chest radiograph on admission: left lower lobe consolidation, no effusion.")),
                _p(("kv", "Medications on discharge"),
                   ("table", "Amoxicillin 500 mg  three times daily  2 more days"),
                   ("table", "Tiotropium 18 mcg   inhaled once daily  continue"),
                   ("table", "Salbutamol 100 mcg  2 puffs as needed    continue"),
                   G, ("kv", "Follow-up"),
                   ("para", "GP review within one week. Repeat chest X-ray in six weeks to confirm resolution. "
                            "Respiratory clinic will send an appointment."),
                   G, ("kv", "Electronically signed: Dr Miriam Achebe, Consultant Respiratory Physician")),
            ),
            font="helv", letterhead="left", numbering="of",
        ),
        Source(
            "ed_chestpain", ET.EMERGENCY, dt.date(2023, 9, 2), dt.date(2023, 9, 2), "Kingsbridge Hospital",
            (
                _p(("head", "KINGSBRIDGE HOSPITAL"), ("sub", "Emergency Department"), G,
                   ("title", "Emergency Department Attendance Record"), G, PT,
                   ("kv", "Arrival: 02 Sep 2023 19:42      Triage category: 2"),
                   ("kv", "Seen by: Dr Tomasz Wilk"), G,
                   ("kv", "History"),
                   ("para", "Central chest tightness at rest for forty minutes, radiating to the left arm, "
                            "with sweating. Settled with sublingual GTN given by paramedics."),
                   G, ("kv", "Findings"),
                   ("para", "BP 156/88, HR 92, SpO2 97%. ECG sinus rhythm, no ST elevation. High sensitivity "
                            "troponin 9 then 11 ng/L at three hours.")),
                _p(("kv", "Impression"), ("para", "Chest pain, acute coronary syndrome ruled out by serial "
                                                   "troponin. Likely musculoskeletal or oesophageal."),
                   G, ("kv", "Disposition"),
                   ("para", "Discharged home 02 Sep 2023 23:55. Outpatient stress echocardiogram requested. "
                            "Return if pain recurs."),
                   G, ("kv", "Dr Tomasz Wilk, Emergency Registrar")),
            ),
            font="tiro", letterhead="center", numbering="slash",
        ),
        Source(
            "gp_bp", ET.OUTPATIENT, dt.date(2023, 3, 7), dt.date(2023, 3, 7), "Cedar Lane Surgery",
            (
                _p(("head", "Cedar Lane Surgery"), ("sub", "4 Cedar Lane, Ashford  |  Tel 01632 960 118"), G,
                   ("title", "Consultation Note"), G, PT,
                   ("kv", "Date of consultation: 7 March 2023"), ("kv", "Clinician: Dr Fiona Grant"), G,
                   ("para", "Attends for blood pressure review. Home readings average 151/90 over two weeks. "
                            "No chest pain, no headaches. Taking amlodipine 5 mg daily."),
                   G, ("kv", "Plan"),
                   ("para", "Increase amlodipine to 10 mg daily. Bloods for renal function and lipids. "
                            "Review in four weeks with home readings.")),
            ),
            font="helv", letterhead="box", numbering="none",
        ),
        Source(
            "gp_knee", ET.OUTPATIENT, dt.date(2023, 10, 19), dt.date(2023, 10, 19), "Millbrook Medical Practice",
            (
                _p(("head", "Millbrook Medical Practice"), ("sub", "Millbrook Road  -  Tel 01632 960 540"), G,
                   ("title", "GP VISIT"), G, PT,
                   ("kv", "Visit date: 19/10/2023"), ("kv", "Seen by: Dr Anand Krishnan"), G,
                   ("kv", "Presenting problem"),
                   ("para", "Right knee pain for three months, worse on stairs, with morning stiffness under "
                            "twenty minutes. No locking or giving way."),
                   G, ("kv", "Examination"),
                   ("para", "Small effusion, crepitus, medial joint line tenderness, full extension.")),
                _p(("kv", "Assessment and plan"),
                   ("para", "Probable osteoarthritis of the right knee. Weight-bearing X-ray requested. "
                            "Topical NSAID, physiotherapy referral. Review once X-ray reported."),
                   G, ("kv", "Dr Anand Krishnan")),
            ),
            font="cour", letterhead="left", numbering="continued",
        ),
        Source(
            "tele_diabetes", ET.TELEHEALTH, dt.date(2024, 1, 23), dt.date(2024, 1, 23), "Cedar Lane Surgery",
            (
                _p(("head", "Cedar Lane Surgery"), G, ("title", "Telephone Consultation"), G, PT,
                   ("kv", "Date of consultation: 23/01/2024"), ("kv", "Clinician: Nurse Practitioner Joy Obi"), G,
                   ("para", "Telephone review of new diabetes diagnosis. HbA1c 58 mmol/mol. Discussed diet and "
                            "activity. Started metformin 500 mg daily with food, increasing weekly to 1 g "
                            "twice daily as tolerated."),
                   G, ("para", "Booked onto the structured education course. Repeat HbA1c in three months.")),
            ),
            font="tiro", letterhead="left", numbering="none",
        ),
        Source(
            "lab_fbc", ET.LAB, dt.date(2023, 5, 14), None, "Wessex Pathology",
            (
                _p(("head", "WESSEX PATHOLOGY"), ("sub", "UKAS accredited medical laboratory"), G,
                   ("title", "LABORATORY REPORT"), G, PT,
                   ("kv", "Specimen collected: 2023-05-14 06:10"), ("kv", "Reported: 2023-05-14 09:32"),
                   ("kv", "Requested by: Dr Miriam Achebe"), G,
                   ("table", "Test            Result    Units        Reference"),
                   ("table", "Haemoglobin     128       g/L          130 - 170  L"),
                   ("table", "White cells     16.4      x10^9/L      4.0 - 11.0 H"),
                   ("table", "Neutrophils     14.1      x10^9/L      2.0 - 7.5  H"),
                   ("table", "Platelets       402       x10^9/L      150 - 400  H"),
                   ("table", "CRP             212       mg/L         < 5        H"), G,
                   ("kv", "Authorised by: Dr Ines Moreau, Consultant Haematologist")),
            ),
            font="cour", letterhead="center", numbering="none",
        ),
        Source(
            "lab_lipids", ET.LAB, dt.date(2023, 3, 14), None, "Wessex Pathology",
            (
                _p(("head", "WESSEX PATHOLOGY"), ("sub", "Clinical Biochemistry"), G,
                   ("title", "LABORATORY REPORT"), G, PT,
                   ("kv", "Collected: 14/03/2023 08:45"), ("kv", "Requested by: Dr Fiona Grant"), G,
                   ("table", "Test               Result   Units     Reference"),
                   ("table", "Sodium             139      mmol/L    133 - 146"),
                   ("table", "Potassium          4.4      mmol/L    3.5 - 5.3"),
                   ("table", "Creatinine         97       umol/L    59 - 104"),
                   ("table", "eGFR               68       mL/min    > 60")),
                _p(("table", "Total cholesterol  6.1      mmol/L    < 5.0     H"),
                   ("table", "HDL cholesterol    1.1      mmol/L    > 1.0"),
                   ("table", "LDL cholesterol    4.2      mmol/L    < 3.0     H"),
                   ("table", "Triglycerides      1.8      mmol/L    < 1.7     H"), G,
                   ("para", "Comment: QRISK3 assessment suggested. Renal function stable."),
                   G, ("kv", "Authorised by: Dr Paul Hendry, Clinical Biochemist")),
            ),
            font="helv", letterhead="center", numbering="of",
        ),
        Source(
            "xr_chest", ET.IMAGING, dt.date(2023, 7, 3), None, "Ashford Imaging",
            (
                _p(("head", "Ashford Imaging"), ("sub", "Diagnostic Radiology  |  Tel 01632 960 777"), G,
                   ("title", "RADIOLOGY REPORT"), G, PT,
                   ("kv", "Examination: Chest X-ray PA"), ("kv", "Date of examination: 3 July 2023"),
                   ("kv", "Referrer: Dr Fiona Grant"), G,
                   ("kv", "Findings"),
                   ("para", "Interval resolution of the previously described left lower lobe consolidation. "
                            "Mild hyperinflation in keeping with COPD. No effusion or pneumothorax. "
                            "Heart size normal."),
                   G, ("kv", "Conclusion"), ("para", "Resolved pneumonia."), G,
                   ("kv", "Reported by: Dr Kate Lindqvist, Consultant Radiologist")),
            ),
            font="tiro", letterhead="box", numbering="none",
        ),
        Source(
            "mri_knee", ET.IMAGING, dt.date(2023, 12, 4), None, "Ashford Imaging",
            (
                _p(("head", "Ashford Imaging"), ("sub", "MRI Department"), G,
                   ("title", "MRI RIGHT KNEE"), G, PT,
                   ("kv", "Study date: 04/12/2023"), ("kv", "Clinical details: medial knee pain, ?meniscal tear"), G,
                   ("kv", "Technique"), ("para", "Multiplanar proton density and T1 sequences, 1.5 T."), G,
                   ("kv", "Findings"),
                   ("para", "Horizontal tear of the posterior horn of the medial meniscus. Grade 3 chondral "
                            "loss over the medial femoral condyle. Small joint effusion.")),
                _p(("para", "Cruciate and collateral ligaments intact. Lateral compartment preserved. "
                            "Patellofemoral joint shows early degenerative change."),
                   G, ("kv", "Impression"),
                   ("para", "Degenerate medial meniscal tear with medial compartment osteoarthritis."),
                   G, ("kv", "Reported by: Dr Kate Lindqvist")),
            ),
            font="helv", letterhead="left", numbering="slash",
        ),
        Source(
            "colonoscopy", ET.PROCEDURE, dt.date(2024, 2, 27), dt.date(2024, 2, 27), "Kingsbridge Hospital",
            (
                _p(("head", "Kingsbridge Hospital"), ("sub", "Endoscopy Unit"), G,
                   ("title", "COLONOSCOPY REPORT"), G, PT,
                   ("kv", "Procedure date: 27/02/2024"), ("kv", "Endoscopist: Mr Rajesh Pillai"), G,
                   ("kv", "Indication"), ("para", "Positive faecal immunochemical test."), G,
                   ("kv", "Findings"),
                   ("para", "Complete colonoscopy to the caecum, terminal ileum intubated. Two sessile "
                            "polyps of 6 mm and 8 mm in the sigmoid colon removed by cold snare. "
                            "Scattered diverticula.")),
                _p(("kv", "Sedation"), ("para", "Midazolam 2 mg, fentanyl 50 mcg. Comfort score 2."), G,
                   ("kv", "Plan"),
                   ("para", "Await histology. Surveillance interval to be decided once histology is back. "
                            "Discharged from the unit the same day."),
                   G, ("kv", "Mr Rajesh Pillai, Consultant Colorectal Surgeon")),
            ),
            font="cour", letterhead="center", numbering="of",
        ),
        Source(
            "op_hernia", ET.PROCEDURE, dt.date(2022, 11, 8), dt.date(2022, 11, 8), "Meadowfield Hospital",
            (
                _p(("head", "Meadowfield Hospital"), ("sub", "Day Surgery Unit"), G,
                   ("title", "OPERATION NOTE"), G, PT,
                   ("kv", "Date of operation: 8 November 2022"), ("kv", "Surgeon: Ms Clare Oduya"),
                   ("kv", "Anaesthetic: general"), G,
                   ("kv", "Procedure"), ("para", "Open right inguinal hernia repair with mesh (Lichtenstein)."),
                   G, ("kv", "Findings"), ("para", "Indirect inguinal hernia, sac reduced, no bowel compromise.")),
                _p(("kv", "Closure"), ("para", "Absorbable sutures to skin, local anaesthetic infiltration."),
                   G, ("kv", "Post-operative instructions"),
                   ("para", "Home today if passing urine. No heavy lifting for four weeks. Wound check "
                            "with practice nurse in ten days.")),
                _p(("kv", "Complications: none"), ("kv", "Estimated blood loss: minimal"), G,
                   ("para", "Patient informed of findings. Follow-up in clinic not required."),
                   G, ("kv", "Signed: Ms Clare Oduya, Consultant General Surgeon")),
            ),
            font="tiro", letterhead="left", numbering="of",
        ),
        Source(
            "meds", ET.MEDICATION_LIST, None, None, "Cedar Lane Surgery",
            (
                _p(("head", "Cedar Lane Surgery"), G, ("title", "Current Medication List"), G, PT, G,
                   ("table", "Medicine                 Dose        Directions"),
                   ("table", "Amlodipine               10 mg       once daily"),
                   ("table", "Atorvastatin             20 mg       at night"),
                   ("table", "Metformin                1 g         twice daily with food"),
                   ("table", "Tiotropium inhaler       18 mcg      once daily"),
                   ("table", "Salbutamol inhaler       100 mcg     two puffs when required"), G,
                   ("para", "Allergies: penicillin causes rash (mild). Please bring this list to every "
                            "hospital appointment.")),
            ),
            font="helv", letterhead="center", numbering="none",
        ),
        Source(
            "ref_cardio", ET.REFERRAL, dt.date(2023, 9, 12), dt.date(2023, 9, 12), "Millbrook Medical Practice",
            (
                _p(("head", "Millbrook Medical Practice"), ("sub", "Millbrook Road, Ashford"), G,
                   ("kv", "Date: 12 September 2023"), G,
                   ("kv", "Dr Hannah Reuben"), ("kv", "Cardiology Outpatients, Kingsbridge Hospital"), G,
                   ("kv", "Dear Dr Reuben,"), G, ("kv", f"Re: {PATIENT}, DOB {DOB}"), G,
                   ("para", "Thank you for seeing this 73 year old man who attended the emergency department "
                            "with chest pain. Acute coronary syndrome was excluded but he continues to get "
                            "exertional tightness after about two hundred metres."),
                   ("para", "He has hypertension, COPD and hypercholesterolaemia and is an ex-smoker of "
                            "forty pack years. I would value your opinion and an exercise test.")),
                _p(("para", "Current medication is amlodipine 10 mg, atorvastatin 20 mg and inhalers."),
                   G, ("kv", "Yours sincerely,"), G, ("kv", "Dr Anand Krishnan"), ("kv", "General Practitioner")),
            ),
            font="tiro", letterhead="left", numbering="continued",
        ),
        Source(
            "letter_undated", ET.REFERRAL, None, None, "Kingsbridge Hospital",
            (
                _p(("head", "Kingsbridge Hospital"), ("sub", "Physiotherapy Department"), G,
                   ("title", "Letter to the GP"), G,
                   ("kv", "Dear Dr Krishnan,"), G, ("kv", f"Re: {PATIENT}  MRN {MRN}"), G,
                   ("para", "Mr Vance has completed six sessions of knee physiotherapy. His walking "
                            "tolerance has improved and he manages stairs with a rail. We have given a home "
                            "exercise programme and discharged him from our service."),
                   G, ("kv", "Kind regards,"), G, ("kv", "Ben Sutherland, Senior Physiotherapist")),
            ),
            font="helv", letterhead="box", numbering="none",
        ),
        Source(
            "cardio_clinic", ET.OUTPATIENT, dt.date(2023, 11, 2), dt.date(2023, 11, 2), "Kingsbridge Hospital",
            (
                _p(("head", "Kingsbridge Hospital"), ("sub", "Cardiology Outpatients"), G,
                   ("title", "Outpatient Clinic Letter"), G, PT,
                   ("kv", "Clinic date: 02/11/2023"), ("kv", "Consultant: Dr Hannah Reuben"), G,
                   ("kv", "Diagnosis"), ("para", "Stable angina, Canadian class II."), G,
                   ("kv", "History"),
                   ("para", "Exertional chest tightness after two hundred metres, relieved by rest within "
                            "minutes. Exercise test positive at stage 2 with 2 mm ST depression.")),
                _p(("kv", "Plan"),
                   ("para", "Start bisoprolol 2.5 mg daily and aspirin 75 mg daily. GTN spray as needed. "
                            "CT coronary angiogram requested. We will review him after the scan."),
                   G, ("kv", "Dr Hannah Reuben, Consultant Cardiologist")),
            ),
            font="cour", letterhead="left", numbering="of",
        ),
        Source(
            "stay_hip", ET.INPATIENT, dt.date(2022, 8, 15), dt.date(2022, 8, 20), "Meadowfield Hospital",
            (
                _p(("head", "Meadowfield Hospital"), ("sub", "Trauma and Orthopaedics"), G,
                   ("title", "Inpatient Discharge Summary"), G, PT,
                   ("kv", "Admitted: 15/08/2022 via the emergency department"), ("kv", "Consultant: Mr Owen Bailey"), G,
                   ("kv", "Reason for admission"),
                   ("para", "Fall at home onto the left side. Shortened, externally rotated left leg. X-ray "
                            "confirmed a displaced intracapsular fracture of the left neck of femur.")),
                _p(("kv", "Operative details"),
                   ("kv", "Date of operation: 16/08/2022"),
                   ("para", "Left hip hemiarthroplasty under spinal anaesthesia. Uncomplicated. Enoxaparin "
                            "thromboprophylaxis for 28 days."),
                   G, ("kv", "Rehabilitation"),
                   ("para", "Mobilised with a frame on day one, stairs assessed by physiotherapy on day four. "
                            "Occupational therapy home visit completed.")),
                _p(("kv", "Discharge date: 20/08/2022"), G, ("kv", "Medications on discharge"),
                   ("table", "Enoxaparin 40 mg   subcutaneous daily   24 more days"),
                   ("table", "Paracetamol 1 g    four times daily     as needed"), G,
                   ("para", "Clips out at fourteen days by the practice nurse. Fracture clinic in six weeks. "
                            "Bone health assessment recommended."),
                   G, ("kv", "Mr Owen Bailey, Consultant Orthopaedic Surgeon")),
            ),
            font="tiro", letterhead="center", numbering="none",
        ),
        Source(
            "us_abdo", ET.IMAGING, dt.date(2024, 4, 9), None, "Ashford Imaging",
            (
                _p(("head", "Ashford Imaging"), ("sub", "Ultrasound Department"), G,
                   ("title", "ULTRASOUND ABDOMEN"), G, PT,
                   ("kv", "Exam date: April 9, 2024"), ("kv", "Referring clinician: Dr Fiona Grant"), G,
                   ("para", "Liver normal in size with increased echogenicity in keeping with fatty infiltration. "
                            "Gallbladder absent. Common bile duct 5 mm. Kidneys normal, no hydronephrosis. "
                            "Spleen 10 cm."),
                   G, ("kv", "Conclusion: hepatic steatosis."), G, ("kv", "Sonographer: Amy Lau")),
            ),
            font="helv", letterhead="left", numbering="none",
        ),
        Source(
            "histo", ET.LAB, dt.date(2024, 2, 27), None, "Wessex Pathology",
            (
                _p(("head", "WESSEX PATHOLOGY"), ("sub", "Cellular Pathology"), G,
                   ("title", "HISTOPATHOLOGY REPORT"), G, PT,
                   ("kv", "Date collected: 27.02.2024"), ("kv", "Received: 28.02.2024"),
                   ("kv", "Clinician: Mr Rajesh Pillai"), G,
                   ("kv", "Specimens"), ("para", "A: sigmoid polyp 6 mm.  B: sigmoid polyp 8 mm."), G,
                   ("kv", "Microscopy"),
                   ("para", "A: tubular adenoma with low grade dysplasia, completely excised. B: tubular "
                            "adenoma with low grade dysplasia, margins clear.")),
                _p(("kv", "Diagnosis"),
                   ("para", "Two tubular adenomas with low grade dysplasia. No high grade dysplasia or "
                            "malignancy."),
                   G, ("para", "SNOMED: T67000 M81400"), G,
                   ("kv", "Reported by: Dr Ines Moreau, Consultant Histopathologist")),
            ),
            font="cour", letterhead="left", numbering="none",
        ),
        Source(
            "ed_wrist", ET.EMERGENCY, dt.date(2024, 6, 30), dt.date(2024, 6, 30), "Portside Infirmary",
            (
                _p(("head", "Portside Infirmary"), ("sub", "Accident & Emergency"), G,
                   ("title", "ED Discharge Letter"), G, PT,
                   ("kv", "Attendance date: 2024-06-30"), ("kv", "Clinician: Dr Sofia Marin"), G,
                   ("para", "Slipped on a wet floor and landed on the outstretched right hand. Tender anatomical "
                            "snuffbox. Scaphoid views show no fracture."),
                   G, ("para", "Scaphoid cast applied, repeat X-ray in ten days at fracture clinic. "
                               "Analgesia as needed.")),
            ),
            font="tiro", letterhead="box", numbering="of",
        ),
        Source(
            "admin_form", ET.ADMINISTRATIVE, None, None, "Ashford Community Health",
            (
                _p(("head", "Ashford Community Health"), G, ("title", "Patient Registration Form"), G,
                   ("kv", f"Name: {PATIENT}"), ("kv", f"Date of birth: {DOB}"),
                   ("kv", "Address: 17 Orchard Close, Ashford"), ("kv", "Next of kin: Susan Vance (wife)"),
                   ("kv", "Preferred language: English"), G,
                   ("para", "I consent to my records being shared with the community nursing team for the "
                            "purposes of my care. Signature on file.")),
            ),
            font="cour", letterhead="left", numbering="none",
        ),
    ]


# --- drawing ---------------------------------------------------------------------------------

_FONTS = {"helv": ("helv", "hebo"), "tiro": ("tiro", "tibo"), "cour": ("cour", "cobo")}
_SIZES = {"head": 15, "sub": 9.5, "title": 13, "kv": 10.5, "para": 10.5, "table": 9.5}
MARGIN = 56


def _draw_page(page: pymupdf.Page, source: Source, k: int) -> None:
    regular, bold = _FONTS[source.font]
    width = page.rect.width - 2 * MARGIN
    n = len(source.pages)
    y = 60.0
    if source.numbering == "slash":
        page.insert_text((page.rect.width - MARGIN - 30, 40), f"{k}/{n}", fontname=regular, fontsize=9)
    if source.numbering == "continued" and k > 1:
        page.insert_text((MARGIN, y), f"{source.facility} - {PATIENT} - continued", fontname=regular, fontsize=9)
        y += 24
    for style, text in source.pages[k - 1]:
        if style == "gap":
            y += 8
            continue
        size = _SIZES[style]
        fontname = bold if style in ("head", "title") else ("cour" if style == "table" else regular)
        lines = wrap(text, fontname, size, width) if style == "para" else [text]
        for line in lines:
            if style in ("head", "sub", "title") and source.letterhead == "center":
                x = (page.rect.width - pymupdf.get_text_length(line, fontname=fontname, fontsize=size)) / 2
            else:
                x = MARGIN
            page.insert_text((x, y), line, fontname=fontname, fontsize=size)
            if style == "head" and source.letterhead == "box":
                page.draw_rect(pymupdf.Rect(MARGIN - 6, y - size - 4, page.rect.width - MARGIN, y + 6), width=0.8)
            y += size * 1.5
    if source.numbering == "of":
        page.insert_text((MARGIN, page.rect.height - 40), f"Page {k} of {n}", fontname=regular, fontsize=9)


def _pdf(source: Source) -> bytes:
    with pymupdf.open() as doc:
        for k in range(1, len(source.pages) + 1):
            _draw_page(doc.new_page(width=A4[0], height=A4[1]), source, k)
        return doc.tobytes(garbage=3, no_new_id=True)


def _scanned_pdf(source: Source, seed: int) -> bytes:
    """Each page rendered, turned a little, speckled and JPEG-compressed, kept as an image only."""
    rng = random.Random(seed)
    out = pymupdf.open()
    with pymupdf.open(stream=_pdf(source), filetype="pdf") as doc:
        for page in doc:
            pix = page.get_pixmap(dpi=SCAN_DPI, colorspace=pymupdf.csGRAY)
            image = Image.frombytes("L", (pix.width, pix.height), pix.samples)
            image = image.rotate(rng.uniform(-0.8, 0.8), resample=Image.Resampling.BICUBIC, fillcolor=255)
            draw = ImageDraw.Draw(image)
            for _ in range(600):
                x, y = rng.randrange(image.width), rng.randrange(image.height)
                draw.ellipse((x, y, x + rng.choice((1, 1, 2)), y + rng.choice((1, 1, 2))), fill=rng.randrange(40, 190))
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=rng.choice((55, 65, 75)), dpi=(SCAN_DPI, SCAN_DPI))
            new = out.new_page(width=A4[0], height=A4[1])
            new.insert_image(new.rect, stream=buf.getvalue())
    data = out.tobytes(garbage=3, no_new_id=True)
    out.close()
    return data


_BLANK_TEXTS = ("", "  \n", ". ,\n")  # a blank back side: nothing, or OCR of speckle


# --- reading pages as the pipeline does ---------------------------------------------------------


class PageReader:
    """Texts of a source's pages, native or OCR'd, cached for the run."""

    def __init__(self, workdir: Path, ocr: TesseractOcr, workers: int = 2) -> None:
        self.workdir = workdir
        self.ocr = ocr
        self.workers = workers
        self.cache: dict[tuple[str, int], list[tuple[str, str]]] = {}  # (key, variant) -> [(text, engine)]
        self.ocr_pages = 0
        self.ocr_seconds = 0.0
        self.limits = Limits.from_settings(Settings())

    def texts(self, source: Source, variant: int) -> list[tuple[str, str]]:
        """Variant 0: the text layer; 1, 2...: a scan of it, each with its own skew and noise."""
        key = (source.key, variant)
        if key not in self.cache:
            self.cache[key] = self._read(source, variant)
        return self.cache[key]

    def warm(self, wanted: Sequence[tuple[Source, int]]) -> None:
        todo = list(dict.fromkeys((s, v) for s, v in wanted if (s.key, v) not in self.cache))
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            for (source, variant), texts in zip(todo, pool.map(lambda sv: self._read(*sv), todo), strict=True):
                self.cache[(source.key, variant)] = texts

    def _read(self, source: Source, variant: int) -> list[tuple[str, str]]:
        data = _scanned_pdf(source, seed=zlib.crc32(f"{source.key}/{variant}".encode())) if variant else _pdf(source)
        folder = Path(tempfile.mkdtemp(dir=self.workdir))
        path = folder / "doc.pdf"
        path.write_bytes(data)
        texts = []
        with open_document(path, DocumentKind.PDF, self.limits) as doc:
            for page in doc.pages():
                if page.native_text is not None:
                    texts.append((page.native_text.text, "native"))
                    continue
                cached = _ocr_cache_path(page.jpeg)
                if cached.exists():  # an earlier run read this very image
                    texts.append((json.loads(cached.read_text())["text"], "tesseract"))
                    continue
                jpeg = folder / f"page-{page.page_number}.jpg"
                jpeg.write_bytes(page.jpeg)
                t0 = time.perf_counter()
                read = self.ocr.read(jpeg, page.page_number)
                texts.append((read.text, read.engine))
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps({"text": read.text, "confidence": read.confidence}))
                self.ocr_seconds += time.perf_counter() - t0
                self.ocr_pages += 1
        return texts


def _ocr_cache_path(jpeg: bytes) -> Path:
    """Where the OCR of this page image is kept between runs (build/, gitignored)."""
    import hashlib

    return ROOT / "build" / "encounters_ocr" / f"{hashlib.sha256(jpeg).hexdigest()[:32]}.json"


# --- packets ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Packet:
    name: str
    pages: list[PageText]
    truth: list[str | None]  # per page: the source key, or None for a blank page
    sources: dict[str, Source]
    scanned: list[str]


def plan_packets(sources: list[Source], count: int, seed: int) -> list[list[tuple[Source, int, bool]]]:
    """Per packet: (source, variant (0 text layer, 1-2 scans), blank page after?) in upload order."""
    rng = random.Random(seed)
    plans = []
    for index in range(count):
        if index == 0:
            chosen = list(sources)  # the "Frankenstein": everything, shuffled
        else:
            chosen = rng.sample(sources, rng.randint(4, 9))
        rng.shuffle(chosen)
        plans.append([(s, rng.choice((1, 2)) if rng.random() < SCANNED else 0, rng.random() < 0.12) for s in chosen])
    return plans


def build_packet(name: str, plan: list[tuple[Source, int, bool]], reader: PageReader, rng: random.Random) -> Packet:
    texts: list[tuple[str, str]] = []
    truth: list[str | None] = []
    for source, variant, blank_after in plan:
        for text in reader.texts(source, variant):
            texts.append(text)
            truth.append(source.key)
        if blank_after:
            texts.append((rng.choice(_BLANK_TEXTS), "tesseract"))
            truth.append(None)
    pages = [PageText(page_number=n, text=t, engine=engine) for n, (t, engine) in enumerate(texts, 1)]
    return Packet(
        name, pages, truth, {s.key: s for s, _, _ in plan}, [s.key for s, variant, _ in plan if variant]
    )


# --- scoring ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Counts:
    pages: int = 0
    pages_right: int = 0
    boundaries_true: int = 0
    boundaries_pred: int = 0
    boundaries_hit: int = 0
    encounters: int = 0
    types_right: int = 0
    dates_right: int = 0
    dates_pred: int = 0
    dates_pred_right: int = 0
    dates_invented: int = 0
    undated_pages: int = 0
    undated_pages_clean: int = 0
    manifests: int = 0
    manifests_valid: int = 0
    errors: int = 0  # the provider raised (a retryable or permanent PipelineError)
    calls_seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Counts) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def metrics(self) -> dict[str, float]:
        p = self.boundaries_hit / self.boundaries_pred if self.boundaries_pred else 1.0
        r = self.boundaries_hit / self.boundaries_true if self.boundaries_true else 1.0
        return {
            "page_accuracy": _ratio(self.pages_right, self.pages),
            "boundary_precision": round(p, 4),
            "boundary_recall": round(r, 4),
            "boundary_f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "type_accuracy": _ratio(self.types_right, self.encounters),
            "date_accuracy": _ratio(self.dates_right, self.encounters),
            "date_precision": _ratio(self.dates_pred_right, self.dates_pred),
            "undated_page_precision": _ratio(self.undated_pages_clean, self.undated_pages),
            "dates_invented": self.dates_invented,
            "manifests_valid": _ratio(self.manifests_valid, self.manifests),
            "errors": self.errors,
        }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 1.0


def score(packet: Packet, discovery: Discovery) -> Counts:
    c = Counts(manifests=1)
    n = len(packet.pages)
    try:
        manifest = Manifest.build(uuid.uuid4(), n, discovery, packet.pages)
        c.manifests_valid = 1
        pred = [manifest.page_assignments[p] for p in range(1, n + 1)]
    except ValueError:
        pred = [None] * n
        for index, enc in enumerate(discovery.encounters):
            for p in enc.pages():
                if 1 <= p <= n and pred[p - 1] is None:
                    pred[p - 1] = index
    truth = packet.truth

    match = match_encounters(truth, pred)

    c.pages = n
    c.pages_right = sum((t is None and q is None) or (t is not None and match.get(t) == q) for t, q in zip(truth, pred))
    count_boundaries(truth, pred, c)

    printed = {d for s in packet.sources.values() for d in (s.start, s.end) if d}
    for key, source in packet.sources.items():
        c.encounters += 1
        q = match.get(key)
        enc = discovery.encounters[q] if q is not None else None
        if enc is None:
            continue
        c.types_right += enc.encounter_type == source.kind
        start_ok = enc.date_start == source.start
        if source.end is not None and source.end != source.start:
            end_ok = enc.date_end == source.end
        else:
            end_ok = enc.date_end in (None, source.start)
        c.dates_right += start_ok and end_ok
        for value, true_value in ((enc.date_start, source.start), (enc.date_end, source.end or source.start)):
            if value is not None:
                c.dates_pred += 1
                c.dates_pred_right += value == true_value
    for enc in discovery.encounters:
        c.dates_invented += sum(d is not None and d not in printed for d in (enc.date_start, enc.date_end))
    for t, q in zip(truth, pred):
        if t is not None and packet.sources[t].start is None and packet.sources[t].end is None:
            c.undated_pages += 1
            enc = discovery.encounters[q] if q is not None else None
            c.undated_pages_clean += enc is None or (enc.date_start is None and enc.date_end is None)
    c.input_tokens, c.output_tokens, c.cost_usd = discovery.input_tokens, discovery.output_tokens, discovery.cost_usd
    return c



def run(args: argparse.Namespace, makers: dict[str, Callable[[], EncounterProvider]]) -> dict:
    """The old packets (``args.packets``, ``args.seed``) scored for each provider in ``makers``."""
    settings = Settings()
    sources = _sources()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="encounters-eval-") as tmp:
        reader = PageReader(Path(tmp), TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, 180.0),
                            workers=args.ocr_workers)
        plans = plan_packets(sources, args.packets, args.seed)
        reader.warm([(s, variant) for plan in plans for s, variant, _ in plan])
        rng = random.Random(args.seed + 1)
        packets = [build_packet(f"packet-{i:02d}", plan, reader, rng) for i, plan in enumerate(plans)]
    read_s = time.perf_counter() - t0

    results: dict[str, dict] = {}
    for name, make in makers.items():
        provider = make()
        total = Counts()
        per_packet = []
        for packet in packets:
            started = time.perf_counter()
            try:
                discovery = provider.discover(packet.pages)
                failed = None
            except PipelineError as exc:  # scored as finding nothing, and counted
                discovery, failed = Discovery(encounters=[], provider=name), exc.code
            counts = score(packet, discovery)
            counts.errors = int(failed is not None)
            counts.calls_seconds = time.perf_counter() - started
            total.add(counts)
            per_packet.append({"packet": packet.name, "pages": len(packet.pages), **counts.metrics(),
                               "error": failed, "seconds": round(counts.calls_seconds, 3)})
        results[name] = {
            **total.metrics(),
            "model": getattr(provider, "model", None),
            "seconds": round(total.calls_seconds, 2),
            "input_tokens": total.input_tokens,
            "output_tokens": total.output_tokens,
            "cost_usd": round(total.cost_usd, 6),
            "packets": per_packet,
        }
    return {
        "seed": args.seed,
        "packets": [
            {"name": p.name, "pages": len(p.pages), "sources": len(p.sources), "scanned": p.scanned,
             "blank_pages": sum(t is None for t in p.truth)}
            for p in packets
        ],
        "pages": sum(len(p.pages) for p in packets),
        "sources": len(sources),
        "ocr_pages": reader.ocr_pages,
        "ocr_seconds": round(reader.ocr_seconds, 1),
        "read_seconds": round(read_s, 1),
        "providers": results,
    }


COLUMNS = [
    ("page_accuracy", "page acc"),
    ("boundary_f1", "bound F1"),
    ("boundary_precision", "bound P"),
    ("boundary_recall", "bound R"),
    ("type_accuracy", "type acc"),
    ("date_accuracy", "date acc"),
    ("date_precision", "date P"),
    ("undated_page_precision", "undated P"),
    ("dates_invented", "invented"),
    ("manifests_valid", "valid"),
    ("errors", "errors"),
]


def table(report: dict) -> str:
    head = f"{'provider':<16}" + "".join(f"{label:>11}" for _, label in COLUMNS) + f"{'seconds':>9}{'cost $':>10}"
    rows = [head, "-" * len(head)]
    for name, r in report["providers"].items():
        cells = "".join(f"{r[key]:>11}" if isinstance(r[key], int) else f"{r[key]:>11.3f}" for key, _ in COLUMNS)
        rows.append(f"{name:<16}{cells}{r['seconds']:>9.2f}{r['cost_usd']:>10.4f}")
    return "\n".join(rows)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["page_accuracy", "boundary_f1", "type_accuracy", "date_accuracy", "undated_page_precision"]
    labels = ["page\naccuracy", "boundary\nF1", "type\naccuracy", "date\naccuracy", "undated-page\ndate precision"]
    names = list(report["providers"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [report["providers"][name][k] for k in keys]
        xs = [x + i * width - 0.4 + width / 2 for x in range(len(keys))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
        per = report["providers"][name]["packets"]
        ax2.plot([p["pages"] for p in per], [p["page_accuracy"] for p in per], "o", label=name)
    ax.axhline(0.85, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(keys)), labels)
    ax.set_ylim(0, 1.08)
    ax.set_title(f"Pass 0.5 on {len(report['packets'])} packets, {report['pages']} pages "
                 f"({report['ocr_pages']} OCR'd)")
    ax.legend(loc="lower left")
    ax2.set_xlabel("packet pages")
    ax2.set_ylabel("page accuracy")
    ax2.set_ylim(0, 1.05)
    ax2.set_title("per packet")
    ax2.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


