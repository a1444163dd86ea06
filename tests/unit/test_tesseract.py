"""TesseractOcr: the real binary on pages the tests render, and stand-in scripts for its failures."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from shared.adapters.tesseract import TesseractOcr, parse_tsv
from shared.models import PageText
from shared.errors import DependencyUnavailableError, EngineCrashedError, OcrFailedError, StageTimeoutError
from shared.pages.documents import Limits, RenderedPage, open_document
from shared.pages.sniff import sniff
from shared.settings import Settings

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")

LETTER_TEXT = [
    "Riverside Medical Centre",
    "Discharge Summary",
    "Patient admitted with community acquired pneumonia.",
    "Treated with intravenous ceftriaxone and azithromycin.",
    "Discharged on oral amoxicillin 500 mg for five days.",
    "Follow up with the general practitioner in two weeks.",
]


def first_page(path: Path) -> RenderedPage:
    with open_document(path, sniff(path), Limits.from_settings(Settings())) as document:
        return next(document.pages())


def save_jpeg(page: RenderedPage, path: Path) -> Path:
    path.write_bytes(page.jpeg)
    return path


def cer(found: str, expected: str) -> float:
    """Character error rate: edit distance over the expected length, whitespace collapsed."""
    a, b = " ".join(found.split()), " ".join(expected.split())
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1] / len(b)


def letter_doc(height: float = 792, origin: tuple[float, float] = (72, 100), fontsize: float = 12) -> pymupdf.Document:
    """One page of LETTER_TEXT, 612 points wide."""
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=height)
    for i, line in enumerate(LETTER_TEXT):
        page.insert_text((origin[0], origin[1] + 24 * i), line, fontsize=fontsize)
    return doc


def letter_image(**layout) -> Image.Image:
    """``letter_doc(**layout)`` rendered at 200 dpi."""
    pix = letter_doc(**layout)[0].get_pixmap(dpi=200, colorspace=pymupdf.csRGB, alpha=False)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def write_letter_pdf(path: Path) -> Path:
    letter_doc().save(path)
    return path


def fake_tesseract(tmp_path: Path, body: str) -> str:
    """A stand-in ``tesseract`` program: a shell script with the given body."""
    script = tmp_path / "fake-tesseract"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


# --- the real binary -------------------------------------------------------------------


@needs_tesseract
def test_reads_a_rendered_text_page(tmp_path: Path) -> None:
    # Given a letter page rendered at the default settings, and its native text
    page = first_page(write_letter_pdf(tmp_path / "letter.pdf"))
    image = save_jpeg(page, tmp_path / "page-0001.jpg")
    assert page.native_text is not None

    # When Tesseract reads the JPEG
    text = TesseractOcr().read(image, page_number=7)

    # Then it finds the words, with a small character error rate
    assert text.engine == "tesseract"
    assert text.page_number == 7
    for word in ("Discharge", "pneumonia", "ceftriaxone", "azithromycin", "amoxicillin", "practitioner"):
        assert word in text.text
    assert cer(text.text, "\n".join(LETTER_TEXT)) < 0.02
    assert text.confidence is not None and text.confidence > 0.8
    assert text.duration_ms > 0
    assert len(text.lines) == len(LETTER_TEXT)
    assert [line.text for line in text.lines][1] == "Discharge Summary"
    for item in [*text.words, *text.lines]:
        assert 0 <= item.box.x0 < item.box.x1 <= 1 and 0 <= item.box.y0 < item.box.y1 <= 1
        assert item.confidence is not None and 0 <= item.confidence <= 1
    # Tesseract's word boxes land where the native text layer puts the same words.
    ocr_box = next(w.box for w in text.words if w.text == "ceftriaxone")
    native_box = next(w.box for w in page.native_text.words if w.text == "ceftriaxone")
    for edge in ("x0", "y0", "x1", "y1"):
        assert getattr(ocr_box, edge) == pytest.approx(getattr(native_box, edge), abs=0.01)


@needs_tesseract
def test_reads_an_exif_rotated_photo_after_opening(tmp_path: Path) -> None:
    # Given a text page photographed sideways (pixels turned 90 degrees, EXIF 6)
    upright = letter_image(height=400, origin=(36, 60), fontsize=13)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "IMG_2001.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(photo, "JPEG", quality=92, exif=exif.tobytes())

    # When the photo is opened as a document and its page is read
    rendered = first_page(photo)
    text = TesseractOcr().read(save_jpeg(rendered, tmp_path / "page-0001.jpg"), page_number=1)

    # Then the text reads upright
    assert (rendered.width, rendered.height) == upright.size
    for word in ("Riverside", "pneumonia", "amoxicillin", "practitioner"):
        assert word in text.text
    assert cer(text.text, "\n".join(LETTER_TEXT)) < 0.05


@needs_tesseract
def test_a_file_tesseract_cannot_read_fails_without_quoting_it(tmp_path: Path) -> None:
    bogus = tmp_path / "page.jpg"
    bogus.write_text("Patient Canary Jones, not an image")
    with pytest.raises(OcrFailedError) as caught:
        TesseractOcr().read(bogus, page_number=3)
    assert caught.value.code == "ocr_failed"
    assert "Canary" not in caught.value.message
    assert "page 3" in caught.value.message


# --- failures, with stand-in programs ----------------------------------------------------


def test_missing_binary_is_a_retryable_dependency_error(tmp_path: Path) -> None:
    engine = TesseractOcr(cmd=str(tmp_path / "no-such-tesseract"))
    with pytest.raises(DependencyUnavailableError) as caught:
        engine.read(tmp_path / "page.jpg", page_number=1)
    assert caught.value.retryable


def test_timeout(tmp_path: Path) -> None:
    engine = TesseractOcr(cmd=fake_tesseract(tmp_path, "sleep 10"), timeout_s=0.3)
    with pytest.raises(StageTimeoutError) as caught:
        engine.read(tmp_path / "page.jpg", page_number=1)
    assert caught.value.retryable and caught.value.code == "timeout"


def test_non_zero_exit_reports_the_code_not_stderr(tmp_path: Path) -> None:
    cmd = fake_tesseract(tmp_path, "echo 'Error reading Patient Canary Jones' >&2\nexit 3")
    with pytest.raises(OcrFailedError) as caught:
        TesseractOcr(cmd=cmd).read(tmp_path / "page.jpg", page_number=2)
    assert "code 3" in caught.value.message
    assert "Canary" not in caught.value.message
    assert not caught.value.retryable


def test_killed_engine_is_retryable(tmp_path: Path) -> None:
    cmd = fake_tesseract(tmp_path, "kill -9 $$")
    with pytest.raises(EngineCrashedError) as caught:
        TesseractOcr(cmd=cmd).read(tmp_path / "page.jpg", page_number=1)
    assert caught.value.retryable and "signal 9" in caught.value.message


def test_child_gets_a_minimal_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a secret in the worker's environment, and a stand-in that records its own
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:secret@db/docpipe")
    seen = tmp_path / "env.txt"
    tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\\n"
    tsv += "1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\\n"
    cmd = fake_tesseract(tmp_path, f"env > {seen}\nprintf '{tsv}'\necho \"$@\" > {tmp_path / 'argv.txt'}")

    text = TesseractOcr(cmd=cmd, lang="eng").read(tmp_path / "page.jpg", page_number=1)

    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert env["OMP_THREAD_LIMIT"] == "1"
    assert "DATABASE_URL" not in env
    argv = (tmp_path / "argv.txt").read_text().split()
    assert argv[0] == str(tmp_path / "page.jpg") and argv[1] == "stdout"
    assert argv[argv.index("-l") + 1] == "eng" and argv[-1] == "tsv"
    assert text.text == "" and text.words == [] and text.confidence is None


# --- TSV parsing ---------------------------------------------------------------------------


def tsv(rows: list[tuple]) -> str:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    return "\n".join([header, *("\t".join(str(v) for v in row) for row in rows)]) + "\n"


def test_parse_tsv_groups_lines_and_paragraphs() -> None:
    output = tsv(
        [
            (1, 1, 0, 0, 0, 0, 0, 0, 1000, 2000, -1, ""),
            (2, 1, 1, 0, 0, 0, 100, 100, 500, 100, -1, ""),
            (3, 1, 1, 1, 0, 0, 100, 100, 500, 100, -1, ""),
            (4, 1, 1, 1, 1, 0, 100, 100, 400, 40, -1, ""),
            (5, 1, 1, 1, 1, 1, 100, 100, 150, 40, 96.0, "Discharge"),
            (5, 1, 1, 1, 1, 2, 300, 105, 200, 35, 90.0, "Summary"),
            (4, 1, 1, 1, 2, 0, 100, 150, 100, 40, -1, ""),
            (5, 1, 1, 1, 2, 1, 100, 150, 100, 40, 80.0, "Page"),
            (5, 1, 1, 1, 2, 2, 210, 150, 10, 40, 50.0, " "),  # blank word: dropped
            (3, 1, 1, 2, 0, 0, 100, 300, 500, 40, -1, ""),
            (4, 1, 1, 2, 1, 0, 100, 300, 500, 40, -1, ""),
            (5, 1, 1, 2, 1, 1, 100, 300, 500, 40, 70.0, "Plan"),
            (2, 1, 2, 0, 0, 0, 100, 900, 500, 40, -1, ""),
            (5, 1, 2, 1, 1, 1, 100, 900, 200, 40, 60.0, "Signed"),
        ]
    )

    text = parse_tsv(output, page_number=4, duration_ms=12.5)

    assert text.text == "Discharge Summary\nPage\n\nPlan\n\nSigned"
    assert [line.text for line in text.lines] == ["Discharge Summary", "Page", "Plan", "Signed"]
    assert [w.text for w in text.words] == ["Discharge", "Summary", "Page", "Plan", "Signed"]
    first = text.words[0]
    assert (first.box.x0, first.box.y0, first.box.x1, first.box.y1) == (0.1, 0.05, 0.25, 0.07)
    assert first.confidence == pytest.approx(0.96)
    line = text.lines[0]
    assert (line.box.x0, line.box.y0, line.box.x1, line.box.y1) == (0.1, 0.05, 0.5, 0.07)
    assert line.confidence == pytest.approx(0.93)
    assert text.confidence == pytest.approx((0.96 + 0.90 + 0.80 + 0.70 + 0.60) / 5)
    assert text.page_number == 4 and text.duration_ms == 12.5 and text.engine == "tesseract"


def test_parse_tsv_without_a_page_row_fails() -> None:
    with pytest.raises(OcrFailedError):
        parse_tsv(tsv([(5, 1, 1, 1, 1, 1, 0, 0, 10, 10, 90.0, "word")]), page_number=1)


# --- orientation ---------------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "ocr" / "tesseract_test"


def _has_osd() -> bool:
    if shutil.which("tesseract") is None:
        return False
    done = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, check=False)
    return "osd" in (done.stdout + done.stderr).split()


needs_osd = pytest.mark.skipif(not _has_osd(), reason="tesseract's OSD data (tesseract-ocr-osd) is not installed")


@pytest.fixture(scope="module")
def letter_upright(tmp_path_factory: pytest.TempPathFactory):
    """A letter page as a 200 dpi image, and Tesseract's reading of it upright."""
    image = letter_image()
    path = tmp_path_factory.mktemp("letter") / "upright.jpg"
    image.save(path, "JPEG", quality=85, dpi=(200, 200))
    return image, TesseractOcr().read(path, page_number=1)


