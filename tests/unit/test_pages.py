"""Sniffing and rendering documents the tests generate: PDFs, TIFF, JPEG, PNG, HEIC."""

from __future__ import annotations

import dataclasses
import inspect
import io
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from shared.errors import (
    EmptyFileError,
    EncryptedDocumentError,
    NoPagesError,
    PageTooLargeError,
    TooManyPagesError,
    UnreadableDocumentError,
    UnsupportedTypeError,
)
from shared.models import Box
from shared.pages.documents import Limits, RenderedPage, open_document, release_native_caches
from shared.pages.pdf import _rasterise
from shared.pages.sniff import DocumentKind, sniff
from shared.settings import Settings

LETTER = (612, 792)  # points
CORPUS_PDFS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "pdfs"
NOTE = [
    "Discharge Summary",
    "Patient admitted with community acquired pneumonia.",
    "Treated with intravenous ceftriaxone and azithromycin.",
    "Discharged on oral amoxicillin for five days.",
]


def limits(**overrides: int) -> Limits:
    return dataclasses.replace(Limits.from_settings(Settings()), **overrides)


def render(path: Path, lim: Limits | None = None) -> list[RenderedPage]:
    with open_document(path, sniff(path), lim or limits()) as document:
        pages = list(document.pages())
        assert document.page_count == len(pages)
    release_native_caches()
    return pages


def decode(page: RenderedPage) -> Image.Image:
    image = Image.open(io.BytesIO(page.jpeg))
    assert image.format == "JPEG"
    assert image.size == (page.width, page.height)
    return image


def ink_box(image: Image.Image) -> tuple[float, float, float, float]:
    """The normalised bounding box of the dark pixels of an image."""
    dark = image.convert("L").point(lambda v: 255 if v < 128 else 0)
    x0, y0, x1, y1 = dark.getbbox()
    return x0 / image.width, y0 / image.height, x1 / image.width, y1 / image.height


def union(boxes: list[Box]) -> tuple[float, float, float, float]:
    return (min(b.x0 for b in boxes), min(b.y0 for b in boxes), max(b.x1 for b in boxes), max(b.y1 for b in boxes))


def write_text_pdf(path: Path, pages: list[list[str]], rotate: int = 0, **save: object) -> Path:
    doc = pymupdf.open()
    for lines in pages:
        page = doc.new_page(width=LETTER[0], height=LETTER[1])
        for i, line in enumerate(lines):
            page.insert_text((72, 90 + 22 * i), line, fontsize=13)
        page.set_rotation(rotate)
    doc.save(path, **save)
    doc.close()
    return path


def text_image(lines: list[str], zoom: float = 2.0) -> Image.Image:
    """Upright black-on-white text, rendered by PyMuPDF (no font files needed)."""
    doc = pymupdf.open()
    page = doc.new_page(width=LETTER[0], height=300)
    for i, line in enumerate(lines):
        page.insert_text((36, 40 + 24 * i), line, fontsize=16)
    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def write_scan_pdf(path: Path, header: str | None = None) -> Path:
    """An image-only page (a 'scan' of text), optionally with a real-text fax header."""
    png = io.BytesIO()
    text_image(NOTE).save(png, "PNG")
    doc = pymupdf.open()
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    page.insert_image(pymupdf.Rect(0, 40, LETTER[0], LETTER[1]), stream=png.getvalue(), keep_proportion=False)
    if header:
        page.insert_text((36, 20), header, fontsize=7)
    doc.save(path)
    doc.close()
    return path


