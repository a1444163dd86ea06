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
from shared.pages.prepare import prepare, skew_angle
from shared.report import summary_line
from shared.runtime.records import handle_record
from shared.settings import Settings
from shared.submit import submit
from tests.fakes import CannedOcr, InMemoryDb, InMemoryQueue, InMemoryStorage, OneEncounterPerDocument
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


# --- the preparation steps, one by one -------------------------------------------------


@pytest.mark.parametrize("degrees", [-3.5, -2.0, 2.0, 3.5])
def test_deskew_finds_a_known_angle_both_ways(degrees: float) -> None:
    image, _ = note_page()
    # skew_angle names the anticlockwise turn that levels the page: the skew undone
    assert skew_angle(skewed(image, degrees)) == pytest.approx(-degrees, abs=0.15)


def test_a_level_page_and_a_blank_page_are_not_turned() -> None:
    image, _ = note_page()
    assert skew_angle(image) == 0.0
    assert skew_angle(Image.new("L", (1700, 2200), 255)) == 0.0


def stamped_page() -> Image.Image:
    """Black text on tinted paper under a red stamp and a yellow highlighter stroke."""
    image, _ = note_page()
    page = Image.merge("RGB", [image.point(lambda v: v * 250 // 255), image.point(lambda v: v * 242 // 255),
                               image.point(lambda v: v * 205 // 255)])
    draw = ImageDraw.Draw(page)
    draw.rectangle((300, 500, 1300, 800), outline=(205, 30, 40), width=40)
    draw.rectangle((150, 1000, 1500, 1060), fill=(255, 245, 90))
    return Image.composite(page, Image.new("RGB", page.size, (0, 0, 0)), image.point(lambda v: 255 if v > 100 else 0))


def test_stamp_highlighter_and_tint_go_white_and_black_text_stays(tmp_path: Path) -> None:
    page = stamped_page()
    path = tmp_path / "stamped.png"
    page.save(path)
    prepared = prepare(path)
    assert "colour" in prepared.steps
    grey = prepared.image
    assert grey.getpixel((310, 650)) >= 230  # the stamp's frame
    assert grey.getpixel((5, 5)) >= 240  # tinted paper
    heading = ((x, y) for x in range(150, 900) for y in range(150, 260))
    text_pixels = [xy for xy in heading if page.getpixel(xy) == (0, 0, 0)]
    assert text_pixels and max(grey.getpixel(xy) for xy in text_pixels) <= 60  # black text, still black


def test_a_standard_fax_page_is_stretched_to_square_and_its_boxes_come_back(tmp_path: Path) -> None:
    path = tmp_path / "fax.tif"
    Image.new("L", (1728, 1100), 255).save(path, dpi=(204, 98))
    prepared = prepare(path)
    assert prepared.steps == ("upscale",)
    assert prepared.image.size == (1728, round(1100 * 204 / 98))
    assert prepared.dpi == pytest.approx((204, 204), abs=0.5)
    assert prepared.box_onto_stored(0.1, 0.2, 0.3, 0.4) == pytest.approx((0.1, 0.2, 0.3, 0.4))


def test_lone_specks_are_removed_and_text_kept(tmp_path: Path) -> None:
    image, _ = note_page(dpi=150)
    speckled = image.copy()
    draw = ImageDraw.Draw(speckled)
    for i in range(4000):
        x, y = (i * 7919) % image.width, (i * 104729) % image.height
        draw.rectangle((x, y, x + 1, y + 1), fill=0)
    path = tmp_path / "speckled.tif"
    speckled.save(path, dpi=(150, 150))
    prepared = prepare(path)
    assert prepared.steps == ("despeckle", "upscale")
    clean = tmp_path / "clean.tif"
    image.save(clean, dpi=(150, 150))
    assert "despeckle" not in prepare(clean).steps


# --- reading, flags, boxes ---------------------------------------------------------------


@needs_tesseract
def test_boxes_land_on_the_stored_image_after_deskew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a note stored 3 degrees off level (Tesseract reads this clean page as well unturned:
    # here the straightened reading is kept whatever it reads, for its boxes)
    monkeypatch.setattr("shared.adapters.tesseract.clearly_better", lambda ready, plain, steps=(): True)
    image, _ = note_page()
    stored = skewed(image, 3.0)
    path = tmp_path / "skewed.png"
    stored.save(path, dpi=(200, 200))
    # When it is read (straightened first)
    text = engine().read(path, 1)
    assert "deskew" in text.preparation
    # Then the words' boxes, together, cover the ink of the page as stored
    left, top, right, bottom = stored.point(lambda v: 255 if v < 128 else 0).getbbox()
    w, h = stored.size
    words = text.words
    assert min(wd.box.x0 for wd in words) == pytest.approx(left / w, abs=0.01)
    assert min(wd.box.y0 for wd in words) == pytest.approx(top / h, abs=0.01)
    assert max(wd.box.x1 for wd in words) == pytest.approx(right / w, abs=0.01)
    assert max(wd.box.y1 for wd in words) == pytest.approx(bottom / h, abs=0.01)
    # and a word lies where its ink is: the first word's box holds dark pixels of the stored page
    first = words[0].box
    crop = stored.crop((int(first.x0 * w), int(first.y0 * h), int(first.x1 * w) + 1, int(first.y1 * h) + 1))
    assert crop.getextrema()[0] < 64


@needs_tesseract
def test_a_stamped_page_on_tinted_paper_reads_whole(tmp_path: Path) -> None:
    _, expected = note_page()
    path = tmp_path / "stamped.jpg"
    stamped_page().save(path, quality=85)
    assert cer(engine().read(path, 1).text, expected) < 0.02


def test_a_reading_with_low_confidence_is_flagged(tmp_path: Path) -> None:
    from tests.unit.test_tesseract import marked_page, osd_stand_in

    cmd = osd_stand_in(tmp_path, rotate=180, first_conf=38.0, turned_conf=95.0, osd_exit=1)
    text = TesseractOcr(cmd=cmd, steps=()).read(marked_page(tmp_path), page_number=1)
    assert text.confidence == pytest.approx(0.38)
    assert text.flag == "ocr_low_confidence"


def test_the_report_shows_confidence_and_pages_for_review() -> None:
    report = {
        "file": "fax.tif",
        "status": "completed",
        "page_count": 2,
        "pages": [
            {"page_number": 1, "text_source": "ocr", "confidence": 0.93, "flag": None},
            {"page_number": 2, "text_source": "ocr", "confidence": None, "flag": "ocr_empty"},
        ],
        "encounters": [],
        "identity_conflict": False,
        "pages_for_review": {"2": "ocr_empty"},
    }
    line = summary_line(report)
    assert "OCR confidence 0.93-0.93" in line and "REVIEW p2 ocr_empty" in line


def test_an_engine_that_sets_no_flag_still_gets_its_empty_inked_page_flagged(tmp_path: Path) -> None:
    # Given an engine like Textract, which measures no ink, returning nothing for a page of ink
    scan = tmp_path / "scan.png"
    scribbles().save(scan)
    deps = Deps(
        settings=Settings(storage_backend="local", local_storage_dir=tmp_path / "store"),
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=InMemoryDb(),
        ocr=CannedOcr(text=""),
        encounters=OneEncounterPerDocument(),
    )
    sfid = submit(deps, scan, uuid.uuid4())
    _drain(deps)
    # Then the OCR stage flags it all the same
    (page,) = deps.db.page_texts(sfid)
    assert page.flag == "ocr_empty" and page.ink_coverage > 0.01
    assert deps.db.manifest(sfid).pages_for_review == {1: "ocr_empty"}


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (33, 1), (150, 212)])
def test_the_paper_s_max_filter_is_pillow_s_rank_filter_pixel_for_pixel(mode, size):
    """The light check's maximum runs as shifted copies: the same pixels as MaxFilter, edges
    included, so that no page is judged differently."""
    import random

    from PIL import ImageFilter

    from shared.pages.prepare import max_filter

    rng = random.Random(f"{mode}{size}")
    image = Image.frombytes(mode, size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * len(mode))))
    for width in (3, 5):
        assert max_filter(image, width).tobytes() == image.filter(ImageFilter.MaxFilter(width)).tobytes()


def _specks(image: Image.Image, count: int, size: int = 1) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for i in range(count):
        x, y = (i * 7919) % image.width, (i * 104729) % image.height
        draw.rectangle((x, y, x + size, y + size), fill=0)
    return out


def test_the_speckle_check_decides_as_the_full_measure_on_every_kind_of_page():
    """The check screens with cheaper bounds before its 5x5 test: the same answer as
    ``speckle_share`` against the bar on speckled pages, specks just at the bar and under it,
    dense text, a blank page and a page of solid ink."""
    from shared.pages.prepare import _SPECKLE_SHARE, _is_speckled, speckle_share

    text, _ = note_page(dpi=150)
    pages = {
        "speckled": _specks(text, 4000),
        "few specks": _specks(text, 300),
        "specks in pairs": _specks(text, 4000, size=2),
        "text": text,
        "blank": Image.new("L", (1275, 1650), 255),
        "solid ink": Image.new("L", (1275, 1650), 0),
        "scribbles": scribbles(),
    }
    decided = {}
    for name, page in pages.items():
        decided[name] = _is_speckled(page)
        assert decided[name] == (speckle_share(page) >= _SPECKLE_SHARE), name
    assert decided["speckled"] and not decided["text"] and not decided["blank"] and not decided["solid ink"]
    # Specks whose share of the band crosses the bar (0.0044 to 0.0052 of it).
    near = [_specks(text, count) for count in range(2600, 3100, 50)]
    assert {_is_speckled(page) for page in near} == {True, False}
    for page in near:
        assert _is_speckled(page) == (speckle_share(page) >= _SPECKLE_SHARE)
