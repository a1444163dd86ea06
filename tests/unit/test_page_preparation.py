"""What clinics send: skewed, stamped, speckled pages read with the real Tesseract, and a page
with ink but no text never completes silently."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageDraw

from shared.adapters.tesseract import TesseractOcr
from shared.bootstrap import Deps
from shared.models import FileStatus, Stage
from shared.runtime.records import handle_record
from shared.settings import Settings
from shared.submit import submit
from tests.fakes import InMemoryDb, InMemoryQueue, InMemoryStorage, OneEncounterPerDocument
from tests.unit.test_stages import RUNS, _record
from tests.unit.test_tesseract import cer

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")

NOTE = (
    "CHIEF COMPLAINT\n\nFollow-up of hypertension and type 2 diabetes mellitus.\n\n"
    "HISTORY OF PRESENT ILLNESS\n\nThe patient is a 58-year-old man seen for review of his blood "
    "pressure, which he measures at home twice a day. Readings have been between 135 and 150 "
    "systolic. He takes lisinopril 20 mg daily and metformin 1000 mg twice daily. He denies chest "
    "pain, shortness of breath, palpitations or ankle swelling. He walks for thirty minutes most "
    "days and has reduced the salt in his diet. His last HbA1c was 7.2 percent in March.\n\n"
    "ASSESSMENT AND PLAN\n\nHypertension, not at goal: increase lisinopril to 40 mg daily, repeat "
    "basic metabolic panel in two weeks. Diabetes: continue metformin, recheck HbA1c in three "
    "months, annual retinal examination and foot check today were normal. Coronary artery disease "
    "risk discussed; start atorvastatin 20 mg at night. Return to clinic in six weeks."
)


def note_page(dpi: int = 200) -> tuple[Image.Image, str]:
    """NOTE set on a letter page in 11 pt Helvetica, grey, and its text as laid out."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    assert page.insert_textbox(pymupdf.Rect(72, 72, 540, 720), NOTE, fontsize=11) >= 0
    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
    return Image.frombytes("L", (pix.width, pix.height), pix.samples), page.get_text()


def skewed(image: Image.Image, degrees: float) -> Image.Image:
    """The page turned ``degrees`` anticlockwise (negative: clockwise), paper filling the corners."""
    return image.rotate(degrees, Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def scribbles() -> Image.Image:
    """A page of ink that holds no text: a drawing, a smudge, a signature's loops."""
    page = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(page)
    for i in range(6):
        box = (200 + 150 * i, 300 + 120 * i, 700 + 150 * i, 900 + 120 * i)
        draw.ellipse(box, outline=0, width=18)
    draw.rectangle((300, 1600, 1400, 1900), fill=60)
    return page


def engine() -> TesseractOcr:
    settings = Settings()
    return TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, settings.ocr_timeout_s)


@needs_tesseract
@pytest.mark.parametrize("degrees", [-3.0, 3.0], ids=["clockwise", "anticlockwise"])
def test_a_page_skewed_3_degrees_reads_its_text(tmp_path: Path, degrees: float) -> None:
    # Given a visit note scanned 3 degrees off level (today, clockwise reads 60-90% short)
    image, expected = note_page()
    path = tmp_path / "skewed.jpg"
    skewed(image, degrees).save(path, quality=85, dpi=(200, 200))
    # When it is read
    text = engine().read(path, 1)
    # Then its text is all there
    assert cer(text.text, expected) < 0.03, text.text[:200]


@needs_tesseract
def test_an_inked_page_that_reads_empty_is_flagged_and_its_file_marked_for_review(tmp_path: Path) -> None:
    # Given a two-page scan: a note, then a page of ink without text
    note, _ = note_page()
    scan = tmp_path / "scan.tif"
    note.save(scan, save_all=True, append_images=[scribbles()], dpi=(200, 200))
    deps = Deps(
        settings=Settings(storage_backend="local", local_storage_dir=tmp_path / "store"),
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=InMemoryDb(),
        ocr=engine(),
        encounters=OneEncounterPerDocument(),
    )
    # When it goes through the pipeline
    sfid = submit(deps, scan, uuid.uuid4())
    _drain(deps)
    # Then the file completes, but the empty page is marked, with its ink, and the manifest
    # asks for review of that page, and only that page
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    first, second = deps.db.page_texts(sfid)
    assert first.flag is None and len(first.text) > 500
    assert second.flag == "ocr_empty" and second.ink_coverage > 0.01
    assert deps.db.manifest(sfid).pages_for_review == {2: "ocr_empty"}


def _drain(deps: Deps) -> None:
    progress = True
    while progress:
        progress = False
        for stage in Stage:
            for msg in deps.queue.receive(stage.value, max_messages=10):
                handle_record(stage, _record(stage, msg.body, msg.receive_count), RUNS[stage], deps)
                progress = True
