"""OCR evaluation: how right page text is, what it costs, and that text-layer pages skip OCR.

    python -m bench.ocr_eval [--sroie N] [--degraded N] [--repeat N] [--shared ../shared] [--out bench/results]

Every page goes the way production sends it: the source (a scan, a photo, a PDF) is opened
and rendered by the real preprocess code (``shared.pages.documents.open_document``) into the
page JPEG, and that JPEG is read by the real OCR stage (``shared.stages.ocr.run`` through
``handle_record``, over the in-memory fakes of ``tests/fakes.py``) with the real engine.
The same JPEG is also read by bare ``tesseract IMG stdout`` in the same run, the two
interleaved page by page, so the stage's cost is a ratio over the engine's own.

Sets, each skipped when its files are absent (``../shared`` beside the repository):

- ``corpus/ocr``: Tesseract's phototest and its rotated copies, eurotext, the UNLV scans'
  text zones (cropped as the .uzn lists them; the reference is their .txt), linn (its
  reference is itself machine OCR), the SROIE receipts (reference: their line transcripts,
  upper case by the dataset's convention, so scored case-blind);
- clean pages rendered from text PDFs this script writes, and from two text PDFs of
  ``corpus/pdfs`` (a discharge-summary sample; a two-column drug sheet, whose text layer
  runs in another order than Tesseract reads: its CER counts that, "missed" does not): the
  reference is the page's own text layer, as preprocess extracts it. Every page of these
  and of more born-digital PDFs is counted: how many preprocess would send to OCR;
- degraded pages (``bench/degraded_pages.py``): visit notes of ``corpus/text`` set on a page
  and degraded as clinics send them (G4 fax fine and standard, 2-4 degree skew both ways, a
  phone photo, 150 dpi speckle, a coloured stamp on tinted paper, two columns) and the real
  fax scans of ``corpus/pdfs``; a development part (tuned on) and a validation part (never),
  each read with page preparation ("after"), without it ("before", the adapter with
  ``steps=()``) and by bare tesseract; scored per kind, with the validation targets of
  issue 13 (mean page CER <= 3%, no page above 8%, no page empty without a flag). They are
  kept out of the clean-page figures and timings above, which stay comparable with before;
- ``fixtures/textract``: the images with real Textract responses. Textract is replayed
  through botocore's Stubber, so its figure is the adapter's fidelity to Textract's own
  text (not Textract's accuracy, which needs the real service) and its seconds are parse
  time, not Textract's; Tesseract reads the same images, scored against Textract's text.

Scores: CER and WER are edit distances over the reference's characters and words after
collapsing whitespace; "missed" is the share of reference words absent from the reading in
any order (reading order differences do not count there). Sets are micro-averaged. Peak
RSS is per engine: each engine's stage runs in a fresh process of its own; the
``tesseract`` program's own peak is sampled during the bare runs. The stage's Tesseract is
the adapter as configured (``--psm 3``, one OpenMP thread, orientation detection when a
page reads badly); bare Tesseract gets the same one thread (``OMP_THREAD_LIMIT=1``), and a
few pages are also timed with OpenMP's default threads to show why.

Figures go to stdout, ``ocr_eval.json`` and ``ocr_eval.png``; page text never leaves the
worker processes. Sampling: ``--sroie N`` receipts spread over the 20 (default all); every
other set is read whole; ``--degraded N`` pages of each kind in each part (default 2). About
two minutes on two idle cores without the degraded pages, 12-16 minutes with three of each
on two cores shared with other work.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import datetime as dt
import json
import logging
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/ocr_eval.py` as well as `python -m bench.ocr_eval`
    sys.path.insert(0, str(ROOT))

# The stage and its fakes are what both engines' workers run. What only one engine, the page
# rendering, the scoring or the plot needs is imported where it is used, so that each worker's
# peak RSS is its own engine's.
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord  # noqa: E402

from shared.stages import ocr  # noqa: E402
from shared.bootstrap import Deps  # noqa: E402
from shared.errors import PipelineError  # noqa: E402
from shared.keys import original_key, page_key  # noqa: E402
from shared.models import FileStatus, OcrMessage, PageText, ShellFile, ShellFilePage, Stage, TextSource  # noqa: E402
from shared.ports import QueueMessage  # noqa: E402
from shared.runtime.events import sqs_event  # noqa: E402
from shared.runtime.records import handle_record  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.fakes import InMemoryDb, InMemoryQueue, InMemoryStorage, OneEncounterPerDocument  # noqa: E402

SHARED = ROOT.parent / "shared"
OCR_CORPUS = SHARED / "corpus" / "ocr"
PDF_CORPUS = SHARED / "corpus" / "pdfs"
TEXTRACT_FIXTURES = SHARED / "fixtures" / "textract"

# Born-digital PDFs of corpus/pdfs whose every page carries a real text layer; the first two
# (a discharge-summary sample, a two-column drug information sheet) are also scored.
TEXT_LAYER_PDFS = [
    "hl7__UD_sample.pdf",
    "pdfcpu__Paclitaxel.PDF",
    "pymupdf__cms-etc-filled.pdf",
    "pypdf__multicolumn.pdf",
    "pdfjs__issue14117.pdf",
    "pdfjs__160F-2019.pdf",
    "qpdf__form-filled-by-acrobat.pdf",
    "pymupdf__test-2812.pdf",
    "pdfcpu__The_Go_Language_Gigon-Odienne-Wartel.pdf",
]
SCORED_TEXT_PDFS = TEXT_LAYER_PDFS[:2]

# The real-format medical PDFs of corpus/realfmt read as page images (reference: their text
# layer, in reading order). The default run reads these 8 (24 pages); --full all 20 (60).
REALFMT_DEFAULT = ["evinett_aci_visit_note_D2N001.pdf", "hl7_advance_directive_McBee.pdf",
                   "hl7_discharge_summary_UD_sample.pdf", "hl7_labcorp_lab_report_164947.pdf",
                   "jsl_easy_00.pdf", "jsl_easy_07.pdf", "jsl_easy_14.pdf"]
FUNSD_FAMILY = "FUNSD forms (real scans, train split)"
SROIE_FAMILY = "SROIE receipts (real scans)"
REALFMT_FAMILY = "real-format medical PDFs"
REAL_MAX_DROP = 0.02  # no page's word recall more than 2 points below bare Tesseract's

TEXTRACT_SET = "Textract images, ref. Textract text"
DEGRADED_SET = "degraded pages"
THRESHOLDS = {"cer": 0.02, "rotated_vs_upright": 2.0, "stage_vs_bare": 1.2, "clean_stage_vs_bare": 1.3,
              "validation_mean_cer": 0.03, "validation_max_cer": 0.08}


@dataclasses.dataclass
class Page:
    """One page JPEG to read, with what it should say."""

    set: str
    name: str
    jpeg: str  # path
    width: int
    height: int
    reference: str
    rotated: bool = False
    group: str | None = None  # UNLV zones: the scan they were cut from, scored together
    casefold: bool = False  # SROIE's transcripts are upper case by the dataset's convention
    kind: str | None = None  # degraded pages: how (bench/degraded_pages.py)
    split: str | None = None  # degraded pages: "development" or "validation"
    family: str | None = None  # real scans: the family whose pages must never read worse than bare
    bag: bool = False  # the reference is not in reading order (FUNSD's entity order): recall only


# --- scoring -------------------------------------------------------------------------------


def normalise(text: str, casefold: bool = False) -> str:
    text = " ".join(unicodedata.normalize("NFC", text).split())
    return text.upper() if casefold else text


def score(found: str, expected: str, casefold: bool = False) -> dict:
    from rapidfuzz.distance import Levenshtein

    hyp, ref = normalise(found, casefold), normalise(expected, casefold)
    hyp_words, ref_words = hyp.split(), ref.split()
    remaining: dict[str, int] = {}
    for word in hyp_words:
        remaining[word] = remaining.get(word, 0) + 1
    missed = 0
    for word in ref_words:
        if remaining.get(word, 0) > 0:
            remaining[word] -= 1
        else:
            missed += 1
    return {
        "char_edits": Levenshtein.distance(hyp, ref),
        "chars": len(ref),
        "word_edits": Levenshtein.distance(hyp_words, ref_words),
        "words": len(ref_words),
        "words_missed": missed,
    }


def rates(rows: list[dict], prefix: str = "") -> dict:
    chars = sum(r[prefix + "chars"] for r in rows) or 1
    words = sum(r[prefix + "words"] for r in rows) or 1
    return {
        "cer": sum(r[prefix + "char_edits"] for r in rows) / chars,
        "wer": sum(r[prefix + "word_edits"] for r in rows) / words,
        "missed": sum(r[prefix + "words_missed"] for r in rows) / words,
    }


# --- preparing pages (the real preprocess rendering) -------------------------------------------


def limits():
    from shared.pages.documents import Limits

    return Limits.from_settings(Settings())


def render(source: Path, out_dir: Path, stem: str) -> list[tuple[Path, object]]:
    """Every page of ``source`` as preprocess renders it: (JPEG path, RenderedPage)."""
    from shared.pages.documents import open_document
    from shared.pages.sniff import sniff

    pages = []
    with open_document(source, sniff(source), limits()) as document:
        for page in document.pages():
            path = out_dir / f"{stem}-{page.page_number:04d}.jpg"
            path.write_bytes(page.jpeg)
            page.release()
            pages.append((path, page))
    return pages


def one_page(source: Path, out_dir: Path, stem: str, set_name: str, reference: str, rotated=False) -> Page:
    path, page = render(source, out_dir, stem)[0]
    return Page(set_name, stem, str(path), page.width, page.height, reference, rotated)


def corpus_pages(work: Path, sroie_sample: int, notes: list[str]) -> list[Page]:
    manifest = OCR_CORPUS / "manifest.csv"
    if not manifest.is_file():
        notes.append(f"corpus/ocr: absent ({OCR_CORPUS}), skipped")
        return []
    rows = list(csv.DictReader(manifest.open()))
    pages: list[Page] = []
    sroie = [r for r in rows if r["image"].startswith("sroie/")]
    step = max(1, len(sroie) // sroie_sample) if sroie_sample else len(sroie) + 1
    chosen_sroie = {r["image"] for r in sroie[::step][:sroie_sample]}
    for row in rows:
        image = OCR_CORPUS / row["image"]
        truths = [OCR_CORPUS / t.strip() for t in row["ground_truth"].split(";")]
        if not image.is_file() or not all(t.is_file() for t in truths):
            notes.append(f"corpus/ocr: {row['image']} or its reference is missing, skipped")
            continue
        name = image.name
        if name.startswith("phototest"):
            rotated = name != "phototest.tif"
            set_name = "phototest rotated" if rotated else "phototest"
            pages.append(one_page(image, work, image.stem, set_name, truths[0].read_text(), rotated))
        elif name == "eurotext.tif":
            pages.append(one_page(image, work, image.stem, "eurotext (6 languages, eng model)", truths[0].read_text()))
        elif name == "linn.png":
            pages.append(one_page(image, work, image.stem, "linn (ref. is machine OCR)", truths[0].read_text()))
        elif row["image"].startswith("tesseract_test/8"):
            pages.extend(unlv_zones(image, truths, work))
        elif row["image"] in chosen_sroie:
            reference = "\n".join(_sroie_lines(truths[0]))
            page = one_page(image, work, "sroie-" + image.stem, "SROIE receipts (case-blind)", reference)
            page.casefold = True
            page.family = SROIE_FAMILY
            pages.append(page)
    if sroie:
        spread = "all" if len(chosen_sroie) == len(sroie) else f"one in {step} by name"
        notes.append(f"SROIE: {len(chosen_sroie)} of {len(sroie)} receipts ({spread})")
    return pages


def _sroie_lines(path: Path) -> list[str]:
    # x1,y1,...,x4,y4,transcript: the transcript may itself hold commas.
    rows = csv.reader(path.open(encoding="utf-8", errors="replace"))
    return [",".join(row[8:]) for row in rows if len(row) >= 9]


def unlv_zones(image: Path, truths: list[Path], work: Path) -> list[Page]:
    from PIL import Image

    text = next(t for t in truths if t.suffix == ".txt").read_text(errors="replace")
    zones = []
    for line in next(t for t in truths if t.suffix == ".uzn").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            zones.append(tuple(int(v) for v in parts[:4]))
    # The .txt holds the zones' text in .uzn order: each zone is read as a page of its own,
    # and their readings joined in that order are scored against the whole .txt.
    crops = []
    with Image.open(image) as scan:
        dpi = scan.info.get("dpi", (300, 300))
        for index, (x, y, w, h) in enumerate(zones, start=1):
            crop_path = work / f"{image.stem}-zone{index:02d}.png"
            scan.crop((x, y, x + w, y + h)).save(crop_path, dpi=dpi)
            crop = one_page(crop_path, work, f"{image.stem}-zone{index:02d}", "UNLV zones", "")
            crop.group = image.stem
            crops.append(crop)
    crops[0].reference = text
    return crops


CLEAN_DOCUMENTS = {
    "referral-letter": (
        "helv",
        11,
        [
            "Northfield Health Centre\n14 Orchard Lane, Northfield NF3 2QP\nTelephone 01632 960 418\n\n"
            "12 March 2024\n\nDear Dr Okafor,\n\n"
            "Re: Ms Alice Brennan, date of birth 04/09/1961, NHS number 943 476 5919\n\n"
            "Thank you for seeing this 62-year-old woman with a six-week history of exertional chest "
            "tightness and breathlessness on climbing two flights of stairs. Her symptoms settle with "
            "rest within five minutes. She has hypertension and type 2 diabetes, and stopped smoking "
            "in 2015 after a 30 pack-year history.\n\n"
            "On examination her blood pressure was 148/92 mmHg, pulse 78 regular, BMI 31.4. Heart "
            "sounds were normal with no murmurs. A resting ECG showed sinus rhythm with no acute "
            "changes. HbA1c was 58 mmol/mol and total cholesterol 6.1 mmol/L.\n\n"
            "Current medication: metformin 1 g twice daily, ramipril 5 mg once daily, atorvastatin "
            "20 mg at night. I have started aspirin 75 mg daily and a GTN spray as required.\n\n"
            "I would be grateful for your assessment and further investigation.\n\n"
            "Yours sincerely,\n\nDr Helen Marsh, MRCGP"
        ],
    ),
    "discharge-summary": (
        "tiro",
        11,
        [
            "ST ANSELM'S HOSPITAL - DISCHARGE SUMMARY\n\n"
            "Patient: Robert Lindqvist    Hospital number: K4821907\n"
            "Admitted: 02/11/2023 via the Emergency Department    Discharged: 09/11/2023\n"
            "Consultant: Dr P. Anand, Respiratory Medicine    Ward: Larch 3\n\n"
            "Diagnosis: community-acquired pneumonia, right lower lobe (CURB-65 score 2).\n"
            "Secondary: chronic obstructive pulmonary disease; atrial fibrillation.\n\n"
            "Presentation: four days of productive cough, fever of 38.9 C and pleuritic chest pain. "
            "Oxygen saturation was 89% on air. Chest X-ray showed right basal consolidation. "
            "C-reactive protein 214 mg/L, white cell count 16.2 x 10^9/L, urea 8.4 mmol/L.\n\n"
            "Treatment: intravenous co-amoxiclav 1.2 g three times daily and oral clarithromycin "
            "500 mg twice daily for 48 hours, then oral co-amoxiclav 625 mg three times daily to "
            "complete seven days. Controlled oxygen to target saturations of 88-92%.",
            "Progress: fever resolved on day 3 and oxygen was weaned off on day 5. He mobilised "
            "independently with the physiotherapists before discharge. Apixaban was continued "
            "throughout.\n\n"
            "Medication on discharge:\n"
            "1. Co-amoxiclav 625 mg three times daily for 2 more days\n"
            "2. Apixaban 5 mg twice daily\n"
            "3. Bisoprolol 2.5 mg once daily\n"
            "4. Tiotropium 18 micrograms inhaled once daily\n"
            "5. Salbutamol 100 micrograms, 2 puffs as required\n\n"
            "Follow-up: repeat chest X-ray in 6 weeks, arranged by the GP. Respiratory clinic "
            "review in 3 months. Please check renal function within 2 weeks.\n\n"
            "Signed: Dr Maya Feld, FY2, bleep 4417, on behalf of Dr P. Anand",
        ],
    ),
    "lab-report": (
        "cour",
        10,
        [
            "PATHOLOGY LABORATORY REPORT\n"
            "Specimen: venous blood      Collected: 21/05/2024 08:40\n"
            "Requested by: Dr S. Iyer    Received: 21/05/2024 10:15\n\n"
            "Test                 Result    Units       Range\n"
            "Haemoglobin          128       g/L         120-160\n"
            "White cell count     7.4       x10^9/L     4.0-11.0\n"
            "Platelets            265       x10^9/L     150-400\n"
            "Sodium               139       mmol/L      133-146\n"
            "Potassium            5.6 H     mmol/L      3.5-5.3\n"
            "Creatinine           112       umol/L      59-104\n"
            "eGFR                 54 L      mL/min      >60\n"
            "ALT                  23        U/L         <41\n"
            "TSH                  2.31      mU/L        0.27-4.20\n\n"
            "Comment: potassium raised; sample not haemolysed. Suggest repeat within one week "
            "and review of ramipril dose. Reported by: J. Castellanos, Biomedical Scientist."
        ],
    ),
}


def write_clean_pdfs(work: Path) -> list[Path]:
    import pymupdf

    paths = []
    for stem, (font, size, pages) in CLEAN_DOCUMENTS.items():
        doc = pymupdf.open()
        for body in pages:
            page = doc.new_page(width=595, height=842)  # A4
            left = page.insert_textbox(pymupdf.Rect(60, 60, 535, 800), body, fontname=font, fontsize=size)
            assert left >= 0, f"{stem}: text does not fit"
        path = work / f"clean-{stem}.pdf"
        doc.save(path)
        doc.close()
        paths.append(path)
    return paths


def text_pdf_pages(work: Path, notes: list[str]) -> tuple[list[Page], dict]:
    """Pages rendered from text PDFs for scoring, and the count of text-layer pages that
    preprocess would have sent to OCR (native_text None)."""
    pages: list[Page] = []
    counts = {"files": 0, "pages": 0, "sent_to_ocr": 0, "per_file": {}}
    sources = [(p, "rendered clean pages") for p in write_clean_pdfs(work)]
    present = [name for name in TEXT_LAYER_PDFS if (PDF_CORPUS / name).is_file()]
    if len(present) < len(TEXT_LAYER_PDFS):
        notes.append(f"corpus/pdfs: {len(TEXT_LAYER_PDFS) - len(present)} text-layer PDFs absent, skipped")
    sources += [(PDF_CORPUS / name, f"text PDF {name}" if name in SCORED_TEXT_PDFS else None) for name in present]
    for source, set_name in sources:
        rendered = render(source, work, source.stem)
        sent = sum(page.native_text is None for _, page in rendered)
        counts["files"] += 1
        counts["pages"] += len(rendered)
        counts["sent_to_ocr"] += sent
        counts["per_file"][source.name] = {"pages": len(rendered), "sent_to_ocr": sent}
        for path, page in rendered:
            if set_name and page.native_text is not None:
                pages.append(Page(set_name, path.stem, str(path), page.width, page.height, page.native_text.text))
            else:
                path.unlink()
    return pages, counts


def degraded_page_list(work: Path, per_kind: int, notes: list[str]) -> list[Page]:
    """The degraded pages (bench/degraded_pages.py), each rendered by preprocess as production would."""
    from bench.degraded_pages import degraded_sources

    pages = []
    folder = work / "degraded"
    folder.mkdir()
    for source in degraded_sources(SHARED, folder, per_kind, notes):
        stem = source.path.stem if source.kind == "real fax scan" else source.name.split(" ")[0]
        path, page = render(source.path, folder, stem)[0]
        pages.append(Page(DEGRADED_SET, source.name, str(path), page.width, page.height, source.reference,
                          kind=source.kind, split=source.split))
    return pages


def real_scan_pages(work: Path, funsd: int, realfmt_all: bool, notes: list[str]) -> list[Page]:
    """FUNSD's training forms (real noisy scans; reference: their annotated words, a bag) and
    the real-format PDFs' pages as images (reference: the text layer), rendered by preprocess.
    FUNSD's 50 test forms are held out of corpus/ocr: never tuned on, not read here."""
    pages: list[Page] = []
    folder = OCR_CORPUS / "funsd-train"
    names = sorted(p.stem for p in (folder / "images").glob("*.png")) if folder.is_dir() else []
    if not names:
        notes.append(f"FUNSD: absent ({folder}), skipped")
    step = max(1, len(names) // funsd) if funsd else len(names) + 1
    out = work / "real"
    out.mkdir()
    for name in names[::step][:funsd]:
        annotation = json.loads((folder / "annotations" / f"{name}.json").read_text())
        words = [w["text"].strip() for entity in annotation["form"] for w in entity["words"] if w["text"].strip()]
        page = one_page(folder / "images" / f"{name}.png", out, f"funsd-{name}", FUNSD_FAMILY, " ".join(words))
        page.family, page.bag = FUNSD_FAMILY, True
        pages.append(page)
    if names:
        notes.append(f"FUNSD train: {len(pages)} of {len(names)} forms; its 50 test forms are held out (not in corpus)")
    realfmt = SHARED / "corpus" / "realfmt" / "pdfs"
    files = sorted(realfmt.glob("*.pdf")) if realfmt_all else [realfmt / n for n in REALFMT_DEFAULT]
    files = [f for f in files if f.is_file()]
    if not files:
        notes.append(f"realfmt: absent ({realfmt}), skipped")
    for source in files:
        for path, rendered in render(source, out, source.stem):
            if rendered.native_text is None or not rendered.native_text.text.strip():
                continue
            pages.append(Page(REALFMT_FAMILY, path.stem, str(path), rendered.width, rendered.height,
                              rendered.native_text.text, family=REALFMT_FAMILY))
    return pages


def textract_fixture_pages(work: Path, notes: list[str]) -> list[tuple[Page, str]]:
    """(page JPEG with Textract's own text as reference, response path) per fixture image."""
    if not TEXTRACT_FIXTURES.is_dir():
        notes.append(f"fixtures/textract: absent ({TEXTRACT_FIXTURES}), skipped")
        return []
    out = []
    for response_path in sorted(TEXTRACT_FIXTURES.glob("*.textract.json")):
        image = response_path.with_name(response_path.name.removesuffix(".textract.json"))
        response = json.loads(response_path.read_text())
        reference = "\n".join(b["Text"] for b in response["Blocks"] if b["BlockType"] == "LINE")
        if image.is_file():
            page = one_page(image, work, "textract-" + image.stem.replace(".", "-"), TEXTRACT_SET, reference)
        else:  # saved without its image: the replay still scores the parser
            page = Page(TEXTRACT_SET, response_path.name, "", 0, 0, reference)
        out.append((page, str(response_path)))
    return out


# --- worker processes ------------------------------------------------------------------------


def _quiet_logs() -> None:
    # The stage logs as in production (formatted JSON), to nowhere: the bench prints figures.
    for handler in logging.getLogger("docpipe").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the worker


class _Stage:
    """The OCR stage over in-memory fakes: files of one page in status OCR, delivered as SQS records."""

    def __init__(self, engine, tmp: Path) -> None:
        self.deps = Deps(
            settings=Settings(),
            queue=InMemoryQueue(),
            storage=InMemoryStorage(tmp),
            db=InMemoryDb(),
            ocr=engine,
            encounters=OneEncounterPerDocument(),
        )

    def add_file(self, jpeg: bytes, width: int, height: int) -> tuple[uuid.UUID, str]:
        """A file whose one page is stored and waits for OCR; (shell_file_id, OCR message body)."""
        db, sfid, patient = self.deps.db, uuid.uuid4(), uuid.uuid4()
        key = page_key(patient, sfid, 1)
        db.create_shell_file(
            ShellFile(
                id=sfid,
                patient_id=patient,
                storage_key=original_key(patient, sfid, "jpg"),
                status=FileStatus.OCR,
                page_count=1,
            )
        )
        db.upsert_page(
            ShellFilePage(
                shell_file_id=sfid,
                page_number=1,
                storage_key=key,
                width=max(1, width),
                height=max(1, height),
                text_source=TextSource.OCR,
            )
        )
        self.deps.storage.put_bytes(key, jpeg, "image/jpeg")
        return sfid, OcrMessage(shell_file_id=sfid, page_numbers=[1]).model_dump_json()

    def deliver(self, body: str, receive_count: int = 1) -> None:
        message = QueueMessage(Stage.OCR.value, str(uuid.uuid4()), "rh", body, receive_count)
        event = sqs_event([message], "arn:aws:sqs:us-east-1:000000000000:docpipe-ocr", "us-east-1")
        handle_record(Stage.OCR, SQSRecord(event["Records"][0]), ocr.run, self.deps)

    def read(self, jpeg: bytes, width: int, height: int) -> tuple[PageText, float]:
        """The page through the stage: (its text, taken back out of the fakes; seconds of handle_record)."""
        sfid, body = self.add_file(jpeg, width, height)
        started = time.perf_counter()
        self.deliver(body)
        seconds = time.perf_counter() - started
        self.forget(sfid)
        return self.deps.db.texts.pop((sfid, 1)), seconds

    def forget(self, sfid: uuid.UUID) -> None:
        # Only the page text stays (popped by the caller): the fakes must not grow the RSS measured.
        row = self.deps.db.files[sfid]
        self.deps.storage.objects.pop(page_key(row.patient_id, sfid, 1), None)
        self.deps.queue.messages.clear()


def vm_hwm_kb(pid: int | str = "self") -> int | None:
    """Peak RSS of a live process's current program, KiB (Linux).

    Not ``ru_maxrss``: Linux carries a process's high-water mark across exec, and Python
    starts children with vfork, so a child's ``ru_maxrss`` is at least its parent's RSS.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _bare_tesseract(jpeg: str, omp_threads: str | None = "1") -> tuple[str, float, int]:
    """`tesseract IMG stdout`: (text, seconds, peak RSS KiB, sampled every 10 ms)."""
    binary = shutil.which("tesseract")
    env = {"PATH": os.path.dirname(binary) + os.pathsep + os.defpath}
    if omp_threads:
        env["OMP_THREAD_LIMIT"] = omp_threads
    peak = [0]
    done = threading.Event()

    def watch(pid: int) -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], vm_hwm_kb(pid) or 0)

    started = time.perf_counter()
    proc = subprocess.Popen(
        [binary, jpeg, "stdout"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    watcher = threading.Thread(target=watch, args=(proc.pid,), daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    return out.decode("utf-8", errors="replace"), seconds, peak[0]


BARE_CACHE = ROOT / "bench" / "results" / "cache" / "bare-tesseract"


def _bare_cached(path: str, jpeg: bytes) -> tuple[str, float, int]:
    """``_bare_tesseract`` of a page image, kept by the image's hash and Tesseract's version."""
    import hashlib

    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    key = hashlib.sha256(version.encode() + jpeg).hexdigest()[:24]
    cached = BARE_CACHE / f"{key}.json"
    if cached.is_file():
        data = json.loads(cached.read_text())
        return data["text"], data["seconds"], data["rss_kb"]
    text, seconds, rss = _bare_tesseract(path)
    BARE_CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"text": text, "seconds": seconds, "rss_kb": rss}))
    return text, seconds, rss


EMPTY_MAX_CHARS = 10  # letters and digits: a reading with fewer is an empty page (as the adapter counts)


def _alnum(text: str) -> int:
    return sum(1 for c in text if c.isalnum())


def tesseract_worker(pages: list[Page], repeat: int, omp_sample: int) -> dict:
    """Each page through the OCR stage with TesseractOcr and through bare tesseract,
    interleaved (which goes first alternates), ``repeat`` times; scores of the first round.
    Degraded pages are also read once by the stage without page preparation ("before")."""
    from shared.adapters.tesseract import TesseractOcr

    _quiet_logs()
    settings = Settings()
    engine = TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, settings.ocr_timeout_s)
    unprepared = TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, settings.ocr_timeout_s, steps=())
    rows = []
    with tempfile.TemporaryDirectory(prefix="docpipe-bench-") as tmp:
        stage = _Stage(engine, Path(tmp))
        before_stage = _Stage(unprepared, Path(tmp))
        for index, page in enumerate(pages):
            jpeg = Path(page.jpeg).read_bytes()
            stage_s, bare_s, bare_rss = [], [], []
            text = bare_text = None
            for round_ in range(1 if page.family and page.family != SROIE_FAMILY else repeat):
                if page.family and page.family != SROIE_FAMILY:
                    # Real scans are read for their words: bare Tesseract's reading of a page
                    # image does not change, and is cached by the image's hash.
                    read, seconds = stage.read(jpeg, page.width, page.height)
                    bare = _bare_cached(page.jpeg, jpeg)
                elif (index + round_) % 2 == 0:
                    read, seconds = stage.read(jpeg, page.width, page.height)
                    bare = _bare_tesseract(page.jpeg)
                else:
                    bare = _bare_tesseract(page.jpeg)
                    read, seconds = stage.read(jpeg, page.width, page.height)
                stage_s.append(seconds)
                bare_s.append(bare[1])
                bare_rss.append(bare[2])
                if text is None:
                    text, bare_text, first = read.text, bare[0], read
            row = {
                "set": page.set,
                "name": page.name,
                "rotated": page.rotated,
                "stage_s": statistics.median(stage_s),
                "bare_s": statistics.median(bare_s),
                "tesseract_rss_kb": max(bare_rss),
                "confidence": first.confidence,
                "flag": first.flag,
                "ink_coverage": first.ink_coverage,
                "preparation": first.preparation,
                "family": page.family,
                "bag": page.bag,
                "_text": text,
                "_bare_text": bare_text,
            }
            if page.kind:
                before, before_s = before_stage.read(jpeg, page.width, page.height)
                row.update({"kind": page.kind, "split": page.split, "before_s": before_s,
                            "before_flag": before.flag, "_before_text": before.text})
            rows.append(row)
        omp = []
        for page in pages[:omp_sample]:
            omp.append({"name": page.name, "bare_s": _bare_tesseract(page.jpeg)[1],
                        "bare_omp_default_s": _bare_tesseract(page.jpeg, omp_threads=None)[1]})
    # Scores are computed here, so page text never crosses back to the parent.
    by_name = {page.name: page for page in pages}
    groups: dict[str, list[dict]] = {}
    for row in rows:
        page = by_name[row["name"]]
        if page.group:
            groups.setdefault(page.group, []).append(row)
            continue
        if "_before_text" in row:
            before_text = row.pop("_before_text")
            row.update({"before_" + k: v for k, v in score(before_text, page.reference).items()})
            row["before_empty"] = _alnum(before_text) < EMPTY_MAX_CHARS
            row["empty"] = _alnum(row["_text"]) < EMPTY_MAX_CHARS
        row.update(score(row.pop("_text"), page.reference, page.casefold))
        row.update({"bare_" + k: v for k, v in score(row.pop("_bare_text"), page.reference, page.casefold).items()})
    for members in groups.values():
        # The zones of one scan, scored once: their readings joined in .uzn order against its .txt.
        reference = by_name[members[0]["name"]].reference
        text = "\n\n".join(row.pop("_text") for row in members)
        bare_text = "\n\n".join(row.pop("_bare_text") for row in members)
        members[0].update(score(text, reference))
        members[0].update({"bare_" + k: v for k, v in score(bare_text, reference).items()})
        for row in members[1:]:
            row.update({k: 0 for k in members[0] if k.endswith(("edits", "chars", "words", "missed"))})
    return {
        "rows": rows,
        "omp": omp,
        "process_peak_rss_kb": vm_hwm_kb(),
        "children_peak_rss_kb": max((row["tesseract_rss_kb"] for row in rows), default=0),
        "tesseract_version": subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
        .stdout.splitlines()[0],
    }


def textract_worker(fixtures: list[tuple[Page, str]]) -> dict:
    """Each fixture image through the OCR stage with TextractOcr, Textract replayed by Stubber;
    then the throttling paths: through the stage (a retry, then success on redelivery) and,
    with moto installed, botocore's adaptive retries on the wire."""
    import boto3
    import botocore.config
    from botocore.stub import ANY, Stubber

    from shared.adapters.textract import TextractOcr

    _quiet_logs()
    client = boto3.client(
        "textract",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=botocore.config.Config(retries={"mode": "adaptive", "max_attempts": 8}),
    )
    engine = TextractOcr(client)
    rows = []
    with tempfile.TemporaryDirectory(prefix="docpipe-bench-") as tmp:
        stage = _Stage(engine, Path(tmp))
        for page, response_path in fixtures:
            response = _as_detect_response(json.loads(Path(response_path).read_text()))
            jpeg = Path(page.jpeg).read_bytes() if page.jpeg else b"\xff\xd8\xff\xe0"
            with Stubber(client) as stub:
                stub.add_response("detect_document_text", response, {"Document": {"Bytes": ANY}})
                read, seconds = stage.read(jpeg, page.width, page.height)
            rows.append({"set": page.set, "name": page.name, "stage_s": seconds, **score(read.text, page.reference)})
        throttle = _throttle_through_stage(stage, client, fixtures)
    peak = vm_hwm_kb()  # before moto, which the demonstration below imports, costs its own
    wire = _throttle_on_the_wire(fixtures)
    return {"rows": rows, "throttle": {"stage": throttle, "adaptive_retries": wire}, "process_peak_rss_kb": peak}


def _as_detect_response(response: dict) -> dict:
    # Some fixtures were made by AnalyzeDocument; only the model version key's name differs.
    if "AnalyzeDocumentModelVersion" in response:
        response["DetectDocumentTextModelVersion"] = response.pop("AnalyzeDocumentModelVersion")
    return response


def _throttle_through_stage(stage: _Stage, client, fixtures) -> dict:
    """A page whose Textract call is still throttled after botocore's retries: the record
    must raise the retryable error and leave the file in OCR; redelivered, it succeeds."""
    from botocore.stub import ANY, Stubber

    _, response_path = fixtures[0]
    response = _as_detect_response(json.loads(Path(response_path).read_text()))
    sfid, body = stage.add_file(b"\xff\xd8\xff\xe0", 1, 1)
    db = stage.deps.db
    raised = None
    with Stubber(client) as stub:
        stub.add_client_error("detect_document_text", service_error_code="ThrottlingException", http_status_code=400)
        try:
            stage.deliver(body, receive_count=1)
        except PipelineError as exc:
            raised = exc
        after_first, first_run = db.get_shell_file(sfid), db.runs[-1]
        stub.add_response("detect_document_text", response, {"Document": {"Bytes": ANY}})
        stage.deliver(body, receive_count=2)
    return {
        "first_delivery": {
            "raised": type(raised).__name__ if raised else None,
            "retryable": bool(raised and raised.retryable),
            "file_status": after_first.status.value,
            "run_outcome": first_run.outcome,
            "error_code": first_run.error_code,
        },
        "second_delivery": {
            "file_status": db.get_shell_file(sfid).status.value,
            "engine": db.texts[(sfid, 1)].engine,
        },
    }


def _throttle_on_the_wire(fixtures) -> dict | None:
    """HTTP 400 ThrottlingException on the first send, a moto backend seeded with the real
    response behind it: botocore's adaptive mode must send again and succeed."""
    try:
        import moto
        from moto.textract.models import TextractBackend
    except ImportError:
        return None
    from botocore.awsrequest import AWSResponse

    from shared.adapters.textract import TextractOcr

    class Body:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def stream(self, **_):
            yield self.data

    _, response_path = fixtures[0]
    TextractBackend.BLOCKS = json.loads(Path(response_path).read_text())["Blocks"]
    sends = []
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_TEXTRACT", "AWS_PROFILE"):
        os.environ.pop(name, None)
    with moto.mock_aws(), tempfile.TemporaryDirectory() as tmp:
        settings = Settings(aws_region="us-east-1", aws_endpoint_url=None, textract_endpoint_url=None)
        engine = TextractOcr.from_settings(settings)

        def on_send(request, **_):
            sends.append(1)
            if len(sends) == 1:
                body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
                return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, Body(body))
            return None

        engine._client.meta.events.register_first("before-send.textract.DetectDocumentText", on_send)
        image = Path(tmp) / "page.jpg"
        image.write_bytes(b"\xff\xd8\xff\xe0")
        started = time.perf_counter()
        text = engine.read(image, 1)
        seconds = time.perf_counter() - started
    return {"http_sends": len(sends), "succeeded": bool(text.lines), "seconds": seconds}