@needs_osd
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_page_scanned_sideways_or_upside_down_reads_upright(tmp_path: Path, letter_upright, degrees: int) -> None:
    # Given a letter page turned (anticlockwise) as a scanner might have fed it
    image, upright = letter_upright
    turned_path = tmp_path / f"turned-{degrees}.jpg"
    image.rotate(degrees, expand=True).save(turned_path, "JPEG", quality=85, dpi=(200, 200))

    # When it is read
    turned = TesseractOcr().read(turned_path, page_number=1)

    # Then it reads as the upright page does...
    expected = "\n".join(LETTER_TEXT)
    assert cer(upright.text, expected) < 0.02
    assert cer(turned.text, expected) < 0.02
    assert [line.text for line in turned.lines] == [line.text for line in upright.lines]
    # ...with each word's box where that word is on the image as stored (the upright box,
    # painted on a blank upright page and turned the same way as the scan)
    for word in ("Discharge", "ceftriaxone", "practitioner"):
        a = next(w.box for w in upright.words if w.text == word)
        b = next(w.box for w in turned.words if w.text == word)
        mask = Image.new("L", image.size, 0)
        mask.paste(255, (round(a.x0 * image.width), round(a.y0 * image.height),
                         round(a.x1 * image.width), round(a.y1 * image.height)))
        mask = mask.rotate(degrees, expand=True)
        x0, y0, x1, y1 = mask.getbbox()
        where = (x0 / mask.width, y0 / mask.height, x1 / mask.width, y1 / mask.height)
        assert (b.x0, b.y0, b.x1, b.y1) == pytest.approx(where, abs=0.01), word
    assert turned.duration_ms > 0


