"""Degraded pages of clinical text, with their truth: what clinics actually send, made here.

Each page is a visit note of ACI-Bench (``../shared/corpus/text/aci_bench``) set on a letter
page with PyMuPDF, its truth the page's own text as laid out, then degraded one way and
saved as the file a clinic would send (a G4 fax TIFF, a scanner's TIFF, a phone's JPEG):

- ``fax fine`` / ``fax standard``: bilevel, 204x196 and 204x98 dpi, CCITT G4;
- ``skew``: 2-4 degrees, clockwise and anticlockwise in turn, 300 dpi grey;
- ``photo``: a phone photo: a little perspective, uneven light, blur, a warm cast, JPEG;
- ``speckle 150 dpi``: 150 dpi bilevel with salt-and-pepper dots;
- ``stamp on tinted paper``: a red or blue RECEIVED stamp across the text, tinted paper,
  a highlighter stroke, colour JPEG;
- ``two columns``: the note in two columns;
- ``real fax scan``: the CCITT, JBIG2 and skewed JBIG2 scans of ``corpus/pdfs`` (one page of
  a 1985 user manual; its truth, ``corpus/ocr/ocrmypdf/linn.txt``, is machine OCR of the same
  page, so their CER has that floor).

Two parts that share no note: **development** (notes of ACI-Bench's ``train`` split; the
preparation's thresholds were tuned on these) and **validation** (its ``valid`` split; looked
at, never tuned on). The real scans are split by file: ccitt for development, the two JBIG2
scans for validation. Everything is seeded: the same pages every run.
"""

from __future__ import annotations

import csv
import dataclasses
import random
from pathlib import Path

KINDS = (
    "fax fine",
    "fax standard",
    "skew",
    "photo",
    "speckle 150 dpi",
    "stamp on tinted paper",
    "two columns",
)
REAL_FAX = "real fax scan"
SPLITS = {"development": "train.csv", "validation": "valid.csv"}
REAL_SCANS = {
    "development": ["ocrmypdf__ccitt.pdf"],
    "validation": ["ocrmypdf__jbig2.pdf", "ocrmypdf__rotated_skew.pdf"],
}
_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@dataclasses.dataclass
class DegradedSource:
    """A file to send through preprocess, with what its page says."""

    path: Path
    kind: str
    split: str
    name: str
    reference: str


def degraded_sources(shared: Path, work: Path, per_kind: int, notes: list[str]) -> list[DegradedSource]:
    """``per_kind`` pages of every kind in each part, and the real fax scans."""
    aci = shared / "corpus" / "text" / "aci_bench" / "challenge_data"
    sources: list[DegradedSource] = []
    if not (aci / "train.csv").is_file():
        notes.append(f"degraded pages: no ACI-Bench notes in {aci}, skipped")
    else:
        for split, file_name in SPLITS.items():
            texts = _notes(aci / file_name)
            rng = random.Random(f"docpipe-{split}")
            index = 0
            for kind in KINDS:
                for i in range(per_kind):
                    note = texts[index % len(texts)]
                    index += 1
                    name = f"{split[:3]}-{kind.replace(' ', '_')}-{i}"
                    sources.append(_make(kind, note, i, rng, work / name, split, name))
    linn = shared / "corpus" / "ocr" / "ocrmypdf" / "linn.txt"
    for split, files in REAL_SCANS.items():
        for file_name in files:
            path = shared / "corpus" / "pdfs" / file_name
            if path.is_file() and linn.is_file():
                sources.append(DegradedSource(path, REAL_FAX, split, path.stem, linn.read_text()))
            else:
                notes.append(f"degraded pages: {file_name} or linn.txt absent, skipped")
    return sources


def _notes(path: Path) -> list[str]:
    csv.field_size_limit(1 << 24)
    with path.open(newline="", encoding="utf-8") as f:
        return [row["note"] for row in csv.DictReader(f)]