def pdf_from_objects(objects: list[bytes]) -> bytes:
    """A hand-made PDF with a correct xref table, for structures PyMuPDF will not write."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_limits_follow_settings() -> None:
    settings = Settings(render_dpi=150, max_pages=7)
    assert dataclasses.asdict(Limits.from_settings(settings)) == {
        "max_pages": 7,
        "max_page_pixels": settings.max_page_pixels,
        "render_dpi": 150,
        "render_max_edge": settings.render_max_edge,
        "jpeg_quality": settings.jpeg_quality,
        "native_text_min_chars": settings.native_text_min_chars,
        "max_render_s": settings.max_render_s_per_page,
    }


# --- sniff ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "mime"),
    [
        (DocumentKind.PDF, "application/pdf"),
        (DocumentKind.TIFF, "image/tiff"),
        (DocumentKind.JPEG, "image/jpeg"),
        (DocumentKind.PNG, "image/png"),
        (DocumentKind.HEIC, "image/heic"),
    ],
)
def test_sniff_reads_magic_bytes_not_the_name(tmp_path: Path, kind: DocumentKind, mime: str) -> None:
    # Given a file of each kind saved under a misleading name
    path = tmp_path / "upload.txt"
    if kind is DocumentKind.PDF:
        write_text_pdf(path, [NOTE])
    elif kind is DocumentKind.HEIC:
        import pillow_heif

        pillow_heif.from_pillow(text_image(NOTE)).save(path, quality=80)
    else:
        text_image(NOTE).save(path, {"tiff": "TIFF", "jpeg": "JPEG", "png": "PNG"}[kind.value])

    # Then sniffing names its real kind
    assert sniff(path) is kind
    assert kind.mime == mime
    assert kind.extension in ("pdf", "tiff", "jpg", "png", "heic")


def test_sniff_finds_a_pdf_header_after_leading_junk_within_1k(tmp_path: Path) -> None:
    pdf = write_text_pdf(tmp_path / "a.pdf", [NOTE]).read_bytes()
    near = tmp_path / "near"
    near.write_bytes(b"\0" * 600 + pdf)
    far = tmp_path / "far"
    far.write_bytes(b"\0" * 1100 + pdf)

    assert sniff(near) is DocumentKind.PDF
    with pytest.raises(UnsupportedTypeError):
        sniff(far)


def test_sniff_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    with pytest.raises(EmptyFileError) as caught:
        sniff(path)
    assert caught.value.code == "empty_file"


@pytest.mark.parametrize(
    "head",
    [
        b"Patient: Canary Jones\nDOB 1970-01-01\n",  # plain text named .pdf
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",  # AVIF
        b"GIF89a\x01\x00\x01\x00",
        b"PK\x03\x04Canary",
    ],
)
def test_sniff_rejects_other_files_without_quoting_them(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(head + b"\x00" * 64)
    with pytest.raises(UnsupportedTypeError) as caught:
        sniff(path)
    assert caught.value.code == "unsupported_type"
    assert "not a PDF, TIFF, JPEG, PNG or HEIC file" in caught.value.message
    assert "Canary" not in caught.value.message


# --- PDF -----------------------------------------------------------------------------


def test_text_pdf_pages_have_native_text_with_boxes(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "note.pdf", [NOTE, ["Medication list", "Amoxicillin 500 mg three times daily"]])

    pages = render(path)

    assert [p.page_number for p in pages] == [1, 2]
    first = pages[0]
    # Letter at 200 dpi: 8.5 x 11 in
    assert (first.width, first.height) == (1700, 2200)
    assert first.native_text is not None
    text = first.native_text
    assert text.engine == "native" and text.page_number == 1
    assert text.text.splitlines()[0] == "Discharge Summary"
    assert "ceftriaxone and azithromycin" in text.text
    assert [line.text for line in text.lines] == NOTE
    assert len(text.words) == sum(len(line.split()) for line in NOTE)
    for item in [*text.words, *text.lines]:
        assert 0 <= item.box.x0 < item.box.x1 <= 1 and 0 <= item.box.y0 < item.box.y1 <= 1
    assert "Amoxicillin 500 mg" in pages[1].native_text.text

    # The boxes are where the rendered JPEG has ink.
    ink = ink_box(decode(first))
    words = union([w.box for w in text.words])
    assert ink == pytest.approx(words, abs=0.01)


def test_rotated_page_is_rendered_and_boxed_as_displayed(tmp_path: Path) -> None:
    # Given a portrait page whose /Rotate 90 shows it landscape
    path = write_text_pdf(tmp_path / "rotated.pdf", [NOTE], rotate=90)

    (page,) = render(path)

    # Then the JPEG is landscape, the text reads top to bottom down the right side...
    assert (page.width, page.height) == (2200, 1700)
    text = page.native_text
    assert text is not None and [line.text for line in text.lines] == NOTE
    word = next(w for w in text.words if w.text == "azithromycin.")
    assert word.box.y1 - word.box.y0 > 3 * (word.box.x1 - word.box.x0)  # runs vertically
    assert word.box.x0 > 0.5  # text near the top of the unrotated page is now at the right
    # ...and the boxes sit on the ink of the rendered (rotated) JPEG.
    assert ink_box(decode(page)) == pytest.approx(union([w.box for w in text.words]), abs=0.01)


def test_page_is_scaled_down_to_the_longest_edge(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "note.pdf", [NOTE])

    (page,) = render(path, limits(render_max_edge=600))

    assert max(page.width, page.height) <= 600
    assert page.height == pytest.approx(600, abs=1)
    assert page.width == pytest.approx(600 * 612 / 792, abs=1)


def test_pages_are_rendered_lazily_one_at_a_time(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "three.pdf", [NOTE] * 3)
    with open_document(path, DocumentKind.PDF, limits()) as document:
        assert document.page_count == 3
        pages = document.pages()
        assert inspect.isgenerator(pages)
        assert next(pages).page_number == 1


def test_image_only_pdf_page_needs_ocr(tmp_path: Path) -> None:
    (page,) = render(write_scan_pdf(tmp_path / "scan.pdf"))
    assert page.native_text is None
    assert decode(page).size == (1700, 2200)


def test_scan_with_a_fax_header_still_needs_ocr(tmp_path: Path) -> None:
    # A real-text line over a full-page scan is not the page's content.
    header = "From Riverside Clinic Fax 555 0100 2024-03-01 10:31 Page 1 of 3"
    (page,) = render(write_scan_pdf(tmp_path / "fax.pdf", header=header))
    assert page.native_text is None


def colour_pages_pdf(path: Path) -> Path:
    """One page per case: black text, grey lines, navy text, a highlighted word, a grey
    scan, a photo (RGB)."""
    doc = pymupdf.open()
    for name in ("black text", "grey rule", "navy text", "highlight", "grey scan", "colour photo"):
        page = doc.new_page(width=LETTER[0], height=LETTER[1])
        if name == "grey scan":
            png = io.BytesIO()
            text_image(NOTE).convert("L").save(png, "PNG")
            page.insert_image(page.rect, stream=png.getvalue())
            continue
        if name == "colour photo":
            png = io.BytesIO()
            Image.new("RGB", (64, 48), (40, 120, 200)).save(png, "PNG")
            page.insert_image(pymupdf.Rect(72, 300, 300, 470), stream=png.getvalue())
        page.insert_text((72, 90), NOTE[1], fontsize=13, color=(0, 0, 0.55) if name == "navy text" else (0, 0, 0))
        if name == "grey rule":
            page.draw_line((72, 100), (540, 100), color=(0.5, 0.5, 0.5), width=2)
        if name == "highlight":
            page.add_highlight_annot(page.search_for("pneumonia")[0])
    doc.save(path)
    doc.close()
    return path


def test_pages_without_colour_are_stored_grey_and_colour_is_kept(tmp_path: Path) -> None:
    pages = render(colour_pages_pdf(tmp_path / "colours.pdf"))

    modes = [decode(page).mode for page in pages]
    assert modes == ["L", "L", "RGB", "RGB", "L", "RGB"]
    # The colour pages keep their colour: the navy words are blue, the highlight yellow.
    navy = decode(pages[2])
    ink = navy.convert("L").point(lambda v: 255 if v < 160 else 0)
    red, _, blue = ImageStat.Stat(navy, ink).mean
    assert blue > red + 40  # the ink is navy, not black
    highlight = decode(pages[3]).convert("RGB")
    word = pages[3].native_text.words[[w.text for w in pages[3].native_text.words].index("pneumonia.")]
    x = round((word.box.x0 + word.box.x1) / 2 * highlight.width)
    y = round((word.box.y0 + 0.1 * (word.box.y1 - word.box.y0)) * highlight.height)
    red, green, blue = highlight.getpixel((x, y))
    assert red > 200 and green > 200 and blue < 120  # yellow, not grey


def _overlapping_transparency_pdf() -> bytes:
    content = (
        b"0.2 0.2 0.2 rg BT /F1 24 Tf 30 150 Td (Grey text under glass) Tj ET"
        b" 1 0 0 rg 20 20 100 100 re f /G1 gs 0 0 1 rg 60 60 100 100 re f"
        b" /G2 gs 0 1 0 rg 40 80 120 40 re f"
    )
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R"
            b" /Group << /S /Transparency /CS /DeviceRGB >>"
            b" /Resources << /Font << /F1 5 0 R >> /ExtGState << /G1 6 0 R /G2 7 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Type /ExtGState /ca 0.5 /BM /Multiply >>",
            b"<< /Type /ExtGState /ca 0.3 /BM /Screen >>",
        ]
    )


def _as_rgb(pixmap: pymupdf.Pixmap) -> Image.Image:
    """A pixmap as an RGB image, dropping the fourth byte of RGBX."""
    mode = {3: "RGB", 4: "RGBX"}[pixmap.n]
    return Image.frombytes(mode, (pixmap.width, pixmap.height), pixmap.samples).convert("RGB")


def _check_against_pymupdf(page: pymupdf.Page, scale: float) -> str:
    """Our raster of a page against PyMuPDF's own RGB render of it: a page we render grey has
    no colour in RGB either, and an RGBX page is the same picture."""
    ours = _rasterise(page.get_displaylist(), scale)
    reference = _as_rgb(page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), colorspace=pymupdf.csRGB, alpha=False))
    assert (ours.width, ours.height) == reference.size
    if ours.n == 1:
        red, green, blue = reference.split()
        spread = max(ImageChops.difference(a, b).getextrema()[1] for a, b in ((red, green), (green, blue)))
        assert spread <= 8, f"page {page.number + 1} rendered grey has colour (R, G, B apart by {spread})"
        return "grey"
    # Blending onto an opaque pixmap with an alpha channel may round one unit apart from
    # blending onto one without: nothing a reader or OCR can see.
    difference = max(high for _, high in ImageChops.difference(_as_rgb(ours), reference).getextrema())
    assert difference <= 2, f"page {page.number + 1} differs by up to {difference}"
    return "rgb"


def test_rgbx_and_grey_pages_are_what_pymupdf_renders(tmp_path: Path) -> None:
    # Opaque white under the page, then MuPDF's own draw device: transparency and blend
    # modes composite as they do in a plain RGB pixmap.
    transparent = pymupdf.open("pdf", _overlapping_transparency_pdf())
    assert [_check_against_pymupdf(page, 2.0) for page in transparent] == ["rgb"]
    colours = pymupdf.open(colour_pages_pdf(tmp_path / "colours.pdf"))
    assert [_check_against_pymupdf(page, 1.0) for page in colours] == ["grey", "grey", "rgb", "rgb", "grey", "rgb"]


@pytest.mark.skipif(not (CORPUS_PDFS / "manifest.csv").is_file(), reason="no ../shared/corpus here")
def test_grey_and_rgbx_rendering_of_real_world_pdfs() -> None:
    # The first page of every corpus PDF that opens (~130 of them).
    seen = {"grey": 0, "rgb": 0}
    for path in sorted(CORPUS_PDFS.glob("*.pdf")):
        try:
            doc = pymupdf.open(path)
            if doc.needs_pass or doc.page_count == 0:
                continue
            page = doc.load_page(0)
        except Exception:  # noqa: BLE001 - broken files are test_corpus's business
            continue
        if page.rect.width * page.rect.height > 4_000_000:
            continue  # a poster-sized page: slow to render twice, nothing new
        seen[_check_against_pymupdf(page, 1.0)] += 1
    assert seen["grey"] >= 50 and seen["rgb"] >= 20, seen


def test_too_little_text_needs_ocr(tmp_path: Path) -> None:
    (page,) = render(write_text_pdf(tmp_path / "short.pdf", [["Page 2"]]))
    assert page.native_text is None


def test_garbage_text_layer_needs_ocr(tmp_path: Path) -> None:
    # Given a page whose second font maps its glyphs to no Unicode (a broken subset font)
    def page_with(content: bytes) -> bytes:
        diffs = b" ".join(b"/g%d" % i for i in range(1, 90))
        return pdf_from_objects(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
                b" /Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> >>",
                b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
                b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica"
                b" /Encoding << /Type /Encoding /Differences [1 " + diffs + b"] >> >>",
            ]
        )

    readable = b"BT /F1 14 Tf 72 700 Td (Discharge summary for the patient) Tj ET"
    broken = readable + b" BT /F2 14 Tf 72 680 Td <" + bytes(range(1, 90)).hex().encode() + b"> Tj ET"
    good = tmp_path / "good.pdf"
    good.write_bytes(page_with(readable))
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(page_with(broken))

    # Then the clean page keeps its text and the broken one goes to OCR
    assert render(good)[0].native_text.text == "Discharge summary for the patient"
    assert render(bad)[0].native_text is None


def test_pdf_with_a_user_password_is_encrypted(tmp_path: Path) -> None:
    path = write_text_pdf(
        tmp_path / "locked.pdf", [NOTE], encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner"
    )
    with pytest.raises(EncryptedDocumentError) as caught:
        render(path)
    assert caught.value.code == "encrypted"


def test_pdf_with_only_an_owner_password_opens(tmp_path: Path) -> None:
    path = write_text_pdf(
        tmp_path / "restricted.pdf",
        [NOTE],
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        owner_pw="owner",
        permissions=pymupdf.PDF_PERM_PRINT,
    )
    with pymupdf.open(path) as check:
        assert check.metadata["encryption"]  # encrypted, yet no password is needed to read
        assert not check.needs_pass

    (page,) = render(path)

    assert page.native_text is not None and "pneumonia" in page.native_text.text


def test_truncated_pdf_is_unreadable(tmp_path: Path) -> None:
    whole = write_text_pdf(tmp_path / "whole.pdf", [NOTE] * 3, deflate=True).read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(whole[:300])

    with pytest.raises(UnreadableDocumentError) as caught:
        render(path)
    assert caught.value.code == "unreadable_document"
    assert isinstance(caught.value.__cause__, Exception)  # raised from the vendor error


def test_pdf_without_pages(tmp_path: Path) -> None:
    path = tmp_path / "zero.pdf"
    path.write_bytes(
        pdf_from_objects([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])
    )
    with pytest.raises(NoPagesError) as caught:
        render(path)
    assert caught.value.code == "no_pages"


def test_pdf_with_too_many_pages(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "three.pdf", [NOTE] * 3)
    with pytest.raises(TooManyPagesError) as caught:
        render(path, limits(max_pages=2))
    assert caught.value.code == "too_many_pages"
    assert "3 pages" in caught.value.message


def test_pdf_page_over_the_pixel_limit(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "note.pdf", [NOTE])
    with pytest.raises(PageTooLargeError) as caught:
        render(path, limits(max_page_pixels=1_000_000))  # a letter page renders at 3.7 MP
    assert caught.value.code == "page_too_large"


def test_pdf_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    # Given a page holding a 4000x4000 image (16 MP) that would render at only 3.7 MP
    png = io.BytesIO()
    Image.new("L", (4000, 4000), 255).save(png, "PNG")
    doc = pymupdf.open()
    doc.new_page(width=LETTER[0], height=LETTER[1]).insert_image(pymupdf.Rect(0, 0, *LETTER), stream=png.getvalue())
    path = tmp_path / "bomb.pdf"
    doc.save(path)

    with pytest.raises(PageTooLargeError, match="4000x4000"):
        render(path, limits(max_page_pixels=10_000_000))
    assert render(path, limits(max_page_pixels=20_000_000))[0].native_text is None


# --- images --------------------------------------------------------------------------


def test_two_page_tiff(tmp_path: Path) -> None:
    first = text_image(["Page one of the referral letter"]).convert("1")
    second = text_image(["Page two", "of the referral letter", "with more lines"]).convert("L")
    path = tmp_path / "fax.tif"
    first.save(path, "TIFF", save_all=True, append_images=[second], compression="tiff_lzw", dpi=(200, 200))

    pages = render(path)

    assert sniff(path) is DocumentKind.TIFF
    assert [p.page_number for p in pages] == [1, 2]
    assert all(p.native_text is None for p in pages)
    images = [decode(p) for p in pages]
    assert [im.size for im in images] == [first.size, second.size]
    assert images[0].info["dpi"] == pytest.approx((200, 200))
    # Different pages, not the first frame twice: page two has ink further down.
    assert ink_box(images[1])[3] > ink_box(images[0])[3] + 0.1


def test_jpeg_with_exif_orientation_6_is_turned_upright(tmp_path: Path) -> None:
    # Given upright text stored turned 90 degrees anticlockwise, with EXIF 6 ("rotate
    # 90 clockwise to display"), as phones write portrait photos
    upright = text_image(NOTE)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())

    (page,) = render(path)

    # Then the page is the upright image again
    image = decode(page).convert("L")
    assert image.size == upright.size
    difference = ImageChops.difference(upright.convert("L"), image)
    assert ImageStat.Stat(difference).mean[0] < 4
    # (the same comparison with the image as stored, sideways, would not even match sizes)
    assert stored.size != upright.size


def test_png_with_transparency_is_flattened_on_white(tmp_path: Path) -> None:
    # Given black text on a fully transparent background (colour under it: black)
    ink = text_image(NOTE).convert("L")
    rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
    rgba.putalpha(ImageOps.invert(ink))
    path = tmp_path / "scan.png"
    rgba.save(path, "PNG")

    (page,) = render(path)

    image = decode(page).convert("L")
    assert image.getpixel((2, 2)) > 240
    assert ink_box(image) == pytest.approx(ink_box(ink), abs=0.01)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "I;16", "CMYK"])
def test_image_modes_become_jpeg(tmp_path: Path, mode: str) -> None:
    base = text_image(NOTE)
    if mode == "I;16":
        # 16-bit grey with the 8-bit values in the high byte (little-endian samples)
        image = Image.frombytes("I;16", base.size, bytes(b for v in base.convert("L").tobytes() for b in (0, v)))
    else:
        image = base.convert(mode)
    path = tmp_path / ("page.jpg" if mode == "CMYK" else "page.png")
    image.save(path)

    (page,) = render(path)

    decoded = decode(page)
    assert decoded.mode in ("L", "RGB")
    assert ink_box(decoded) == pytest.approx(ink_box(base), abs=0.01)


def test_large_image_is_scaled_down(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    text_image(NOTE).resize((3600, 1200)).save(path)

    (page,) = render(path)

    assert (page.width, page.height) == (2400, 800)


def test_heic(tmp_path: Path) -> None:
    import pillow_heif

    path = tmp_path / "IMG_0001.HEIC"
    pillow_heif.from_pillow(text_image(NOTE)).save(path, quality=90)

    (page,) = render(path)

    assert sniff(path) is DocumentKind.HEIC
    assert (page.width, page.height) == text_image(NOTE).size
    assert page.native_text is None


def test_oversize_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (3000, 2000), 255).save(path)
    with pytest.raises(PageTooLargeError) as caught:
        render(path, limits(max_page_pixels=5_000_000))
    assert caught.value.code == "page_too_large"
    assert "3000x2000" in caught.value.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_truncated_image_is_unreadable(tmp_path: Path, fmt: str) -> None:
    out = io.BytesIO()
    text_image(NOTE).save(out, fmt)
    path = tmp_path / "cut"
    path.write_bytes(out.getvalue()[: len(out.getvalue()) // 2])

    with pytest.raises(UnreadableDocumentError):
        render(path)


def test_image_header_with_garbage_after_it_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 500)
    with pytest.raises(UnreadableDocumentError):
        render(path)


def test_a_page_that_renders_too_slowly_fails_the_file(tmp_path: Path) -> None:
    import dataclasses

    from shared.errors import PageRenderTooSlowError
    from shared.settings import Settings

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Clinic Visit Note " * 20)
    path = tmp_path / "slow.pdf"
    doc.save(path)
    limits = dataclasses.replace(Limits.from_settings(Settings()), max_render_s=1e-9)
    with pytest.raises(PageRenderTooSlowError) as caught:
        with open_document(path, DocumentKind.PDF, limits) as document:
            list(document.pages())
    assert caught.value.code == "render_too_slow" and "page 1" in caught.value.message


# --- a scanner's page: its JPEG as stored in the PDF ---------------------------------

SCAN_SIZE = (1700, 2200)  # a US Letter page at the default 200 dpi


def scanner_pdf(path: Path, mode: str = "L", size: tuple[int, int] = SCAN_SIZE, extra=None, rotate: int = 0,
                fmt: str = "JPEG") -> tuple[Path, bytes]:
    """A scanner's PDF: one page, one JPEG (or ``fmt``) over the whole of it; ``extra(page)``
    paints something more. Returns the path and the image file's bytes."""
    image = ImageOps.fit(text_image(NOTE), size).convert(mode)
    data = io.BytesIO()
    image.save(data, fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    doc = pymupdf.open()
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    page.insert_image(page.rect, stream=data.getvalue(), keep_proportion=False)
    if extra:
        extra(page)
    if rotate:
        page.set_rotation(rotate)
    doc.save(path)
    doc.close()
    return path, data.getvalue()


def _scan_data(jpeg: bytes) -> bytes:
    """A JPEG's entropy-coded data: from its first start-of-scan marker on."""
    return jpeg[jpeg.index(b"\xff\xda"):]


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_scanners_page_is_stored_as_scanned(tmp_path: Path, mode: str) -> None:
    # Given a page that is one JPEG at the size the page renders at, and nothing else
    path, scan = scanner_pdf(tmp_path / "scan.pdf", mode)
    (page,) = render(path)
    # Then its JPEG is the scan's own data (no second JPEG loss), with the page's resolution
    assert _scan_data(page.jpeg) == _scan_data(scan)
    image = decode(page)
    assert image.size == SCAN_SIZE and image.mode == mode and image.info["dpi"] == (200, 200)
    assert ImageChops.difference(image, Image.open(io.BytesIO(scan))).getbbox() is None
    assert page.native_text is None


@pytest.mark.parametrize(
    "case",
    ["text over it", "a line over it", "smaller than the page renders", "turned page", "PNG", "CMYK", "annotation"],
)
def test_any_other_page_with_a_scan_is_rendered(tmp_path: Path, case: str) -> None:
    kwargs = {
        "text over it": {"extra": lambda page: page.insert_text((36, 20), "Fax from Riverside Clinic", fontsize=7)},
        "a line over it": {"extra": lambda page: page.draw_line((72, 100), (540, 100), width=2)},
        "smaller than the page renders": {"size": (850, 1100)},
        "turned page": {"rotate": 90},
        "PNG": {"fmt": "PNG"},
        "CMYK": {"mode": "CMYK"},
        "annotation": {"extra": lambda page: page.add_text_annot((100, 100), "seen")},
    }[case]
    path, scan = scanner_pdf(tmp_path / "scan.pdf", **kwargs)
    (page,) = render(path)
    decode(page)
    if kwargs.get("fmt") != "PNG":
        assert _scan_data(page.jpeg) != _scan_data(scan)  # rendered and encoded again


def test_a_scan_the_shortcut_cannot_trust_is_rendered() -> None:
    from shared.pages.jpeg import with_density

    image = io.BytesIO()
    Image.new("L", (40, 30), 200).save(image, "JPEG")
    jpeg = image.getvalue()
    assert with_density(jpeg, 40, 30, 1, 200) is not None
    assert with_density(jpeg[:-40], 40, 30, 1, 200) is None  # truncated
    assert with_density(jpeg, 41, 30, 1, 200) is None  # not the size the PDF says
    assert with_density(jpeg, 40, 30, 3, 200) is None  # nor its components
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = io.BytesIO()
    Image.new("L", (40, 30), 200).save(turned, "JPEG", exif=exif.tobytes())
    assert with_density(turned.getvalue(), 40, 30, 1, 200) is None  # a viewer would turn it
    arithmetic = jpeg.replace(b"\xff\xc0", b"\xff\xc9", 1)
    assert with_density(arithmetic, 40, 30, 1, 200) is None