@pytest.fixture(scope="module")
def phototest_upright_cer() -> float:
    text = TesseractOcr().read(CORPUS / "phototest.tif", page_number=1).text
    return cer(text, (CORPUS / "phototest.txt").read_text())


@needs_osd
@pytest.mark.skipif(not (CORPUS / "phototest.tif").is_file(), reason=f"no Tesseract test pages in {CORPUS}")
@pytest.mark.parametrize("name", ["phototest-rotated-180.png", "phototest-rotated-L.png", "phototest-rotated-R.png"])
def test_tesseracts_own_rotated_test_pages(name: str, phototest_upright_cer: float) -> None:
    # The bar: 2% on phototest, and its rotated copies within twice that.
    turned = cer(TesseractOcr().read(CORPUS / name, page_number=1).text, (CORPUS / "phototest.txt").read_text())
    assert phototest_upright_cer <= 0.02
    assert turned <= max(2 * phototest_upright_cer, 0.005)


def osd_stand_in(tmp_path: Path, rotate: int, first_conf: float, turned_conf: float, osd_exit: int = 0) -> str:
    """A ``tesseract`` that reads any page at ``first_conf``, a turned TIFF at ``turned_conf``,
    answers ``--psm 0`` with a turn of ``rotate`` degrees, and logs its calls."""

    def page(conf: float) -> Path:
        path = tmp_path / f"tsv-{conf}.tsv"
        path.write_text(
            tsv(
                [
                    (1, 1, 0, 0, 0, 0, 0, 0, 400, 200, -1, ""),
                    (5, 1, 1, 1, 1, 1, 10, 10, 120, 30, conf, "Discharge"),
                    (5, 1, 1, 1, 1, 2, 140, 10, 100, 30, conf, "Summary"),
                ]
            )
        )
        return path

    (tmp_path / "osd.txt").write_text(
        f"Page number: 0\nOrientation in degrees: 0\nRotate: {rotate}\nOrientation confidence: 9.50\nScript: Latin\n"
    )
    return fake_tesseract(
        tmp_path,
        f'echo "$@" >> {tmp_path / "calls.txt"}\n'
        f'case " $* " in\n'
        f'  *" --psm 0 "*) cat {tmp_path / "osd.txt"}; exit {osd_exit} ;;\n'
        f'  *) case "$1" in\n'
        f'       *upright.tif) cp "$1" {tmp_path / "seen.tif"}; cat {page(turned_conf)} ;;\n'
        f'       *) cat {page(first_conf)} ;;\n'
        f"     esac ;;\n"
        f"esac",
    )