# --- the parent --------------------------------------------------------------------------------


def run_isolated(fn, *args):
    """Run ``fn`` in a fresh process, so its peak RSS is its own."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def summarise(rows: list[dict], key_prefix: str = "") -> dict:
    return {"pages": len(rows), **rates(rows, key_prefix)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sroie", type=int, default=20, help="receipts to read, spread over the set (default all 20)")
    parser.add_argument("--repeat", type=int, default=1, help="timing rounds per page (median)")
    parser.add_argument("--omp-sample", type=int, default=2, help="pages also timed with OpenMP's default threads")
    parser.add_argument("--degraded", type=int, default=2,
                        help="degraded pages of each kind in each part, development and validation (default 2)")
    parser.add_argument("--funsd", type=int, default=149, help="FUNSD training forms to read (default all 149)")
    parser.add_argument("--full", action="store_true", help="every real-format PDF (60 pages), 3 degraded pages a kind")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="where corpus/ and fixtures/ are")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    global OCR_CORPUS, PDF_CORPUS, TEXTRACT_FIXTURES, SHARED
    SHARED = args.shared
    OCR_CORPUS = args.shared / "corpus" / "ocr"
    PDF_CORPUS = args.shared / "corpus" / "pdfs"
    TEXTRACT_FIXTURES = args.shared / "fixtures" / "textract"
    started = time.perf_counter()
    notes: list[str] = []
    if shutil.which("tesseract") is None:
        print("tesseract is not installed: nothing to measure")
        return 0
    try:
        import matplotlib  # noqa: F401
        import rapidfuzz  # noqa: F401
    except ImportError as exc:
        print(f"the bench needs its extra dependencies ({exc.name}): pip install -e '.[bench]'")
        return 2

    with tempfile.TemporaryDirectory(prefix="docpipe-ocr-eval-") as tmp:
        work = Path(tmp)
        corpus = corpus_pages(work, args.sroie, notes)
        text_pages, text_layer = text_pdf_pages(work, notes)
        fixtures = textract_fixture_pages(work, notes)
        if args.full:
            args.degraded = max(args.degraded, 3)
        degraded = degraded_page_list(work, args.degraded, notes) if args.degraded else []
        real = real_scan_pages(work, args.funsd, args.full, notes)
        tesseract_pages = corpus + text_pages + [page for page, _ in fixtures if page.jpeg] + degraded + real
        print(f"pages: {len(tesseract_pages)} for Tesseract ({len(degraded)} degraded), "
              f"{len(fixtures)} Textract replays; "
              f"text-layer PDFs: {text_layer['files']} files, {text_layer['pages']} pages")
        for note in notes:
            print("  " + note)
        tesseract = run_isolated(tesseract_worker, tesseract_pages, args.repeat, args.omp_sample)
        textract = run_isolated(textract_worker, fixtures) if fixtures else None

    report = build_report(tesseract, textract, text_layer, notes, args, time.perf_counter() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ocr_eval.json").write_text(json.dumps(report, indent=2))
    print_report(report)
    plot(report, args.out / "ocr_eval.png")
    if report["degraded"]:
        plot_degraded(report, args.out / "ocr_eval_degraded.png")
    print(f"\nwrote {args.out / 'ocr_eval.json'}, {args.out / 'ocr_eval.png'} and ocr_eval_degraded.png "
          f"in {time.perf_counter() - started:.0f} s")
    return 0


def build_report(tesseract: dict, textract: dict | None, text_layer: dict, notes: list[str], args, elapsed: float):
    degraded_rows = [row for row in tesseract["rows"] if row.get("kind")]
    real_rows = [row for row in tesseract["rows"] if row.get("family") in (FUNSD_FAMILY, REALFMT_FAMILY)]
    rows = [row for row in tesseract["rows"] if not row.get("kind") and row not in real_rows]
    sets: list[dict] = []
    for name in dict.fromkeys(row["set"] for row in rows):
        members = [row for row in rows if row["set"] == name]
        sets.append(
            {
                "set": name,
                "engine": "tesseract",
                "pages": len(members),
                **rates(members),
                "bare": rates(members, "bare_"),
                "stage_s_per_page": statistics.fmean(r["stage_s"] for r in members),
                "bare_s_per_page": statistics.fmean(r["bare_s"] for r in members),
                "tesseract_peak_rss_mb": max(r["tesseract_rss_kb"] for r in members) / 1024,
            }
        )
    if textract:
        members = textract["rows"]
        sets.append(
            {
                "set": TEXTRACT_SET,
                "engine": "textract (replay)",
                "pages": len(members),
                **rates(members),
                "stage_s_per_page": statistics.fmean(r["stage_s"] for r in members),
            }
        )

    def timing(selected: list[dict]) -> dict:
        stage, bare = sum(r["stage_s"] for r in selected), sum(r["bare_s"] for r in selected)
        return {
            "pages": len(selected),
            "stage_s_per_page": stage / max(1, len(selected)),
            "bare_s_per_page": bare / max(1, len(selected)),
            "ratio": stage / bare if bare else None,
        }

    timings = {
        "all pages": timing(rows),
        "degraded pages": timing(degraded_rows),
        "upright pages": timing([r for r in rows if not r["rotated"]]),
        "rotated copies": timing([r for r in rows if r["rotated"]]),
        "median per-page ratio": statistics.median(r["stage_s"] / r["bare_s"] for r in rows) if rows else None,
        "openmp_default_threads": tesseract["omp"],
    }
    by_set = {s["set"]: s for s in sets}
    checks = []

    def check(item: str, what: str, figure, limit, ok: bool | None) -> None:
        checks.append({"item": item, "what": what, "figure": figure, "limit": limit, "pass": ok})

    if "phototest" in by_set:
        upright = by_set["phototest"]["cer"]
        check("1", "CER phototest", upright, THRESHOLDS["cer"], upright <= THRESHOLDS["cer"])
        rotated = [r for r in rows if r["set"] == "phototest rotated"]
        for row in rotated:
            cer = row["char_edits"] / row["chars"]
            limit = THRESHOLDS["rotated_vs_upright"] * upright
            check("1", f"CER {row['name']} (<= 2x upright)", cer, limit, cer <= limit)
    if "rendered clean pages" in by_set:
        cer = by_set["rendered clean pages"]["cer"]
        check("1", "CER rendered clean pages", cer, THRESHOLDS["cer"], cer <= THRESHOLDS["cer"])
    check("2", f"text-layer pages sent to OCR (of {text_layer['pages']})", text_layer["sent_to_ocr"], 0,
          text_layer["sent_to_ocr"] == 0)
    ratio = timings["all pages"]["ratio"]
    check("3", "OCR stage s/page / bare tesseract s/page", ratio, THRESHOLDS["stage_vs_bare"],
          ratio is not None and ratio <= THRESHOLDS["stage_vs_bare"])
    upright = timings["upright pages"]["ratio"]
    check("13", "clean upright pages: OCR stage (with preparation) s/page / bare tesseract", upright,
          THRESHOLDS["clean_stage_vs_bare"], upright is not None and upright <= THRESHOLDS["clean_stage_vs_bare"])
    degraded = degraded_report(degraded_rows)
    validation = degraded.get("parts", {}).get("validation")
    if validation:
        check("13", "validation: mean page CER after preparation", validation["mean_cer"],
              THRESHOLDS["validation_mean_cer"], validation["mean_cer"] <= THRESHOLDS["validation_mean_cer"])
        check("13", f"validation: worst page CER ({validation['worst_page']})", validation["max_cer"],
              THRESHOLDS["validation_max_cer"], validation["max_cer"] <= THRESHOLDS["validation_max_cer"])
        check("13", "validation: pages empty without a flag", validation["empty_unflagged"], 0,
              validation["empty_unflagged"] == 0)
    real = real_report(real_rows + [row for row in rows if row.get("family") == SROIE_FAMILY])
    for family, figures in real.items():
        check("23", f"{family}: mean word recall >= bare's", f"{figures['recall']:.4f} vs {figures['bare_recall']:.4f}",
              "bare", figures["recall"] >= figures["bare_recall"])
        if figures.get("cer") is not None:
            check("23", f"{family}: CER <= bare's", f"{figures['cer']:.4f} vs {figures['bare_cer']:.4f}", "bare",
                  figures["cer"] <= figures["bare_cer"])
        check("23", f"{family}: pages more than 2 points of recall below bare (worst {figures['worst_page']})",
              figures["pages_below"], 0, figures["pages_below"] == 0)
    if textract:
        stage = textract["throttle"]["stage"]
        first, second = stage["first_delivery"], stage["second_delivery"]
        ok = (first["retryable"] and first["file_status"] == "ocr" and first["run_outcome"] == "retry"
              and second["file_status"] != "failed" and second["engine"] == "textract")
        figure = (f"1st delivery: {first['raised']} ({first['error_code']}), file {first['file_status']}; "
                  f"2nd: read, file {second['file_status']}")
        check("4", "throttled Textract page through the OCR stage", figure, "retry, never failed", ok)
        wire = textract["throttle"]["adaptive_retries"]
        if wire is not None:
            check("4", "throttled Textract call, botocore adaptive retries", f"{wire['http_sends']} sends, "
                  f"{'succeeded' if wire['succeeded'] else 'failed'}", "retried, succeeded",
                  wire["http_sends"] == 2 and wire["succeeded"])
    return {
        "meta": {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "tesseract": tesseract["tesseract_version"],
            "command": " ".join(["python -m bench.ocr_eval", *sys.argv[1:]]),
            "repeat": args.repeat,
            "seconds": elapsed,
            "notes": notes,
        },
        "sets": sets,
        "timing": timings,
        "peak_rss_mb": {
            "tesseract: OCR stage process": tesseract["process_peak_rss_kb"] / 1024,
            "tesseract: the tesseract program": tesseract["children_peak_rss_kb"] / 1024,
            **({"textract: OCR stage process": textract["process_peak_rss_kb"] / 1024} if textract else {}),
        },
        "degraded": degraded,
        "real_scans": real,
        "text_layer": text_layer,
        "textract_throttle": textract["throttle"] if textract else None,
        "checks": checks,
        "pages": rows + degraded_rows + real_rows + (textract["rows"] if textract else []),
    }


def real_report(rows: list[dict]) -> dict:
    """Per real-scan family: mean page word recall and (reading-order references) CER, against
    bare Tesseract on the same images; pages more than REAL_MAX_DROP below bare; the worst."""

    def recall(row: dict, prefix: str = "") -> float:
        return 1 - row[prefix + "words_missed"] / max(1, row[prefix + "words"])

    out = {}
    for family in dict.fromkeys(r["family"] for r in rows):
        members = [r for r in rows if r["family"] == family]
        drops = [(recall(r) - recall(r, "bare_"), r["name"]) for r in members]
        worst = min(drops)
        bag = all(r.get("bag") for r in members)
        out[family] = {
            "pages": len(members),
            "recall": statistics.fmean(recall(r) for r in members),
            "bare_recall": statistics.fmean(recall(r, "bare_") for r in members),
            "cer": None if bag else rates(members)["cer"],
            "bare_cer": None if bag else rates(members, "bare_")["cer"],
            "pages_below": sum(d < -REAL_MAX_DROP for d, _ in drops),
            "pages_above": sum(d > REAL_MAX_DROP for d, _ in drops),
            "worst_drop": worst[0],
            "worst_page": worst[1],
            "prepared_kept": sum(bool(r["preparation"]) for r in members),
            "stage_s_per_page": statistics.fmean(r["stage_s"] for r in members),
            "bare_s_per_page": statistics.fmean(r["bare_s"] for r in members),
        }
    return out


def degraded_report(rows: list[dict]) -> dict:
    """CER per degradation kind, before (no preparation) and after, per part; page-level
    figures of each part (mean and worst page CER, empty pages with and without a flag)."""
    if not rows:
        return {}

    def page_cer(row: dict, prefix: str = "") -> float:
        return row[prefix + "char_edits"] / max(1, row[prefix + "chars"])

    def part(members: list[dict]) -> dict:
        return {
            "pages": len(members),
            "cer_before": rates(members, "before_")["cer"],
            "cer_after": rates(members)["cer"],
            "mean_cer_before": statistics.fmean(page_cer(r, "before_") for r in members),
            "mean_cer": statistics.fmean(page_cer(r) for r in members),
            "max_cer": max(page_cer(r) for r in members),
            "worst_page": max(members, key=page_cer)["name"],
            "empty_before": sum(r["before_empty"] for r in members),
            "empty_unflagged_before": sum(r["before_empty"] and not r["before_flag"] for r in members),
            "empty": sum(r["empty"] for r in members),
            "empty_unflagged": sum(r["empty"] and not r["flag"] for r in members),
            "flagged": sum(bool(r["flag"]) for r in members),
            "stage_s_per_page": statistics.fmean(r["stage_s"] for r in members),
            "before_s_per_page": statistics.fmean(r["before_s"] for r in members),
            "bare_s_per_page": statistics.fmean(r["bare_s"] for r in members),
            "ratio_vs_bare": sum(r["stage_s"] for r in members) / max(1e-9, sum(r["bare_s"] for r in members)),
        }

    kinds = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        kinds[kind] = {split: part(m) for split in ("development", "validation")
                       if (m := [r for r in rows if r["kind"] == kind and r["split"] == split])}
    parts = {split: part(m) for split in ("development", "validation")
             if (m := [r for r in rows if r["split"] == split])}
    steps: dict[str, dict[str, int]] = {}
    for row in rows:
        for step in row["preparation"]:
            steps.setdefault(row["kind"], {}).setdefault(step, 0)
            steps[row["kind"]][step] += 1
    return {"kinds": kinds, "parts": parts, "steps_applied": steps}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:5.2f}%"


def print_report(report: dict) -> None:
    print(f"\n{report['meta']['tesseract']}; {report['meta']['machine']}")
    header = (f"{'set':36} {'engine':18} {'pages':>5} {'CER':>7} {'WER':>7} {'missed':>7} {'s/page':>7} "
              f"| {'bare CER':>8} {'bare s/p':>8} {'tess. RSS':>9}")
    print("\n" + header + "\n" + "-" * len(header))
    for s in report["sets"]:
        bare = s.get("bare")
        print(
            f"{s['set'][:36]:36} {s['engine']:18} {s['pages']:5d} {_pct(s['cer']):>7} {_pct(s['wer']):>7} "
            f"{_pct(s['missed']):>7} {s['stage_s_per_page']:7.3f} | "
            f"{_pct(bare['cer']) if bare else '-':>8} "
            f"{(format(s['bare_s_per_page'], '8.3f')) if bare else '-':>8} "
            f"{(format(s['tesseract_peak_rss_mb'], '6.0f') + ' MB') if bare else '-':>9}"
        )
    print("\nOCR stage vs bare `tesseract IMG stdout` (both OMP_THREAD_LIMIT=1), same pages, interleaved:")
    for name in ("all pages", "upright pages", "rotated copies"):
        t = report["timing"][name]
        if t["pages"]:
            print(f"  {name:15} {t['pages']:3d} pages  stage {t['stage_s_per_page']:.3f} s/page  "
                  f"bare {t['bare_s_per_page']:.3f} s/page  ratio {t['ratio']:.3f}")
    if report["timing"]["median per-page ratio"] is not None:
        print(f"  median per-page ratio {report['timing']['median per-page ratio']:.3f}")
    for o in report["timing"]["openmp_default_threads"]:
        print(f"  bare with OpenMP's default threads, {o['name']}: {o['bare_omp_default_s']:.2f} s "
              f"vs {o['bare_s']:.2f} s with one thread")
    print("\npeak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in report["peak_rss_mb"].items()))
    t = report["text_layer"]
    print(f"text-layer PDFs: {t['files']} files, {t['pages']} pages, {t['sent_to_ocr']} sent to OCR")
    d = report["degraded"]
    if d:
        print_degraded(d)
    if report.get("real_scans"):
        print_real(report["real_scans"])
    print("\nchecks (issues 5, 13 and 23, 'It must show'):")
    for c in report["checks"]:
        figure = _pct(c["figure"]) if isinstance(c["figure"], float) and c["item"] == "1" else c["figure"]
        if isinstance(figure, float):
            figure = f"{figure:.3f}"
        limit = _pct(c["limit"]) if isinstance(c["limit"], float) and c["item"] == "1" else c["limit"]
        print(f"  [{'PASS' if c['pass'] else 'FAIL'}] {c['item']}. {c['what']}: {figure} (limit {limit})")


def print_real(real: dict) -> None:
    print("\nreal scans, per family: the OCR stage against bare `tesseract IMG stdout` on the same page images"
          " (word recall per page, mean; CER where the reference is in reading order)")
    print(f"{'family':40} {'pages':>5} {'recall':>7} {'bare':>7} {'CER':>7} {'bare':>7} {'<-2pt':>5} {'>+2pt':>5}"
          f" {'worst':>7} {'prepared':>8} {'s/page':>6} {'bare':>6}")
    for family, f in real.items():
        print(f"{family[:40]:40} {f['pages']:5d} {f['recall']:7.4f} {f['bare_recall']:7.4f} {_pct(f['cer']):>7}"
              f" {_pct(f['bare_cer']):>7} {f['pages_below']:5d} {f['pages_above']:5d} {100 * f['worst_drop']:+6.1f}p"
              f" {f['prepared_kept']:8d} {f['stage_s_per_page']:6.2f} {f['bare_s_per_page']:6.2f}")


def print_degraded(d: dict) -> None:
    print("\ndegraded pages: CER before (no page preparation) -> after, development | validation (never tuned on)")
    header = (f"{'kind':24} {'dev n':>5} {'before':>7} {'after':>7} {'worst':>7} | {'val n':>5} {'before':>7} "
              f"{'after':>7} {'worst':>7} | {'s/page':>6} {'bare':>6} {'ratio':>5}  steps applied")
    print(header + "\n" + "-" * len(header))
    for kind, parts in d["kinds"].items():
        dev, val = parts.get("development"), parts.get("validation")
        both = [p for p in (dev, val) if p]
        stage = sum(p["stage_s_per_page"] * p["pages"] for p in both) / sum(p["pages"] for p in both)
        bare = sum(p["bare_s_per_page"] * p["pages"] for p in both) / sum(p["pages"] for p in both)

        def cells(p):
            if not p:
                return f"{'-':>5} {'-':>7} {'-':>7} {'-':>7}"
            return f"{p['pages']:5d} {_pct(p['cer_before']):>7} {_pct(p['cer_after']):>7} {_pct(p['max_cer']):>7}"

        steps = ", ".join(f"{k} {v}" for k, v in d["steps_applied"].get(kind, {}).items())
        print(f"{kind[:24]:24} {cells(dev)} | {cells(val)} | {stage:6.2f} {bare:6.2f} {stage / bare:5.2f}  {steps}")
    for name, p in d["parts"].items():
        print(f"  {name:11}: {p['pages']} pages, mean page CER {_pct(p['mean_cer_before'])} -> {_pct(p['mean_cer'])}, "
              f"worst page {_pct(p['max_cer'])} ({p['worst_page']}), empty pages {p['empty_before']} "
              f"({p['empty_unflagged_before']} unflagged) -> {p['empty']} ({p['empty_unflagged']} unflagged), "
              f"flagged {p['flagged']}; {p['stage_s_per_page']:.2f} s/page vs {p['before_s_per_page']:.2f} "
              f"unprepared, {p['bare_s_per_page']:.2f} bare ({p['ratio_vs_bare']:.2f}x)")


def plot_degraded(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = report["degraded"]["kinds"]
    names = list(kinds)
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.5 * len(names) + 2.5), sharey=True)
    height = 0.38
    for axis, split in zip(axes, ("development", "validation")):
        y = list(range(len(names)))
        before = [100 * kinds[k][split]["cer_before"] if split in kinds[k] else 0 for k in names]
        after = [100 * kinds[k][split]["cer_after"] if split in kinds[k] else 0 for k in names]
        bars = axis.barh([i - height / 2 for i in y], before, height, label="before (no preparation)")
        axis.bar_label(bars, labels=[f"{v:.2f}%" for v in before], fontsize=7, padding=2)
        bars = axis.barh([i + height / 2 for i in y], after, height, label="after (docpipe today)")
        axis.bar_label(bars, labels=[f"{v:.2f}%" for v in after], fontsize=7, padding=2)
        axis.axvline(100 * THRESHOLDS["validation_mean_cer"], color="grey", linestyle="--", linewidth=1)
        axis.set_xscale("symlog", linthresh=1)
        axis.set_xlim(0, 300)
        part = report["degraded"]["parts"].get(split, {})
        axis.set_title(f"{split}: mean page CER {100 * part.get('mean_cer_before', 0):.2f}% -> "
                       f"{100 * part.get('mean_cer', 0):.2f}%", fontsize=10)
        axis.set_xlabel("CER, % (symlog; dashed: 3%)")
        axis.legend(loc="lower right", fontsize=8)
    axes[0].set_yticks(list(range(len(names))), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"docpipe OCR on degraded pages: {report['meta']['tesseract']}, {report['meta']['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = report["sets"]
    names = [f"{s['set']}\n{s['engine']}, {s['pages']} page{'s' if s['pages'] != 1 else ''}" for s in sets]
    y = list(range(len(sets)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 0.6 * len(sets) + 2), sharey=True)
    height = 0.38
    for axis, key, bare_key, fmt in (
        (left, "cer", "cer", "{:.2f}%"),
        (right, "stage_s_per_page", "bare_s_per_page", "{:.2f} s"),
    ):
        scale = 100 if key == "cer" else 1
        stage = [scale * s[key] for s in sets]
        bare = [scale * (s["bare"][bare_key] if key == "cer" else s[bare_key]) if "bare" in s else 0 for s in sets]
        bars = axis.barh([i - height / 2 for i in y], stage, height, label="OCR stage (docpipe)")
        axis.bar_label(bars, labels=[fmt.format(v) for v in stage], fontsize=7, padding=2)
        bars = axis.barh([i + height / 2 for i in y], bare, height, label="bare tesseract")
        axis.bar_label(bars, labels=[fmt.format(v) if "bare" in s else "" for v, s in zip(bare, sets)], fontsize=7,
                       padding=2)
        axis.legend(loc="lower right", fontsize=8)
    left.axvline(100 * THRESHOLDS["cer"], color="grey", linestyle="--", linewidth=1)
    left.set_xscale("symlog", linthresh=1)
    left.set_xlim(0, 300)
    left.set_xlabel("CER, % (symlog; dashed: the 2% bar)")
    left.set_yticks(y, names, fontsize=8)
    left.invert_yaxis()
    right.set_xlabel("seconds per page")
    ratio = report["timing"]["all pages"]["ratio"]
    right.set_title(f"OCR stage / bare tesseract, all pages: {ratio:.2f}" if ratio else "", fontsize=10)
    right.set_xlim(0, 1.2 * max([s["stage_s_per_page"] for s in sets] + [s.get("bare_s_per_page", 0) for s in sets]))
    fig.suptitle(f"docpipe OCR: {report['meta']['tesseract']}, {report['meta']['machine']}, {report['meta']['date']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