def _layout(note: str, columns: int):
    """A letter page holding as much of the note as fits, and its text as laid out."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    words = note.replace("\u2022", "-").split(" ")
    boxes = (
        [pymupdf.Rect(60, 60, 552, 740)]
        if columns == 1
        else [pymupdf.Rect(50, 60, 296, 740), pymupdf.Rect(316, 60, 562, 740)]
    )
    rest = words
    for rect in boxes:
        # Binary search for the longest run of words that fits the box.
        low, high = 1, min(len(rest), 600)
        while low < high:
            mid = (low + high + 1) // 2
            probe = pymupdf.open()
            fits = probe.new_page(width=612, height=792).insert_textbox(rect, " ".join(rest[:mid]), fontsize=10.5) >= 0
            probe.close()
            low, high = (mid, high) if fits else (low, mid - 1)
        assert page.insert_textbox(rect, " ".join(rest[:low]), fontsize=10.5) >= 0
        rest = rest[low:]
    return doc, page.get_text()


def _render(page, dpi: int, colour: bool = False):
    import pymupdf
    from PIL import Image

    pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csRGB if colour else pymupdf.csGRAY, alpha=False)
    return Image.frombytes("RGB" if colour else "L", (pix.width, pix.height), pix.samples)


def _make(kind: str, note: str, i: int, rng: random.Random, stem: Path, split: str, name: str) -> DegradedSource:
    from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

    doc, reference = _layout(note, 2 if kind == "two columns" else 1)
    page = doc[0]
    if kind in ("fax fine", "fax standard"):
        y_dpi = 196 if kind == "fax fine" else 98
        grey = _render(page, 408)
        fax = grey.resize((round(grey.width / 2), round(grey.height * y_dpi / 408)), Image.Resampling.BOX)
        fax = fax.point(lambda v: 255 if v > 150 else 0).convert("1", dither=Image.Dither.NONE)
        path = stem.with_suffix(".tif")
        fax.save(path, compression="group4", dpi=(204, y_dpi))
    elif kind == "skew":
        degrees = (2.0 + 2.0 * rng.random()) * (1 if i % 2 else -1)
        grey = _render(page, 300).rotate(degrees, Image.Resampling.BICUBIC, expand=True, fillcolor=255)
        path = stem.with_suffix(".tif")
        grey.save(path, compression="tiff_lzw", dpi=(300, 300))
        name = f"{name} ({degrees:+.1f} deg)"
    elif kind == "photo":
        colour = _render(page, 200, colour=True)
        w, h = colour.size
        # A little perspective: the top edge a few percent narrower than the bottom.
        d = 0.03 * w * (0.5 + rng.random())
        coeffs = _perspective([(d, 0), (w - d, 0), (w, h), (0, h)], [(0, 0), (w, 0), (w, h), (0, h)])
        colour = colour.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC,
                                  fillcolor=(90, 80, 70))
        light = Image.linear_gradient("L").rotate(rng.choice([0, 90, 180, 270]))  # a square: turns whole
        light = light.resize((w, h)).point(lambda v: 255 - v * 0.35)
        shade = Image.merge("RGB", [light, light, light.point(lambda v: v * 0.92)])
        colour = ImageChops.multiply(colour, shade).filter(ImageFilter.GaussianBlur(1.0 + 0.4 * rng.random()))
        path = stem.with_suffix(".jpg")
        colour.save(path, quality=72)
    elif kind == "speckle 150 dpi":
        grey = _render(page, 150).point(lambda v: 255 if v > 140 else 0)
        draw = ImageDraw.Draw(grey)
        for _ in range(grey.width * grey.height // 250):
            x, y = rng.randrange(grey.width), rng.randrange(grey.height)
            draw.rectangle((x, y, x + rng.randrange(2), y + rng.randrange(2)), fill=0)
        for _ in range(grey.width * grey.height // 1500):
            x, y = rng.randrange(grey.width), rng.randrange(grey.height)
            draw.point((x, y), fill=255)
        path = stem.with_suffix(".tif")
        grey.convert("1", dither=Image.Dither.NONE).save(path, compression="group4", dpi=(150, 150))
    elif kind == "stamp on tinted paper":
        colour = _render(page, 300, colour=True)
        tint = rng.choice([(250, 242, 205), (228, 238, 252), (236, 250, 232), (252, 232, 236)])
        darkness = colour.convert("L").point(lambda v: 255 - v)
        colour = Image.composite(colour, Image.new("RGB", colour.size, tint), darkness)
        ink = rng.choice([(205, 30, 40), (40, 60, 200), (200, 40, 160)])
        stamp = Image.new("RGB", (1300, 460), "white")
        draw = ImageDraw.Draw(stamp)
        draw.rounded_rectangle((8, 8, 1292, 452), radius=40, outline=ink, width=16)
        draw.text((650, 170), "RECEIVED", fill=ink, anchor="mm", font=ImageFont.truetype(_FONT, 190))
        draw.text((650, 360), f"NOV {10 + i} 2026", fill=ink, anchor="mm", font=ImageFont.truetype(_FONT, 110))
        stamp = stamp.rotate(rng.uniform(-25, 25), Image.Resampling.BICUBIC, expand=True, fillcolor="white")
        sheet = Image.new("RGB", colour.size, "white")
        sheet.paste(stamp, (rng.randrange(200, 900), rng.randrange(500, 2000)))
        # A highlighter stroke over a line or two.
        top = rng.randrange(400, 2600)
        ImageDraw.Draw(sheet).rectangle((180, top, 1900, top + 70), fill=(255, 245, 90))
        colour = ImageChops.multiply(colour, sheet)
        path = stem.with_suffix(".jpg")
        colour.save(path, quality=85)
    elif kind == "two columns":
        grey = _render(page, 300)
        path = stem.with_suffix(".tif")
        grey.save(path, compression="tiff_lzw", dpi=(300, 300))
    else:
        raise ValueError(kind)
    doc.close()
    return DegradedSource(path, kind, split, name, reference)


def _perspective(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> list[float]:
    """Pillow's 8 perspective coefficients mapping ``target`` corners onto ``source`` corners."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rhs.append(u)
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.append(v)
    return _solve(rows, rhs)


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    # Gauss-Jordan on 8 unknowns: no numpy in this repository's runtime or bench.
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]