def marked_page(tmp_path: Path) -> Path:
    """A 40x20 page, white but for its top-left pixel."""
    image = Image.new("L", (40, 20), 255)
    image.putpixel((0, 0), 0)
    path = tmp_path / "page.png"
    image.save(path, dpi=(300, 150))
    return path


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls.txt").read_text().splitlines()


def test_an_upright_page_is_read_once(tmp_path: Path) -> None:
    cmd = osd_stand_in(tmp_path, rotate=180, first_conf=93.0, turned_conf=96.0)
    text = TesseractOcr(cmd=cmd, steps=()).read(marked_page(tmp_path), page_number=1)
    assert len(calls(tmp_path)) == 1
    assert text.confidence == pytest.approx(0.93)


# The marked pixel starts top-left; turned clockwise it lands top-right, bottom-right, bottom-left.
@pytest.mark.parametrize(
    ("rotate", "corner", "size", "dpi"),
    [
        (90, (19, 0), (20, 40), (150, 300)),
        (180, (39, 19), (40, 20), (300, 150)),
        (270, (0, 39), (20, 40), (150, 300)),
    ],
)
def test_a_page_that_reads_badly_is_turned_as_osd_says(tmp_path: Path, rotate, corner, size, dpi) -> None:
    # Given a page whose first reading is poor, and OSD saying it must turn clockwise by `rotate`
    cmd = osd_stand_in(tmp_path, rotate=rotate, first_conf=38.0, turned_conf=95.0)

    text = TesseractOcr(cmd=cmd, steps=()).read(marked_page(tmp_path), page_number=1)

    # Then it was read, asked about, turned and read again; the upright reading is kept
    assert [line.split()[-1] for line in calls(tmp_path)] == ["tsv", "0", "tsv"]
    assert text.confidence == pytest.approx(0.95)
    with Image.open(tmp_path / "seen.tif") as seen:
        assert seen.size == size and seen.getpixel(corner) == 0
        assert tuple(round(v) for v in seen.info["dpi"]) == dpi


