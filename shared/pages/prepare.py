"""Page preparation: the copy of a page image that Tesseract reads, and the way back.

This module owns what happens to a page between the stored JPEG and the OCR engine, and
nothing else: the stored JPEG stays as scanned, the copy made here lives in a temp dir for
one reading. Each step is decided per page from cheap measurements and runs only where it
was measured to pay (``bench/ocr_eval.py``, the degraded pages); the engine then reads both
the page and the copy, and keeps the copy's reading only where it is clearly better
(``shared.adapters.tesseract``): on real scans a step that fires can still read worse.

- colour: on a page with coloured ink, read the brightest channel (HSV value) instead of
  luminance. Black text is dark in every channel; a red or blue stamp, a highlighter
  stroke and tinted paper are bright in at least one, and fade to white;
- resolution: a page whose resolution differs across and down (standard fax, 204x98 dpi)
  is stretched to square, and a page under 200 dpi is upscaled to 300;
- light: a photo lit unevenly is divided by its own paper (the page's brightest pixels
  near each place), so that one threshold fits the whole page;
- speckle: lone dark specks (dust, fax noise: dark pixels with little ink around them)
  turned to paper where there are many;
- skew: the small angle (both directions, 1 to ``MAX_SKEW_DEG`` degrees) at which the rows
  of the page's ink line up best, found on a small copy with projection profiles, and the page
  turned straight;
- ink: the share of dark pixels, so that a page with ink and no text is never a silent
  empty page.

``Prepared.box_onto_stored`` maps a box on the prepared copy (normalised, as Tesseract's
words are) back onto the stored image, where a viewer of the page JPEG draws it.

Pillow only: the Lambda zip has no room for numpy or OpenCV, and these steps need neither
(a projection profile is an image resized to one column with a box filter).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from PIL import Image, ImageChops, ImageFilter, ImageMath, ImageOps

from shared.models import OCR_EMPTY, OCR_LOW_CONFIDENCE, PageText

MAX_SKEW_DEG = 6.0
# Skew below this is left alone: Tesseract's own line finding copes with it, and a page that
# is prepared is read twice (as stored, and prepared: the better reading is kept). On the FUNSD
# training forms (real scans, skews of 0.3-2 degrees) straightening from 0.3 degrees read 69 of
# 149 pages twice for +0.8 points of mean word recall, from 1 degree 24 pages for +0.2.
_MIN_SKEW_DEG = 1.0
# The straightened profile must beat the page as it came by this factor; a page without
# lines of text (a photo, a form of boxes) has no angle worth trusting.
_MIN_SKEW_GAIN = 1.08
_SKEW_WORK_EDGE = 600  # pixels, the long edge of the copy the angle is searched on
_COARSE_STEP, _FINE_STEP = 1.0, 0.1

_MIN_DPI, _TARGET_DPI = 180, 300
_ANISOTROPY = 1.15  # x/y resolution ratio from which a page is stretched to square
_MAX_UPSCALED_PIXELS = 40_000_000

_COLOUR_SATURATION = 80  # 0..255: a pixel this saturated and bright enough is coloured ink
_COLOUR_MIN_VALUE = 60
_COLOUR_SHARE = 0.003  # of the page's pixels

_CHROMA_LIFT = 1.0
_UNEVEN_LIGHT = 30  # grey levels between the paper's darker and lighter parts

_INK_LEVEL = 128  # grey below this is ink
# Lone specks, as a share of the page: 0.0066-0.0073 on the speckled development pages, at
# most 0.0005 on every other kind (standard fax, photos, real CCITT scans included) and
# 0.0011-0.0045 on SROIE's thermal receipts, whose dotted print must be left alone (a lower
# bar despeckled six of them, and read them worse).
_SPECKLE_SHARE = 0.005
_LONE_DENSITY = 45  # 0..255 mean of a 5x5 neighbourhood: a 2x2 dot is 41, a 1-pixel line 51
_LONE_ROW_DENSITY = 60  # 0..255 mean of the 11 pixels of its row: a 2-pixel dot alone is 46

# A page is "inked" when this share of its pixels is dark: a fax header line or a hole punch
# alone stays under it; a signature, a stamp or a few lines of text do not. An inked page
# whose reading has fewer letters and digits than EMPTY_MAX_CHARS reads empty.
INKED_PAGE = 0.002
EMPTY_MAX_CHARS = 10
# Under this mean word confidence a reading is flagged for review: upright pages read at
# 0.55-0.97, the degraded development pages at 0.85-0.96 once prepared.
LOW_CONFIDENCE = 0.5

STEPS = ("colour", "flatten", "despeckle", "upscale", "deskew")

# A greyscale page that Tesseract reads sure and level needs no checks: on the 318 pages of
# bench/ocr_eval.py (FUNSD's training forms, the degraded pages, the receipts, the real-format
# PDFs' pages, Tesseract's and UNLV's), every greyscale page whose prepared reading was kept,
# and whose header did not send it to the checks already (a standard fax, 150 dpi: stretched,
# upscaled), either read under 0.74 mean confidence (flattened), or sloped 0.7 degrees or more
# by its words' baselines (straightened; the skew check acts from 1 degree), or had too few
# lines to tell. Skipping the checks on pages reading at 0.80 or more and sloping under 0.5
# degrees changes no page's reading there, and spares 62 of the 318 (and every page of a clean
# 200 dpi scan) the decode and the checks: ~10 ms of CPU a page, which at concurrency 2 is
# taken from the other page's Tesseract.
CLEAN_CONFIDENCE = 0.80
LEVEL_DEG = 0.5


@dataclasses.dataclass
class Prepared:
    """A page made ready for OCR, with the geometry back to the stored image."""

    image: Image.Image
    stored_size: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)  # prepared pixels per stored pixel, before the turn
    angle: float = 0.0  # degrees turned anticlockwise to straighten the page
    steps: tuple[str, ...] = ()
    ink: float = 0.0  # share of the page's pixels that are dark
    dpi: tuple[float, float] | None = None

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    def save(self, path: Path) -> Path:
        """The copy as an uncompressed TIFF (no second JPEG loss) with the resolution it has now."""
        extra = {"dpi": self.dpi} if self.dpi else {}
        self.image.save(path, "TIFF", **extra)
        return path

    def box_onto_stored(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        """A box normalised to the prepared copy, normalised to the stored image."""
        if not self.changed:
            return x0, y0, x1, y1
        width, height = self.image.size
        points = [self._point_onto_stored(x * width, y * height) for x in (x0, x1) for y in (y0, y1)]
        xs, ys = zip(*points)
        stored_w, stored_h = self.stored_size

        def clamp(v: float) -> float:
            return min(1.0, max(0.0, v))

        return (
            clamp(min(xs) / stored_w),
            clamp(min(ys) / stored_h),
            clamp(max(xs) / stored_w),
            clamp(max(ys) / stored_h),
        )

    def _point_onto_stored(self, x: float, y: float) -> tuple[float, float]:
        width, height = self.image.size
        scaled_w, scaled_h = self.stored_size[0] * self.scale[0], self.stored_size[1] * self.scale[1]
        if self.angle:
            # Image.rotate(angle, expand=True) turns about the centre, anticlockwise on screen
            # (y grows downwards); undo it about the centres of the two canvases.
            theta = math.radians(self.angle)
            dx, dy = x - width / 2, y - height / 2
            x = math.cos(theta) * dx - math.sin(theta) * dy + scaled_w / 2
            y = math.sin(theta) * dx + math.cos(theta) * dy + scaled_h / 2
        return x / self.scale[0], y / self.scale[1]


def prepare(path: Path, steps: tuple[str, ...] = STEPS) -> Prepared:
    """The page at ``path`` made ready for Tesseract with those of ``steps`` it needs.

    Raises OSError / ValueError when Pillow cannot decode the image.
    """
    with Image.open(path) as source:
        source.load()
        dpi = _resolution(source)
        image = source if source.mode in ("L", "RGB") else source.convert("RGB" if source.mode != "1" else "L")
        stored_size = image.size
        done: list[str] = []
        if image.mode == "RGB":
            if "colour" in steps and _has_coloured_ink(image):
                image = without_colour(image)
                done.append("colour")
            else:
                image = image.convert("L")
        if "flatten" in steps and _is_unevenly_lit(image):
            image = flattened(image)
            done.append("flatten")
        ink = ink_coverage(image)

    if "despeckle" in steps and _is_speckled(image):
        image = despeckled(image)
        done.append("despeckle")

    scale = (1.0, 1.0)
    if "upscale" in steps and dpi:
        scale = _upscale_factors(dpi, image.size)
        if scale != (1.0, 1.0):
            size = (round(image.width * scale[0]), round(image.height * scale[1]))
            scale = (size[0] / image.width, size[1] / image.height)
            image = image.resize(size, Image.Resampling.BICUBIC)
            dpi = (dpi[0] * scale[0], dpi[1] * scale[1])
            done.append("upscale")

    angle = 0.0
    if "deskew" in steps:
        angle = skew_angle(image)
        if angle:
            image = image.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=255)
            done.append("deskew")

    return Prepared(
        image=image, stored_size=stored_size, scale=scale, angle=angle, steps=tuple(done), ink=ink, dpi=dpi
    )


def due_before_reading(path: Path, steps: tuple[str, ...] = STEPS) -> bool:
    """Whether the page's header alone says it may need preparing: it is in colour (a stamp,
    a highlighter, a photo: lifted, flattened), or its resolution asks for stretching or
    upscaling. Such a page is checked while Tesseract reads it; any other only if its reading
    gives cause (``reads_clean``). Nothing is decoded; a header Pillow cannot read says yes."""
    try:
        with Image.open(path) as page:
            mode, size, dpi = page.mode, page.size, _resolution(page)
    except (OSError, ValueError, Image.DecompressionBombError):
        return True
    if mode != "L":
        return True
    return "upscale" in steps and dpi is not None and _upscale_factors(dpi, size) != (1.0, 1.0)


def reads_clean(text: PageText, tilt: float | None) -> bool:
    """Whether a greyscale page's plain reading says it needs no preparation: sure, level
    (``tilt``, the degrees its lines slope, None when too few lines tell) and not empty."""
    return (
        tilt is not None
        and abs(tilt) < LEVEL_DEG
        and text.confidence is not None
        and text.confidence >= CLEAN_CONFIDENCE
        and not reads_empty(text)
    )


def without_colour(image: Image.Image) -> Image.Image:
    """Grey in which coloured ink is lifted to white: the brightest channel plus the chroma
    (brightest minus darkest channel). Black and grey text have neither and stay dark (JPEG's
    colour noise on black text is a chroma of 10-30); a red stamp (value 205, chroma 175),
    a highlighter stroke and tinted paper go white."""
    red, green, blue = image.split()
    brightest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    darkest = ImageChops.darker(ImageChops.darker(red, green), blue)
    chroma = ImageChops.subtract(brightest, darkest)
    return ImageChops.add(brightest, chroma.point(lambda c: c * _CHROMA_LIFT))


def flattened(image: Image.Image) -> Image.Image:
    """The page divided by its own paper: light that falls off across a photo made even."""
    paper = _paper(image).resize(image.size, Image.Resampling.BILINEAR)
    grey, paper = image.convert("I"), paper.convert("I")
    if hasattr(ImageMath, "lambda_eval"):  # Pillow 11+
        out = ImageMath.lambda_eval(lambda a: a["min"](a["g"] * 255 / a["max"](a["p"], 1), 255), g=grey, p=paper)
    else:
        out = ImageMath.eval("min(g * 255 / max(p, 1), 255)", g=grey, p=paper)
    return out.convert("L")


def _paper(image: Image.Image) -> Image.Image:
    """The page without its ink, small: the brightest pixel near each place, smoothed."""
    factor = max(1, max(image.size) // 200)
    small = image.reduce(factor)
    return max_filter(small, 5).filter(ImageFilter.GaussianBlur(4))


def max_filter(image: Image.Image, size: int) -> Image.Image:
    """``image.filter(ImageFilter.MaxFilter(size))``, pixel for pixel, as a row pass and a column
    pass of shifted copies: a rank filter sorts every window (~3 ms a page for the paper's small
    copy, against ~0.2 ms). The rank filter extends the edge pixels outward, which for a maximum
    is the same as a window cut at the edge, and a crop past the edge is black: never a maximum."""
    if image.mode not in ("L", "RGB") or size % 2 == 0:
        return image.filter(ImageFilter.MaxFilter(size))
    width, height = image.size
    shifts = range(-(size // 2), size // 2 + 1)
    rows = _lightest(image.crop((d, 0, d + width, height)) for d in shifts)
    return _lightest(rows.crop((0, d, width, d + height)) for d in shifts)


def _lightest(images) -> Image.Image:
    images = iter(images)
    out = next(images)
    for image in images:
        out = ImageChops.lighter(out, image)
    return out


def _is_unevenly_lit(image: Image.Image) -> bool:
    paper = _paper(image)
    histogram = paper.histogram()
    total = sum(histogram)
    # The paper's 5th and 95th percentiles: an even sheet spans a few levels, a photo lit from
    # one side dozens.
    low, high = (_percentile(histogram, share * total) for share in (0.05, 0.95))
    return high - low >= _UNEVEN_LIGHT


def _percentile(histogram: list[int], count: float) -> int:
    """The first level at which the running count reaches ``count``."""
    running = 0
    for level, n in enumerate(histogram):
        running += n
        if running >= count:
            return level
    raise ValueError("count beyond the histogram")


def characters(text: str) -> int:
    """Letters and digits: what a page's text is measured in (specks, rules and spaces are not)."""
    return sum(1 for c in text if c.isalnum())


