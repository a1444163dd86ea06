"""The generated sample documents are what their names claim."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pillow_heif
import pymupdf
import pytest
from PIL import Image, ImageOps

import docpipe_samples as samples

MAX_SAMPLE_BYTES = 1_500_000
EXIF_ORIENTATION = 0x0112  # the EXIF tag, written out here rather than taken from the module under test


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return samples.write_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return samples.write_bad_samples(tmp_path_factory.mktemp("bad"))


def _ink(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    """The share of a region's pixels that are ink (dark), 0..1, whatever the paper's tint."""
    histogram = image.convert("L").crop(box).histogram()
    return sum(histogram[:110]) / sum(histogram)


def test_write_samples_writes_five_small_files(good: dict[str, Path]) -> None:
    assert set(good) == {
        "two_visits.pdf",
        "scanned_discharge.pdf",
        "fax_referral.tiff",
        "lab_photo.jpg",
        "phone_letter.heic",
    }
    for name, path in good.items():
        assert path.name == name
        assert 0 < path.stat().st_size < MAX_SAMPLE_BYTES, name


def test_samples_are_repeatable(good: dict[str, Path], tmp_path: Path) -> None:
    again = samples.write_samples(tmp_path)

    for name, path in good.items():
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(again[name].read_bytes()).digest(), name


def test_two_visits_is_a_three_page_text_pdf(good: dict[str, Path]) -> None:
    with pymupdf.open(good["two_visits.pdf"]) as doc:
        assert doc.is_pdf
        assert doc.page_count == 3
        texts = [page.get_text() for page in doc]
        assert all(len(text.split()) > 30 for text in texts)
        assert all(not page.get_images() for page in doc)
    assert "05/03/2024" in texts[0]
    assert "Page 2 of 2" in texts[1]
    assert "19 March 2024" in texts[2]


def test_scanned_discharge_is_images_without_a_text_layer(good: dict[str, Path]) -> None:
    with pymupdf.open(good["scanned_discharge.pdf"]) as doc:
        assert doc.is_pdf
        assert doc.page_count == 2
        for page in doc:
            assert page.get_text().strip() == ""
            (image,) = page.get_images()
            width, height = image[2], image[3]
            assert width >= 1500 and height > width  # about 200 DPI, portrait


def test_fax_referral_is_a_two_page_bilevel_tiff(good: dict[str, Path]) -> None:
    with Image.open(good["fax_referral.tiff"]) as image:
        assert image.format == "TIFF"
        assert image.n_frames == 2
        for frame in range(image.n_frames):
            image.seek(frame)
            assert image.mode == "1"
            assert image.info["compression"] in {"group4", "tiff_lzw"}
            assert tuple(round(v) for v in image.info["dpi"]) == (200, 200)
            assert image.height > image.width


def test_lab_photo_is_stored_sideways_and_upright_after_exif_transpose(good: dict[str, Path]) -> None:
    with Image.open(good["lab_photo.jpg"]) as stored:
        assert stored.format == "JPEG"
        assert stored.getexif()[EXIF_ORIENTATION] == 6
        assert stored.width > stored.height  # the sensor's landscape pixels
        upright = ImageOps.exif_transpose(stored)

    assert upright.width < upright.height
    w, h = upright.size
    # Upright, the letterhead is at the top and the left-aligned text starts on the left;
    # a wrong turn or a mirror would put the ink elsewhere.
    assert _ink(upright, (0, 0, w, h // 5)) > 5 * _ink(upright, (0, h * 4 // 5, w, h))
    assert _ink(upright, (0, 0, w // 2, h // 2)) > 2 * _ink(upright, (w // 2, 0, w, h // 2))


def test_phone_letter_is_a_heic(good: dict[str, Path]) -> None:
    assert pillow_heif.is_supported(good["phone_letter.heic"])
    heif = pillow_heif.open_heif(good["phone_letter.heic"])
    assert len(heif) == 1
    image = heif.to_pillow()
    assert image.height > image.width >= 1000
    assert good["phone_letter.heic"].read_bytes()[4:12] in {b"ftypheic", b"ftypmif1", b"ftypheix"}


def test_write_bad_samples_writes_five_files(bad: dict[str, Path]) -> None:
    assert set(bad) == {"empty.pdf", "truncated.pdf", "locked.pdf", "image_named.pdf", "notes.txt"}
    assert all(path.exists() and path.name == name for name, path in bad.items())


def test_empty_pdf_is_zero_bytes(bad: dict[str, Path]) -> None:
    assert bad["empty.pdf"].stat().st_size == 0


def test_truncated_pdf_looks_like_a_pdf_but_has_no_readable_page(bad: dict[str, Path]) -> None:
    data = bad["truncated.pdf"].read_bytes()
    assert data.startswith(b"%PDF-")
    assert b"%%EOF" not in data

    try:
        doc = pymupdf.open(bad["truncated.pdf"])
    except (RuntimeError, ValueError):
        return  # pymupdf.FileDataError is a RuntimeError
    with doc:
        if doc.page_count == 0:
            return
        with pytest.raises((RuntimeError, ValueError)):
            doc.load_page(0).get_text()


def test_locked_pdf_needs_the_user_password(bad: dict[str, Path]) -> None:
    with pymupdf.open(bad["locked.pdf"]) as doc:
        assert doc.needs_pass
        assert doc.is_encrypted
        with pytest.raises(ValueError):
            doc.load_page(0)
        assert not doc.authenticate("wrong")
        assert doc.authenticate(samples.LOCKED_USER_PASSWORD)
        assert "CLINIC VISIT NOTE" in doc.load_page(0).get_text()


def test_image_named_pdf_is_a_png(bad: dict[str, Path]) -> None:
    assert bad["image_named.pdf"].suffix == ".pdf"
    assert bad["image_named.pdf"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(bad["image_named.pdf"]) as image:
        assert image.format == "PNG"
        assert image.height > image.width


def test_notes_txt_is_plain_text(bad: dict[str, Path]) -> None:
    data = bad["notes.txt"].read_bytes()
    text = data.decode("utf-8")
    assert all(c.isprintable() or c in "\n\t" for c in text)
    assert not data.startswith((b"%PDF", b"\x89PNG", b"\xff\xd8", b"II*\x00", b"MM\x00*"))
    assert len(text.split()) > 5