def test_a_turn_that_reads_worse_is_not_kept(tmp_path: Path) -> None:
    cmd = osd_stand_in(tmp_path, rotate=90, first_conf=45.0, turned_conf=20.0)
    text = TesseractOcr(cmd=cmd, steps=()).read(marked_page(tmp_path), page_number=1)
    assert len(calls(tmp_path)) == 3
    assert text.confidence == pytest.approx(0.45)


def test_without_osd_the_first_reading_stands(tmp_path: Path) -> None:
    # Given OSD that fails (no osd.traineddata, or too few characters to tell)
    cmd = osd_stand_in(tmp_path, rotate=180, first_conf=38.0, turned_conf=95.0, osd_exit=1)
    text = TesseractOcr(cmd=cmd, steps=()).read(marked_page(tmp_path), page_number=1)
    assert len(calls(tmp_path)) == 2
    assert text.confidence == pytest.approx(0.38)


def test_words_standing_on_end_ask_for_orientation(tmp_path: Path) -> None:
    # Given a confident reading whose words are all taller than wide (a page read sideways)
    tall = tmp_path / "tall.tsv"
    rows = [(5, 1, 1, 1, 1, i, 10, 10 + 60 * i, 20, 50, 96.0, "word") for i in range(1, 5)]
    tall.write_text(tsv([(1, 1, 0, 0, 0, 0, 0, 0, 200, 400, -1, ""), *rows]))
    log = tmp_path / "calls.txt"
    cmd = fake_tesseract(tmp_path, f'echo "$@" >> {log}\ncase " $* " in *" --psm 0 "*) exit 1 ;; esac\ncat {tall}')
    TesseractOcr(cmd=cmd, steps=()).read(marked_page(tmp_path), page_number=1)
    assert [line.split()[-1] for line in calls(tmp_path)] == ["tsv", "0"]


# --- the prepared reading against the plain one ----------------------------------------


def two_readings_stand_in(tmp_path: Path, plain_conf: float, prepared_conf: float, prepared_words: int = 2) -> str:
    """A ``tesseract`` that reads the page as stored at ``plain_conf`` (two words) and the
    prepared copy at ``prepared_conf`` (``prepared_words`` words), and logs its calls."""

    def reading(name: str, conf: float, words: int) -> Path:
        path = tmp_path / f"{name}.tsv"
        rows = [(1, 1, 0, 0, 0, 0, 0, 0, 400, 200, -1, "")]
        rows += [(5, 1, 1, 1, 1, i, 10 + 60 * i, 10, 50, 30, conf, f"word{i}") for i in range(1, words + 1)]
        path.write_text(tsv(rows))
        return path

    return fake_tesseract(
        tmp_path,
        f'echo "$@" >> {tmp_path / "calls.txt"}\n'
        f'case "$1" in\n'
        f'  *prepared.tif) cat {reading("prepared", prepared_conf, prepared_words)} ;;\n'
        f'  *) cat {reading("plain", plain_conf, 2)} ;;\n'
        f"esac",
    )