def reads_empty(text: PageText) -> bool:
    return characters(text.text) < EMPTY_MAX_CHARS


def inked_but_empty(text: PageText, ink: float | None) -> bool:
    """The blank-page rule: the image has ink and the reading (almost) no text. Such a page is
    read again (Tesseract) and flagged ``ocr_empty``, never a silent empty page."""
    return ink is not None and ink >= INKED_PAGE and reads_empty(text)


def review_flag(text: PageText, ink: float | None, low_confidence: float = LOW_CONFIDENCE) -> str | None:
    """Why a person should look at this reading, or None."""
    if inked_but_empty(text, ink):
        return OCR_EMPTY
    if text.words and text.confidence is not None and text.confidence < low_confidence:
        return OCR_LOW_CONFIDENCE
    return None


def flag_for_review(text: PageText, image: Path) -> PageText:
    """The reading of an engine that sets no flag (Textract) with its flag set; the ink of the
    page is measured only when the reading is empty. Readings that carry a flag or an ink
    figure already (Tesseract's) come back as they are."""
    if text.flag or text.ink_coverage is not None or text.engine == "native":
        return text
    ink = None
    if reads_empty(text):
        try:
            with Image.open(image) as page:
                ink = ink_coverage(page)
        except (OSError, ValueError, Image.DecompressionBombError):
            ink = None
    flag = review_flag(text, ink)
    if flag is None and ink is None:
        return text
    return text.model_copy(update={"flag": flag, "ink_coverage": round(ink, 5) if ink is not None else None})


