"""Tesseract, the local OCR engine: the Debian ``tesseract`` binary run once per page, again
only for a page that reads as if it were sideways or upside down."""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from PIL import Image

from shared.errors import DependencyUnavailableError, EngineCrashedError, OcrFailedError, StageTimeoutError
from shared.models import Box, Line, PageText, Word
from shared.pages.prepare import (
    LOW_CONFIDENCE,
    STEPS,
    Prepared,
    characters,
    due_before_reading,
    inked_but_empty,
    prepare,
    reads_clean,
    review_flag,
)
from shared.ports import OcrEngine

# Fully automatic page segmentation without orientation detection: it finds columns,
# which letters, forms and two-column reports need (--psm 4 and 6 read straight across a
# two-column page). --psm 1 adds orientation detection to every page, and costs 0.2-0.3 s
# a page even when the page is upright, as nearly all are.
_PAGE_SEGMENTATION = "3"
# Sparse text, in no particular order: for a page with ink that --psm 3 reads empty. Tesseract
# 5.3's layout analysis can find no text block on a noisy low-resolution form ("Empty page!!"
# with TSV output) whose text --psm 11 reads (FUNSD 91356315: 0 words, and 113).
_SPARSE_TEXT = "11"
_TSV_COLUMNS = 12

# A page read upright has a mean word confidence of 0.55-0.97 (clean letters at the top,
# creased receipts at the bottom); the same pages turned 90, 180 or 270 degrees read as
# garbage at 0.30-0.40, or, turned one way, read correctly but with every word standing
# taller than it is wide. Only such pages pay for orientation detection.
_UPRIGHT_MIN_CONFIDENCE = 0.5
_SIDEWAYS_SHARE = 0.5
_SIDEWAYS_MIN_WORDS = 3
# Tesseract's orientation confidence is about 10 on a short page and 25-35 on a full one;
# below 2 it is a guess. A guess that passed is still checked: the turned page must read
# at least about as well as the page as it came.
_OSD_MIN_CONFIDENCE = 2.0
_TURNED_MARGIN = 0.05
# How far a page's lines slope, from its words' baselines: words with no letter that descends
# sit on the baseline, and a line's are fitted by least squares; the page's slope is the
# median over lines of three such words or more spanning 15% of the page's width or more, and
# is told only by three lines or more. On the degraded pages it reads each known skew (2.2-3.6
# degrees, both ways) within 0.3 degrees.
_DESCENDS = re.compile(r"[gjpqyQ,;()\[\]{}|/@$_]")
_TILT_MIN_WORDS, _TILT_MIN_SPAN, _TILT_MIN_LINES = 3, 0.15, 3
_OSD_ROTATE = re.compile(rb"^Rotate:\s*(\d+)\s*$", re.MULTILINE)
_OSD_CONFIDENCE = re.compile(rb"^Orientation confidence:\s*([0-9.]+)\s*$", re.MULTILINE)
# Tesseract's "Rotate: N" turns the image N degrees clockwise; Pillow's turns are anticlockwise.
_TURN = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