@pytest.mark.parametrize(
    ("steps", "plain_conf", "prepared_conf", "prepared_words", "kept"),
    [
        (("despeckle",), 70.0, 95.0, 2, "prepared"),  # clearly better: kept, with its steps
        (("despeckle",), 90.0, 93.0, 2, "plain"),  # about the same: the page as stored
        (("despeckle",), 90.0, 96.0, 1, "plain"),  # surer of fewer words: worse
        (("deskew",), 90.0, 88.0, 2, "prepared"),  # straightened, about the same: kept
        (("deskew",), 90.0, 96.0, 1, "plain"),  # straightened, clearly worse
    ],
)
def test_the_prepared_reading_is_kept_only_where_it_reads_clearly_better(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps, plain_conf, prepared_conf, prepared_words, kept
) -> None:
    # Given a page that preparation changes with `steps`
    from shared.pages.prepare import Prepared

    def prepared(image, wanted):
        return Prepared(image=Image.new("L", (40, 20), 255), stored_size=(40, 20), steps=steps, ink=0.0)

    monkeypatch.setattr("shared.adapters.tesseract._prepared", prepared)
    cmd = two_readings_stand_in(tmp_path, plain_conf, prepared_conf, prepared_words)
    # When it is read
    text = TesseractOcr(cmd=cmd).read(marked_page(tmp_path), page_number=1)
    # Then both were read, and the better one kept
    assert [line.split()[0].rsplit("/", 1)[-1] for line in calls(tmp_path)] == ["page.png", "prepared.tif"]
    if kept == "prepared":
        assert text.preparation == list(steps) and text.confidence == pytest.approx(prepared_conf / 100)
    else:
        assert text.preparation == [] and text.confidence == pytest.approx(plain_conf / 100)


def test_a_page_preparation_leaves_alone_is_read_once(tmp_path: Path) -> None:
    cmd = two_readings_stand_in(tmp_path, 90.0, 99.0)
    page = tmp_path / "clean.png"
    Image.new("L", (40, 20), 255).save(page, dpi=(300, 300))
    assert TesseractOcr(cmd=cmd).read(page, page_number=1).preparation == []
    assert len(calls(tmp_path)) == 1


def test_an_inked_page_whose_layout_finds_no_text_is_read_as_sparse_text(tmp_path: Path) -> None:
    # Given a page with ink that --psm 3 reads empty (Tesseract's "Empty page!!") and --psm 11 reads
    sparse = tmp_path / "sparse.tsv"
    sparse.write_text(tsv([(1, 1, 0, 0, 0, 0, 0, 0, 400, 200, -1, ""),
                           (5, 1, 1, 1, 1, 1, 10, 10, 120, 30, 80.0, "MANUFACTURER:"),
                           (5, 1, 1, 1, 1, 2, 140, 10, 100, 30, 80.0, "Promotion")]))
    empty = tmp_path / "empty.tsv"
    empty.write_text(tsv([(1, 1, 0, 0, 0, 0, 0, 0, 400, 200, -1, "")]))
    cmd = fake_tesseract(
        tmp_path,
        f'echo "$@" >> {tmp_path / "calls.txt"}\n'
        f'case " $* " in *" --psm 11 "*) cat {sparse} ;; *" --psm 0 "*) exit 1 ;; *) cat {empty} ;; esac',
    )
    page = tmp_path / "form.png"
    image = Image.new("L", (400, 200), 255)
    image.paste(0, (10, 10, 250, 40))
    image.save(page, dpi=(300, 300))
    # When it is read
    text = TesseractOcr(cmd=cmd).read(page, page_number=1)
    # Then the sparse reading is kept, and the page is not flagged empty
    assert text.text == "MANUFACTURER: Promotion" and text.flag is None
    assert [line.split()[-2] for line in calls(tmp_path)][-1] == "11"