def ink_coverage(image: Image.Image) -> float:
    """The share of the page's pixels darker than mid-grey."""
    grey = image if image.mode == "L" else image.convert("L")
    histogram = grey.histogram()
    total = sum(histogram)
    return sum(histogram[:_INK_LEVEL]) / total if total else 0.0


def skew_angle(image: Image.Image) -> float:
    """Degrees to turn the page anticlockwise (Pillow's sense) to level its lines of text;
    0.0 when it is level, or has no lines to level."""
    grey = image if image.mode == "L" else image.convert("L")

    def ink_up(edge: int) -> Image.Image:
        small = ImageOps.invert(grey.reduce(max(1, math.ceil(max(grey.size) / edge))))
        return ImageOps.autocontrast(small, cutoff=(50, 0.5))  # paper to 0, ink to 255

    def profile(small: Image.Image, seen: dict[float, float]):
        def sharpness(angle: float) -> float:
            angle = round(angle, 2)
            if angle not in seen:
                turned = small.rotate(angle, Image.Resampling.NEAREST, expand=True, fillcolor=0)
                rows = turned.resize((1, turned.height), Image.Resampling.BOX).tobytes()
                seen[angle] = float(sum((a - b) ** 2 for a, b in zip(rows, rows[1:])))
            return seen[angle]

        return sharpness

    # The whole-degree search on a copy half the size (a quarter of the pixels): it only has
    # to tell a page a degree or more off level; the fine search, where it is, on the full copy.
    coarse_copy = ink_up(_SKEW_WORK_EDGE // 2)
    if coarse_copy.getextrema()[1] == 0:
        return 0.0
    steps = round(MAX_SKEW_DEG / _COARSE_STEP)
    coarse = max((_COARSE_STEP * i for i in range(-steps, steps + 1)), key=profile(coarse_copy, {}))
    if coarse == 0.0 and _MIN_SKEW_DEG >= _COARSE_STEP:
        return 0.0  # the fine search would find under a degree: left alone
    sharpness = profile(ink_up(_SKEW_WORK_EDGE), {})
    level = sharpness(0.0)
    fine_steps = round(_COARSE_STEP / _FINE_STEP)
    best = max((coarse + _FINE_STEP * i for i in range(-fine_steps, fine_steps + 1)), key=sharpness)
    if abs(best) < _MIN_SKEW_DEG or sharpness(best) < _MIN_SKEW_GAIN * level:
        return 0.0
    return round(best, 2)


def _resolution(image: Image.Image) -> tuple[float, float] | None:
    dpi = image.info.get("dpi")
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return None
    # JFIF's default density (1x1, 72 or 96 "dpi") says nothing about a photo's resolution.
    if not (50 <= x <= 2400 and 50 <= y <= 2400) or (x, y) in ((72, 72), (96, 96)):
        return None
    return x, y


def _upscale_factors(dpi: tuple[float, float], size: tuple[int, int]) -> tuple[float, float]:
    x, y = dpi
    target = max(x, y)
    if max(x, y) / min(x, y) < _ANISOTROPY:
        target = min(x, y)
    if target < _MIN_DPI:
        target = _TARGET_DPI
    fx, fy = target / x, target / y
    if fx < 1.05 and fy < 1.05:
        return 1.0, 1.0
    fx, fy = max(fx, 1.0), max(fy, 1.0)
    if size[0] * fx * size[1] * fy > _MAX_UPSCALED_PIXELS:
        return 1.0, 1.0
    return fx, fy


def _has_coloured_ink(image: Image.Image) -> bool:
    small = image.reduce(max(1, max(image.size) // 600)).convert("HSV")
    saturation = small.getchannel("S").point(lambda s: 255 if s >= _COLOUR_SATURATION else 0)
    bright = small.getchannel("V").point(lambda v: 255 if v >= _COLOUR_MIN_VALUE else 0)
    coloured = Image.composite(saturation, Image.new("L", small.size, 0), bright)
    share = coloured.histogram()[255] / (small.width * small.height)
    return share >= _COLOUR_SHARE


def _lone_specks(grey: Image.Image) -> Image.Image:
    """White where a dark pixel has little ink around it (under 4 of the 25 pixels of its 5x5
    neighbourhood, itself included) and none beside it on its row (under 6 of 11): dust and
    fax noise, not strokes of text. The row test keeps full stops, commas and decimal points,
    which sit beside the characters they follow ("1.5 mg" must not read "15 mg")."""
    dark = grey.point(_DARK_LUT)
    around = dark.filter(ImageFilter.BoxBlur(2)).point(_LONE_LUT)
    beside = dark.filter(ImageFilter.BoxBlur((5, 0))).point(_LONE_ROW_LUT)
    return ImageChops.multiply(ImageChops.multiply(dark, around), beside)


_DARK_LUT = [255 if v < _INK_LEVEL else 0 for v in range(256)]
_LONE_LUT = [255 if v < _LONE_DENSITY else 0 for v in range(256)]
_LONE_ROW_LUT = [255 if v < _LONE_ROW_DENSITY else 0 for v in range(256)]


def _speckle_band(image: Image.Image) -> Image.Image:
    # A band across the middle of the page: speckle covers it all, and an eighth of the
    # pixels is enough.
    w, h = image.size
    return image.crop((w // 4, 3 * h // 8, 3 * w // 4, 5 * h // 8))


def speckle_share(image: Image.Image) -> float:
    """The share of the middle of the page that is lone dark specks."""
    crop = _speckle_band(image)
    return _lone_specks(crop).histogram()[255] / max(1, crop.width * crop.height)


def despeckled(image: Image.Image) -> Image.Image:
    """The page with its lone specks turned to paper. (A 3x3 median, the textbook step,
    also thins and breaks 150 dpi text: 5-6% CER on the development pages, against 3-4%.)"""
    return ImageChops.lighter(image, _lone_specks(image))


def _is_speckled(image: Image.Image) -> bool:
    """``speckle_share(image) >= _SPECKLE_SHARE``, decided as cheaply as the page allows: lone
    specks are dark pixels with none beside them on their row, so a band with too few of those
    is not speckled whatever the 5x5 test says. That test (a 5x5 box blur: 4 of the check's
    8 ms) then runs only on pages with that much dark, row-lonely ink: a page of text with a
    blank middle or wide strokes never pays for it, and the answer is the same."""
    crop = _speckle_band(image)
    need = _SPECKLE_SHARE * max(1, crop.width * crop.height)
    dark = crop.point(_DARK_LUT)
    if dark.histogram()[255] < need:
        return False
    beside = dark.filter(ImageFilter.BoxBlur((5, 0))).point(_LONE_ROW_LUT)
    dark_alone_on_row = ImageChops.multiply(dark, beside)
    if dark_alone_on_row.histogram()[255] < need:
        return False
    around = dark.filter(ImageFilter.BoxBlur(2)).point(_LONE_LUT)
    return ImageChops.multiply(dark_alone_on_row, around).histogram()[255] >= need
