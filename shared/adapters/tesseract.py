"""Tesseract, the local OCR engine: the Debian ``tesseract`` binary run once per page."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from shared.errors import DependencyUnavailableError, EngineCrashedError, OcrFailedError, StageTimeoutError
from shared.models import Box, Line, PageText, Word
from shared.ports import OcrEngine

# Fully automatic page segmentation without orientation detection: it finds columns,
# which letters, forms and two-column reports need (--psm 4 and 6 read straight across a
# two-column page), and pages arrive upright from rendering.
_PAGE_SEGMENTATION = "3"
_TSV_COLUMNS = 12


class TesseractOcr(OcrEngine):
    """Reads a page image with the ``tesseract`` command line program.

    Each call runs one child process with a minimal environment (OMP_THREAD_LIMIT=1:
    Tesseract's OpenMP threads cost more CPU than they save, and pages are read in
    parallel processes anyway) and parses its TSV output into words and lines with boxes
    normalised to the image. The child's stderr is discarded: it can quote the page.
    """

    name = "tesseract"

    def __init__(self, cmd: str = "tesseract", lang: str = "eng", timeout_s: float = 120.0) -> None:
        self._cmd = cmd
        self._lang = lang
        self._timeout_s = timeout_s

    def read(self, image: Path, page_number: int) -> PageText:
        binary = shutil.which(self._cmd)
        if binary is None:
            raise DependencyUnavailableError(f"the OCR program {self._cmd!r} is not installed")
        argv = [binary, str(image), "stdout", "-l", self._lang, "--psm", _PAGE_SEGMENTATION, "tsv"]
        env = {"PATH": os.path.dirname(binary) + os.pathsep + os.defpath, "OMP_THREAD_LIMIT": "1"}
        started = time.perf_counter()
        try:
            done = subprocess.run(
                argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=self._timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise StageTimeoutError(f"OCR of page {page_number} ran past {self._timeout_s:g} s") from exc
        except OSError as exc:
            raise DependencyUnavailableError(f"the OCR program could not be started ({type(exc).__name__})") from exc
        duration_ms = (time.perf_counter() - started) * 1000
        if done.returncode < 0:
            # Killed (the OOM killer, a timeout upstream): transient, unlike a page it refuses.
            raise EngineCrashedError(f"OCR of page {page_number} failed: tesseract was killed by signal {-done.returncode}")
        if done.returncode != 0:
            raise OcrFailedError(f"OCR of page {page_number} failed: tesseract exited with code {done.returncode}")
        return parse_tsv(done.stdout.decode("utf-8", errors="replace"), page_number, duration_ms)


_Rect = tuple[int, int, int, int]  # left, top, right, bottom in pixels
_OcrWord = tuple[str, float, _Rect]  # text, confidence 0..1, rect


def parse_tsv(tsv: str, page_number: int, duration_ms: float = 0.0) -> PageText:
    """Tesseract's TSV output as page text.

    Rows are level 1 page, 2 block, 3 paragraph, 4 line, 5 word. Words with a confidence
    (0..100) and some text are kept; lines are grouped by (block, paragraph, line); the
    page text joins a paragraph's lines with a newline and paragraphs with a blank line.
    """
    width = height = 0
    paragraphs: dict[tuple[int, int], dict[int, list[_OcrWord]]] = {}
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