def test_a_straightened_reading_is_kept_unless_clearly_worse() -> None:
    # A page straightened reads its lines in order, which the summed confidence does not show:
    # a straightened (colour-lifted, stretched) reading about as sure as the plain one is kept;
    # one despeckled or flattened must be clearly better
    from shared.adapters.tesseract import clearly_better
    from shared.models import Box, Word

    def reading(conf: float, words: int) -> PageText:
        box = Box(x0=0.1, y0=0.1, x1=0.2, y1=0.2)
        return PageText(page_number=1, text="w " * words, words=[Word(text="w", box=box, confidence=conf)] * words,
                        engine="tesseract")

    plain, alike, worse = reading(0.94, 100), reading(0.95, 98), reading(0.90, 90)
    assert clearly_better(alike, plain, ("deskew",)) and clearly_better(alike, plain, ("colour", "deskew"))
    assert not clearly_better(worse, plain, ("deskew",))
    assert clearly_better(alike, plain, ("upscale",))
    assert not clearly_better(alike, plain, ("despeckle",)) and not clearly_better(alike, plain, ("deskew", "flatten"))


# --- which pages pay for the checks ------------------------------------------------------


def lines_stand_in(tmp_path: Path, conf: float, slope: float = 0.0, lines: int = 4) -> str:
    """A ``tesseract`` that reads any page as ``lines`` lines of four words at ``conf``, each
    line's words ``slope`` pixels lower per pixel across (a page turned that much), and logs
    its calls."""
    rows = [(1, 1, 0, 0, 0, 0, 0, 0, 1700, 2200, -1, "")]
    for line in range(1, lines + 1):
        for i in range(4):
            left = 200 + 300 * i
            top = 200 + 60 * line + round(slope * left)
            rows.append((5, 1, 1, 1, line, i + 1, left, top, 200, 30, conf, ["Follow", "review", "blood", "Return"][i]))
    path = tmp_path / f"lines-{conf}-{slope}.tsv"
    path.write_text(tsv(rows))
    return fake_tesseract(tmp_path, f'echo "$@" >> {tmp_path / "calls.txt"}\ncat {path}')


def page_file(tmp_path: Path, mode: str = "L", dpi: tuple[int, int] = (200, 200)) -> Path:
    path = tmp_path / f"page-{mode}-{dpi[0]}x{dpi[1]}.jpg"
    Image.new(mode, (170, 220), "white").save(path, dpi=dpi)
    return path


@pytest.mark.parametrize(
    ("conf", "slope", "mode", "dpi", "checked"),
    [
        (95.0, 0.0, "L", (200, 200), False),  # greyscale, read sure and level: no checks
        (95.0, 0.004, "L", (200, 200), False),  # a quarter of a degree off: Tesseract copes
        (95.0, 0.0175, "L", (200, 200), True),  # a degree off: the skew check decides
        (70.0, 0.0, "L", (200, 200), True),  # unsure (speckle, uneven light): checked
        (95.0, 0.0, "RGB", (200, 200), True),  # colour: a stamp or a photo, checked
        (95.0, 0.0, "L", (204, 98), True),  # a standard fax: stretched to square
        (95.0, 0.0, "L", (150, 150), True),  # under 180 dpi: upscaled
    ],
)
def test_a_page_that_reads_sure_and_level_pays_for_no_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conf, slope, mode, dpi, checked
) -> None:
    # Given a page Tesseract reads at `conf`, its lines sloping by `slope`, stored as `mode` at `dpi`
    import shared.adapters.tesseract as adapter

    seen = []
    real = adapter._prepared
    monkeypatch.setattr(adapter, "_prepared", lambda image, steps: seen.append(image) or real(image, steps))
    cmd = lines_stand_in(tmp_path, conf, slope)
    # When it is read
    text = TesseractOcr(cmd=cmd).read(page_file(tmp_path, mode, dpi), page_number=1)
    # Then only a page whose header or reading gives cause is decoded and checked; the others
    # are read once, as stored, with no ink measured (nothing asks for it: the page has text)
    assert bool(seen) == checked
    assert (text.ink_coverage is not None) == checked
    if not checked:
        assert len(calls(tmp_path)) == 1 and text.preparation == [] and text.confidence == pytest.approx(conf / 100)


def test_too_few_lines_to_tell_the_slope_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.adapters.tesseract as adapter

    seen = []
    monkeypatch.setattr(adapter, "_prepared", lambda image, steps: seen.append(image))
    TesseractOcr(cmd=lines_stand_in(tmp_path, 95.0, lines=2)).read(page_file(tmp_path), page_number=1)
    assert seen