class TesseractOcr(OcrEngine):
    """Reads a page image with the ``tesseract`` command line program.

    Each call runs one child process with a minimal environment (OMP_THREAD_LIMIT=1:
    Tesseract's OpenMP threads cost more CPU than they save, and pages are read in
    parallel processes anyway) and parses its TSV output into words and lines with boxes
    normalised to the image. The child's stderr is discarded: it can quote the page.

    A page whose first reading looks sideways or upside down (low confidence, or words
    taller than wide) goes through Tesseract's orientation detection (``--psm 0``, which
    needs ``osd.traineddata``: Debian's ``tesseract-ocr-osd``). If it names a turn with
    enough confidence, the page is turned upright and read again, and the upright reading
    is kept unless it is clearly worse; its boxes are then mapped back onto the image as
    stored, where a viewer of the page JPEG draws them (the text reads upright).
    Without the OSD data the first reading stands. ``timeout_s`` bounds the whole page.

    Tesseract reads the page as stored. A page in colour, or whose resolution asks for
    stretching or upscaling, is checked while Tesseract reads it; a greyscale page only when
    its reading gives cause (``reads_clean``: unsure, sloping, empty), so that a clean scan
    costs what Tesseract costs. Where ``shared.pages.prepare`` finds that the page
    needs preparing (``steps``: colour ink lifted, light flattened, specks removed, fax
    stretched square, skew of 1 degree or more straightened), it also reads the prepared copy,
    and keeps that reading only if it is clearly better by the engine's own measure (the sum
    of its word confidences, ``PREPARED_MARGIN``; for straightening, lifting colour and
    stretching to square, whose gains that measure does not see, unless it is clearly worse),
    its boxes mapped back onto
    the image as stored: preparation never makes a page read worse than bare Tesseract reads it, and a
    page that needs none is read once. A page with ink whose reading is (almost) empty is
    read again (the other reading, turned as OSD says, as sparse text) and keeps the fullest
    reading; the result carries the page's ink coverage and ``flag`` (``ocr_empty``, or
    ``ocr_low_confidence`` under ``low_confidence``), which the file's manifest lists for
    review, and ``preparation``, the steps of the reading kept.
    """

    name = "tesseract"

    def __init__(
        self,
        cmd: str = "tesseract",
        lang: str = "eng",
        timeout_s: float = 120.0,
        steps: tuple[str, ...] = STEPS,
        low_confidence: float = LOW_CONFIDENCE,
    ) -> None:
        self._cmd = cmd
        self._lang = lang
        self._timeout_s = timeout_s
        self._steps = tuple(steps)
        self._low_confidence = low_confidence

    def read(self, image: Path, page_number: int) -> PageText:
        binary = shutil.which(self._cmd)
        if binary is None:
            raise DependencyUnavailableError(f"the OCR program {self._cmd!r} is not installed")
        started = time.perf_counter()
        deadline = time.monotonic() + self._timeout_s
        with tempfile.TemporaryDirectory(prefix="docpipe-ocr-prep-") as tmp:
            # A page whose header says it may need preparing is checked (and prepared, where
            # the checks say so) while Tesseract reads it as stored, in its own process; any
            # other is checked after, only if its reading gives cause.
            reading = self._spawn(binary, self._reading_args(image, _PAGE_SEGMENTATION))
            try:
                early = due_before_reading(image, self._steps)
                prepared = _prepared(image, self._steps) if early else None
            except BaseException:
                reading.kill()
                reading.wait()
                raise
            plain, sideways, tilt = self._parsed(self._wait(reading, page_number, deadline), page_number)
            if not early and (sideways or not reads_clean(plain, tilt)):
                prepared = _prepared(image, self._steps)
            ink = prepared.ink if prepared else None
            text, used = plain, ()
            other, other_used = None, ()  # the reading not kept
            if prepared is not None and prepared.changed:
                # Preparation is a guess from cheap measurements; the engine's own measures judge
                # it. Kept only where it reads clearly better than the page as stored, so that a
                # page is never read worse than bare Tesseract reads it.
                copy = prepared.save(Path(tmp) / "prepared.tif")
                ready, ready_sideways, _ = self._recognise(binary, copy, page_number, deadline)
                ready = _boxes_onto(ready, prepared.box_onto_stored)
                if clearly_better(ready, plain, prepared.steps):
                    text, sideways, used, other = ready, ready_sideways, prepared.steps, plain
                else:
                    other, other_used = ready, prepared.steps
            if text.words and (sideways or (text.confidence or 0.0) < _UPRIGHT_MIN_CONFIDENCE):
                turned = self._read_upright(binary, image, page_number, deadline)
                if turned is not None and (turned.confidence or 0.0) + _TURNED_MARGIN >= (text.confidence or 0.0):
                    text, used = turned, ()
            if inked_but_empty(text, ink):
                # Ink but (almost) no text: never a silent empty page. Try what the first
                # reading skipped (the other reading, the page turned, the page read as sparse
                # text, which finds words where the page's layout analysis found no block),
                # keep the fullest.
                for retry_steps, retry in (
                    (other_used, lambda: other),
                    ((), lambda: self._read_upright(binary, image, page_number, deadline)),
                    ((), lambda: self._recognise(binary, image, page_number, deadline, _SPARSE_TEXT)[0]),
                ):
                    again = retry()
                    if again is not None and characters(again.text) > characters(text.text):
                        text, used = again, retry_steps
        flag = review_flag(text, ink, self._low_confidence)
        return text.model_copy(
            update={
                "duration_ms": (time.perf_counter() - started) * 1000,
                "ink_coverage": round(ink, 5) if ink is not None else None,
                "flag": flag,
                "preparation": list(used),
            }
        )

    def _read_upright(self, binary: str, image: Path, page_number: int, deadline: float) -> PageText | None:
        """The page turned as orientation detection says, read again; None if it names no turn."""
        turn = self._orientation(binary, image, page_number, deadline)
        if not turn:
            return None
        with tempfile.TemporaryDirectory(prefix="docpipe-osd-") as tmp:
            upright = _turned_copy(image, turn, Path(tmp))
            if upright is None:
                return None
            return _boxes_onto_stored(self._recognise(binary, upright, page_number, deadline)[0], turn)

    def _recognise(
        self, binary: str, image: Path, page_number: int, deadline: float, segmentation: str = _PAGE_SEGMENTATION
    ) -> tuple[PageText, bool, float | None]:
        """The page's text, whether most of its words stand taller than they are wide, and the
        degrees its lines slope (None: too few lines to tell)."""
        return self._parsed(self._run(binary, self._reading_args(image, segmentation), page_number, deadline), page_number)

    def _reading_args(self, image: Path, segmentation: str) -> list[str]:
        return [str(image), "stdout", "-l", self._lang, "--psm", segmentation, "tsv"]

    def _parsed(self, done: subprocess.CompletedProcess, page_number: int) -> tuple[PageText, bool, float | None]:
        if done.returncode != 0:
            raise OcrFailedError(f"OCR of page {page_number} failed: tesseract exited with code {done.returncode}")
        width, height, paragraphs = _parse(done.stdout.decode("utf-8", errors="replace"), page_number)
        # Words of three letters or more are wider than tall on an upright page, whatever the font.
        words = (word for lines in paragraphs.values() for line in lines.values() for word in line)
        rects = [rect for text, _, rect in words if len(text) >= 3]
        tall = sum(1 for left, top, right, bottom in rects if bottom - top > right - left)
        sideways = len(rects) >= _SIDEWAYS_MIN_WORDS and tall >= _SIDEWAYS_SHARE * len(rects)
        return _page_text(width, height, paragraphs, page_number, 0.0), sideways, _tilt(paragraphs, width)

    def _orientation(self, binary: str, image: Path, page_number: int, deadline: float) -> int:
        """Degrees (90, 180, 270) to turn the page clockwise to stand it upright; 0 to leave it."""
        done = self._run(binary, [str(image), "stdout", "-l", "osd", "--psm", "0"], page_number, deadline)
        if done.returncode != 0:
            return 0  # too few characters to tell, or no OSD data installed: keep the first reading
        rotate, confidence = _OSD_ROTATE.search(done.stdout), _OSD_CONFIDENCE.search(done.stdout)
        if rotate is None or confidence is None or float(confidence.group(1)) < _OSD_MIN_CONFIDENCE:
            return 0
        degrees = int(rotate.group(1))
        return degrees if degrees in _TURN else 0

    def _run(self, binary: str, args: list[str], page_number: int, deadline: float) -> subprocess.CompletedProcess:
        return self._wait(self._spawn(binary, args), page_number, deadline)

    def _spawn(self, binary: str, args: list[str]) -> subprocess.Popen:
        env = {"PATH": os.path.dirname(binary) + os.pathsep + os.defpath, "OMP_THREAD_LIMIT": "1"}
        try:
            return subprocess.Popen(
                [binary, *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except OSError as exc:
            raise DependencyUnavailableError(f"the OCR program could not be started ({type(exc).__name__})") from exc

    def _wait(self, process: subprocess.Popen, page_number: int, deadline: float) -> subprocess.CompletedProcess:
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(process.args, self._timeout_s)
            out, _ = process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired as exc:
            process.kill()
            process.communicate()
            raise StageTimeoutError(f"OCR of page {page_number} ran past {self._timeout_s:g} s") from exc
        if process.returncode < 0:
            # Killed (the OOM killer, a timeout upstream): transient, unlike a page it refuses.
            raise EngineCrashedError(
                f"OCR of page {page_number} failed: tesseract was killed by signal {-process.returncode}"
            )
        return subprocess.CompletedProcess(process.args, process.returncode, out, b"")


# The engine's measure of a reading: the sum of its word confidences (about the words it reads
# right). A prepared reading is kept when it beats the plain one's by this share. On the FUNSD
# training forms, with the plain reading kept otherwise: 0 pages more than 2 points of word
# recall below bare Tesseract (23 when the prepared reading was always kept), mean recall above
# bare (margins 0-10% differ by 0.1-0.2 points; 5% drops pages where the two read alike).
PREPARED_MARGIN = 0.05
# Steps whose gain the engine's confidence does not see: a page straightened reads its lines in
# their order (a two-column scan 2.8 degrees off: 3.7% CER against 37.7%, at the same summed
# confidence), a stamp lifted off loses words that were read as text, and a standard fax
# stretched to square reads its letters at their true shape (0.0-0.1% CER against 0.7-2.8%
# on the generated fax pages). A reading prepared with these alone is kept unless clearly
# worse (FUNSD forms a degree or more off, 16: none more than 2 points below bare, +4.0
# points of recall on average; FUNSD's images carry no resolution, so none is upscaled).
_TRUSTED_STEPS = frozenset({"deskew", "colour", "upscale"})


def clearly_better(ready: PageText, plain: PageText, steps: tuple[str, ...] = ()) -> bool:
    """Whether the prepared page's reading (prepared with ``steps``) is to be kept over the
    plain one, by the engine's own measure."""

    def mass(text: PageText) -> float:
        return sum(word.confidence or 0.0 for word in text.words)

    if steps and set(steps) <= _TRUSTED_STEPS:
        return mass(ready) >= (1 - PREPARED_MARGIN) * mass(plain)
    return mass(ready) > (1 + PREPARED_MARGIN) * mass(plain)


def _tilt(paragraphs: _Paragraphs, width: int) -> float | None:
    """Degrees the page's lines slope (its words' baselines), or None when too few lines tell."""
    slopes = []
    for lines in paragraphs.values():
        for line in lines.values():
            points = [
                ((left + right) / 2, bottom)
                for text, confidence, (left, _, right, bottom) in line
                if len(text) >= 2 and confidence >= 0.5 and not _DESCENDS.search(text)
            ]
            if len(points) < _TILT_MIN_WORDS:
                continue
            xs = [x for x, _ in points]
            if max(xs) - min(xs) < _TILT_MIN_SPAN * width:
                continue
            mean_x, mean_y = statistics.fmean(xs), statistics.fmean(y for _, y in points)
            slopes.append(
                sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
            )
    if len(slopes) < _TILT_MIN_LINES:
        return None
    return math.degrees(math.atan(statistics.median(slopes)))


def _turned_copy(image: Path, degrees: int, directory: Path) -> Path | None:
    """The page turned ``degrees`` clockwise, as an uncompressed TIFF (no second JPEG loss,
    nothing to compress) that keeps the page's resolution for Tesseract; None if Pillow
    cannot decode what Tesseract could (the first reading then stands)."""
    out = directory / "upright.tif"
    try:
        with Image.open(image) as page:
            dpi = page.info.get("dpi")
            turned = page.transpose(_TURN[degrees])
        extra = {}
        if dpi and len(dpi) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in dpi):
            extra["dpi"] = (dpi[1], dpi[0]) if degrees in (90, 270) else tuple(dpi)
        turned.save(out, "TIFF", **extra)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return out


# A point (u, v) of the page turned upright, normalised, on the image as stored, which is the
# upright page turned back (anticlockwise) by the degrees it was turned clockwise.
_UNTURN = {
    90: lambda u, v: (v, 1 - u),
    180: lambda u, v: (1 - u, 1 - v),
    270: lambda u, v: (1 - v, u),
}


def _boxes_onto_stored(text: PageText, turn: int) -> PageText:
    """The upright reading with its word and line boxes on the image as stored."""

    def back(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        xs, ys = zip(*(_UNTURN[turn](u, v) for u in (x0, x1) for v in (y0, y1)))
        return min(xs), min(ys), max(xs), max(ys)

    return _boxes_onto(text, back)


def _boxes_onto(text: PageText, back) -> PageText:
    """The reading with every word and line box passed through ``back`` (normalised x0, y0, x1, y1)."""

    def moved(box: Box) -> Box:
        x0, y0, x1, y1 = back(box.x0, box.y0, box.x1, box.y1)
        return Box(x0=round(x0, 5), y0=round(y0, 5), x1=round(x1, 5), y1=round(y1, 5))

    return text.model_copy(
        update={
            "words": [word.model_copy(update={"box": moved(word.box)}) for word in text.words],
            "lines": [line.model_copy(update={"box": moved(line.box)}) for line in text.lines],
        }
    )


def _prepared(image: Path, steps: tuple[str, ...]) -> Prepared | None:
    """The page made ready for OCR; None if Pillow cannot decode what Tesseract may (the page
    is then read as stored, with no ink figure)."""
    try:
        return prepare(image, steps)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


_Rect = tuple[int, int, int, int]  # left, top, right, bottom in pixels
_OcrWord = tuple[str, float, _Rect]  # text, confidence 0..1, rect
_Paragraphs = dict[tuple[int, int], dict[int, list[_OcrWord]]]


def parse_tsv(tsv: str, page_number: int, duration_ms: float = 0.0) -> PageText:
    """Tesseract's TSV output as page text.

    Rows are level 1 page, 2 block, 3 paragraph, 4 line, 5 word. Words with a confidence
    (0..100) and some text are kept; lines are grouped by (block, paragraph, line); the
    page text joins a paragraph's lines with a newline and paragraphs with a blank line.
    """
    return _page_text(*_parse(tsv, page_number), page_number, duration_ms)


def _parse(tsv: str, page_number: int) -> tuple[int, int, _Paragraphs]:
    width = height = 0
    paragraphs: _Paragraphs = {}
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t", _TSV_COLUMNS - 1)
        if len(cells) < _TSV_COLUMNS - 1:
            continue
        try:
            level, _page, block, par, line, _word, left, top, w, h = (int(v) for v in cells[:10])
            conf = float(cells[10])
        except ValueError:
            continue
        text = cells[11].strip() if len(cells) == _TSV_COLUMNS else ""
        if level == 1:
            width, height = w, h
        elif level == 5 and conf >= 0 and text:
            lines = paragraphs.setdefault((block, par), {})
            lines.setdefault(line, []).append((text, min(conf, 100.0) / 100, (left, top, left + w, top + h)))
    if width <= 0 or height <= 0:
        raise OcrFailedError(f"OCR of page {page_number} returned no page size")
    return width, height, paragraphs


def _page_text(width: int, height: int, paragraphs: _Paragraphs, page_number: int, duration_ms: float) -> PageText:
    def box(rect: _Rect) -> Box:
        return Box.from_pixels(*rect, width, height)

    words: list[Word] = []
    lines_out: list[Line] = []
    paragraph_texts: list[str] = []
    for lines in paragraphs.values():
        texts = []
        for line in lines.values():
            line_text = " ".join(text for text, _, _ in line)
            lefts, tops, rights, bottoms = zip(*(rect for _, _, rect in line))
            union = (min(lefts), min(tops), max(rights), max(bottoms))
            confidence = statistics.fmean(conf for _, conf, _ in line)
            lines_out.append(Line(text=line_text, box=box(union), confidence=confidence))
            words.extend(Word(text=text, box=box(rect), confidence=conf) for text, conf, rect in line)
            texts.append(line_text)
        paragraph_texts.append("\n".join(texts))
    return PageText(
        page_number=page_number,
        text="\n\n".join(paragraph_texts),
        lines=lines_out,
        words=words,
        confidence=statistics.fmean(w.confidence for w in words) if words else None,
        engine=TesseractOcr.name,
        duration_ms=duration_ms,
    )
