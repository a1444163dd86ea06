"""Open a document and render its pages one at a time.

Each page becomes a JPEG no larger than ``render_max_edge`` on its longest side and, for a
PDF page whose text layer is usable, that text with word and line boxes normalised to the
page as displayed (after /Rotate). Only one page's pixels are alive at a time: ``pages()``
is a generator and the caller stores each page before asking for the next.

Every failure of a hostile or broken file ends in one of docpipe's permanent errors
(unreadable, encrypted, no pages, too many pages, page too large); vendor exceptions never
escape. Nothing here logs, and no error message quotes the document's content.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import math
import os
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import pymupdf
from PIL import Image

from shared.errors import (
    EncryptedDocumentError,
    NoPagesError,
    PageRenderTooSlowError,
    PageTooLargeError,
    PipelineError,
    TooManyPagesError,
    UnreadableDocumentError,
)
from shared.models import Box, Line, PageText, Word
from shared.pages.sniff import DocumentKind
from shared.settings import Settings

# MuPDF prints its complaints about broken files to stdout/stderr, outside the JSON logs;
# what matters reaches the caller as a typed error instead.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)

# PyMuPDF's default word flags less two: without TEXT_PRESERVE_LIGATURES a ligature
# glyph reads as its letters ("fi", not U+FB01), so "fibrillation" matches downstream;
# without TEXT_CID_FOR_UNKNOWN_UNICODE a glyph with no Unicode mapping reads as U+FFFD
# and counts against the text layer instead of passing for a plausible character.
_WORD_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP

# A text layer with more than this share of unmapped, private-use or control characters
# comes from a broken font mapping: OCR the page instead.
_MAX_GARBAGE_SHARE = 0.1
_GARBAGE_CATEGORIES = frozenset({"Cc", "Co", "Cs", "Cn"})

# A scanned page with a little real text on top (a fax header, a stamped page number, a
# Bates number) must still be OCRed: its text is not the page's content.
_SCAN_IMAGE_COVER = 0.5
_STAMP_TEXT_COVER = 0.02

_PIL_FORMATS = {
    DocumentKind.TIFF: "TIFF",
    DocumentKind.JPEG: "JPEG",
    DocumentKind.PNG: "PNG",
    DocumentKind.HEIC: "HEIF",
}

_EXIF_ORIENTATION = 0x0112
_TIFF_SUBFILE_TYPE = 254  # bit 0: a reduced-resolution copy of another page
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclasses.dataclass(frozen=True)
class Limits:
    max_pages: int
    max_page_pixels: int
    render_dpi: int
    render_max_edge: int
    jpeg_quality: int
    native_text_min_chars: int
    max_render_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            max_pages=s.max_pages,
            max_page_pixels=s.max_page_pixels,
            render_dpi=s.render_dpi,
            render_max_edge=s.render_max_edge,
            jpeg_quality=s.jpeg_quality,
            native_text_min_chars=s.native_text_min_chars,
            max_render_s=s.max_render_s_per_page,
        )


class RenderedPage:
    """One rendered page: its size, its native text, and its JPEG.

    A PDF page arrives with its pixmap and is encoded on first access to ``jpeg``, in
    whatever thread asks: the preprocess stage encodes and stores pages in writer threads
    while MuPDF renders the next one. The encoder only reads the pixmap's memory (through a
    view made on the rendering thread); the pixmap itself belongs to MuPDF's context, so the
    thread that renders must call ``release()`` once the JPEG is taken. Dropping it
    elsewhere would race the renderer.
    """

    __slots__ = ("page_number", "width", "height", "native_text", "_jpeg", "_pixmap", "_encode")

    def __init__(
        self,
        page_number: int,
        width: int,
        height: int,
        native_text: PageText | None,
        jpeg: bytes | None = None,
        pixmap: pymupdf.Pixmap | None = None,
        encode: Callable[[], bytes] | None = None,
    ) -> None:
        if jpeg is None and (pixmap is None or encode is None):
            raise ValueError("a page needs its JPEG or its pixmap and an encoder")
        self.page_number = page_number  # 1-based
        self.width = width  # of the JPEG, px
        self.height = height
        self.native_text = native_text  # None: no usable text layer, the page needs OCR
        self._jpeg, self._pixmap, self._encode = jpeg, pixmap, encode

    @property
    def jpeg(self) -> bytes:
        if self._jpeg is None:
            if self._pixmap is None:
                raise RuntimeError("the page's pixels were released before it was encoded")
            self._jpeg = self._encode()
        return self._jpeg

    def release(self) -> None:
        """Free the pixels (call from the thread that rendered the page)."""
        self._pixmap = self._encode = None


class Document(abc.ABC):
    """An open document: its page count, and its pages rendered one at a time.

    ``pages()`` yields each page as it is rendered and keeps no reference to it; closing
    the document releases the file and every native resource.
    """

    kind: DocumentKind
    page_count: int

    @abc.abstractmethod
    def pages(self) -> Iterator[RenderedPage]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


@contextlib.contextmanager
def open_document(path: Path, kind: DocumentKind, limits: Limits) -> Iterator[Document]:
    """Open ``path`` as a ``kind`` document; raises a ``PermanentError`` if it cannot be read."""
    document: Document
    if kind is DocumentKind.PDF:
        document = _PdfDocument(path, limits)
    else:
        document = _ImageDocument(path, kind, limits)
    try:
        yield document
    finally:
        document.close()


_STORE_CAP_BYTES = 32 * 1024 * 1024


def _timed(limits: Limits, number: int, render: Callable[..., RenderedPage], *args) -> RenderedPage:
    """Render one page; a page that took longer than MAX_RENDER_S_PER_PAGE fails the file.

    A page cannot be interrupted inside MuPDF or Pillow: one that never finishes is the
    runtime's to kill (STAGE_TIMEOUT_S). This catches the pathological page that does finish,
    slowly, before the next one makes the file cost minutes of compute per page."""
    started = time.perf_counter()
    page = render(*args)
    elapsed = time.perf_counter() - started
    if elapsed > limits.max_render_s:
        raise PageRenderTooSlowError(
            f"page {number} took {elapsed:.1f} s to render; the limit is {limits.max_render_s:g} s"
        )
    return page


def release_native_caches() -> None:
    """Give back what MuPDF keeps between documents, so a warm process stays flat."""
    pymupdf.TOOLS.store_shrink(100)
    # PyMuPDF also keeps every MuPDF warning in a Python list for the life of the process.
    pymupdf.TOOLS.reset_mupdf_warnings()
    # glibc keeps freed page-sized blocks mapped; after a run of documents that is 40-50 MB
    # of RSS that counts against a Lambda's or a child's memory cap. Returning it costs ~1 ms.
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # glibc only; musl and macOS have no malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def _encode_jpeg(image: Image.Image, limits: Limits, extra: dict) -> bytes:
    # No optimize=True: fitted Huffman tables save ~7% of bytes but cost 3x the encode time
    # on a text page (96 -> 30 pages/s measured), and encoding is the stage's hot loop.
    # Pillow lets go of the GIL while it encodes only when it writes to a file descriptor:
    # into a BytesIO, two threads encoding measured no faster than one. Into an in-memory
    # file, the writer thread encodes page N while MuPDF renders page N+1.
    with _memory_file() as out:
        image.save(out, "JPEG", quality=limits.jpeg_quality, **extra)
        out.seek(0)
        return out.read()


def _memory_file() -> IO[bytes]:
    """A file in RAM (Linux memfd), gone when closed; elsewhere an unlinked temp file."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("docpipe-page", os.MFD_CLOEXEC), "w+b")
    return tempfile.TemporaryFile()


def _check_page_count(count: int, limits: Limits) -> None:
    if count == 0:
        raise NoPagesError()
    if count > limits.max_pages:
        raise TooManyPagesError(f"the document has {count} pages; the limit is {limits.max_pages}")


def _check_pixels(page_number: int, width: int, height: int, limits: Limits, what: str = "page") -> None:
    if width * height > limits.max_page_pixels:
        raise PageTooLargeError(
            f"page {page_number}: {what} of {width}x{height} pixels is over the limit of "
            f"{limits.max_page_pixels} pixels"
        )


# --- PDF -----------------------------------------------------------------------------


class _PdfDocument(Document):
    kind = DocumentKind.PDF

    def __init__(self, path: Path, limits: Limits) -> None:
        self._limits = limits
        self._decoded_bytes = 0  # image bytes MuPDF has decoded since its store was emptied
        try:
            self._doc = pymupdf.open(path, filetype="pdf")
        except Exception as exc:
            raise UnreadableDocumentError("the PDF could not be opened") from exc
        try:
            # A PDF with only an owner password opens with the empty user password.
            if self._doc.needs_pass and not self._doc.authenticate(""):
                raise EncryptedDocumentError()
            self.page_count = self._doc.page_count
            _check_page_count(self.page_count, limits)
        except PipelineError:
            self._doc.close()
            raise
        except Exception as exc:
            self._doc.close()
            raise UnreadableDocumentError("the PDF's page tree could not be read") from exc

    def close(self) -> None:
        self._doc.close()

    def pages(self) -> Iterator[RenderedPage]:
        for index in range(self.page_count):
            yield _timed(self._limits, index + 1, self._render, index)
            # MuPDF's store keeps each page's decoded images (up to 256 MB by default) in
            # case a later page reuses them; in a scan they never are, so a long scanned PDF
            # would fill it. Emptying it whenever the images decoded since the last time
            # pass a few pages' worth keeps a 300-page scan at a few pages' memory, while a
            # text PDF keeps its parsed fonts (emptying after every page cost a text PDF 30%
            # of its pages/s). PyMuPDF 1.x cannot report the store's size, hence the estimate.
            if self._decoded_bytes > _STORE_CAP_BYTES:
                pymupdf.TOOLS.store_shrink(100)
                self._decoded_bytes = 0

    def _render(self, index: int) -> RenderedPage:
        number = index + 1
        limits = self._limits
        try:
            page = self._doc.load_page(index)
            rect = page.rect  # the displayed page: cropbox, after /Rotate
            images = page.get_image_info()
        except Exception as exc:
            raise UnreadableDocumentError(f"page {number} could not be read") from exc
        if not (rect.width > 0 and rect.height > 0 and math.isfinite(rect.width * rect.height)):
            raise UnreadableDocumentError(f"page {number} has no area")

        # An image's own pixels are decoded in full before they are scaled onto the page,
        # whatever size the page is rendered at: that is where decompression bombs live.
        for image in images:
            _check_pixels(number, int(image.get("width", 0)), int(image.get("height", 0)), limits, "an image")
            self._decoded_bytes += int(image.get("width", 0)) * int(image.get("height", 0)) * 4
        scale = min(limits.render_dpi / 72, limits.render_max_edge / max(rect.width, rect.height))
        _check_pixels(number, math.ceil(rect.width * scale) + 1, math.ceil(rect.height * scale) + 1, limits)

        try:
            pix = _rasterise(page.get_displaylist(), scale)
        except Exception as exc:
            raise UnreadableDocumentError(f"page {number} could not be rendered") from exc
        width, height = pix.width, pix.height
        mode = "L" if pix.n == 1 else "RGBX"
        samples = pix.samples_mv  # made here, on MuPDF's thread: the writers only read memory
        dpi = round(72 * scale)

        def encode() -> bytes:
            # Pillow's libjpeg-turbo encodes a page about ten times faster than MuPDF's
            # encoder, straight from the pixmap's memory: grey and RGBX are Pillow's own
            # layouts, so the image is a view of the pixmap, not a copy.
            try:
                image = Image.frombuffer(mode, (width, height), samples, "raw", mode, 0, 1)
                try:
                    return _encode_jpeg(image, limits, {"dpi": (dpi, dpi)})
                finally:
                    image.close()
            except Exception as exc:
                raise UnreadableDocumentError(f"page {number} could not be encoded") from exc

        return RenderedPage(
            page_number=number,
            width=width,
            height=height,
            native_text=_native_text(page, number, images, limits),
            pixmap=pix,
            encode=encode,
        )


_Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in points; plain floats are
# an order of magnitude faster than pymupdf.Rect for the thousands of words on a page.


def _rasterise(display_list: pymupdf.DisplayList, scale: float) -> pymupdf.Pixmap:
    """The page's pixels at ``scale``: grey when nothing on it is painted in colour, else RGB
    in four bytes a pixel (RGBX: opaque white underneath, so the fourth byte is always 255).

    Most clinical PDFs are black text: in grey they render and encode in about half the time
    and store a third smaller. RGB goes to four bytes so that Pillow can read the pixmap in
    place; three-byte RGB costs a 3 ms copy a page before encoding even starts."""
    if not _paints_in_colour(display_list):
        return display_list.get_pixmap(matrix=pymupdf.Matrix(scale, scale), colorspace=pymupdf.csGRAY, alpha=False)
    matrix = _mupdf.FzMatrix(scale, 0, 0, scale, 0, 0)
    bounds = _mupdf.fz_round_rect(_mupdf.fz_transform_rect(_mupdf.fz_bound_display_list(display_list.this), matrix))
    pixmap = _mupdf.fz_new_pixmap_with_bbox(_mupdf.fz_device_rgb(), bounds, _mupdf.FzSeparations(), 1)
    _mupdf.fz_clear_pixmap_with_value(pixmap, 0xFF)
    device = _mupdf.fz_new_draw_device(matrix, pixmap)
    try:
        _mupdf.fz_run_display_list(display_list.this, device, _IDENTITY, _EVERYWHERE, _mupdf.FzCookie())
    finally:
        _mupdf.fz_close_device(device)
    return pymupdf.Pixmap("raw", pixmap)


_mupdf = pymupdf.mupdf
_IDENTITY = _mupdf.FzMatrix(1, 0, 0, 1, 0, 0)
_EVERYWHERE = _mupdf.FzRect(_mupdf.FzRect.Fixed_INFINITE)
# A colour whose components differ by less than this (of 1) counts as grey: a black given in
# CMYK or through an ICC profile rarely converts to exactly equal R, G and B.
_COLOUR_THRESHOLD = 0.02


def _paints_in_colour(display_list: pymupdf.DisplayList) -> bool:
    """Whether anything on the page (text, paths, shadings, images, annotations) is painted
    in colour, by MuPDF's test device over the page's display list (~0.05 ms a text page).

    Images are judged by their colour space, not their pixels: an RGB scan of a grey letter
    stays RGB. Cheap, and it never errs towards grey. When in doubt, colour."""
    found = _mupdf.ll_fz_new_test_device_outparams()  # the device writes its verdict here
    device = _mupdf.ll_fz_new_test_device_outparams_fn(_COLOUR_THRESHOLD, 0, None, found)
    try:
        _mupdf.ll_fz_run_display_list(
            display_list.this.m_internal, device, _IDENTITY.internal(), _EVERYWHERE.internal(), None
        )
        _mupdf.ll_fz_close_device(device)
    except Exception:
        return True
    finally:
        _mupdf.ll_fz_drop_device(device)
    return found.is_color != 0


def _native_text(page: pymupdf.Page, number: int, images: list[dict], limits: Limits) -> PageText | None:
    started = time.perf_counter()
    try:
        raw_words = page.get_text("words", flags=_WORD_FLAGS)
    except Exception:
        # The text layer is an optimisation: a page that rendered but whose text cannot
        # be extracted is still a page, and OCR will read it.
        return None

    # Word coordinates are in the unrotated page, from the top-left of the cropbox; the
    # rotation matrix (a multiple of 90 degrees) takes them to the page as displayed,
    # which is what was rendered.
    a, b, c, d, e, f = page.rotation_matrix
    width, height = page.rect.width, page.rect.height
    lines: dict[tuple[int, int], list[tuple[_Rect, str]]] = {}
    text_area = 0.0
    for x0, y0, x1, y1, text, block_no, line_no, _word_no in raw_words:
        u0, v0 = a * x0 + c * y0 + e, b * x0 + d * y0 + f
        u1, v1 = a * x1 + c * y1 + e, b * x1 + d * y1 + f
        rect = (min(u0, u1), min(v0, v1), max(u0, u1), max(v0, v1))
        if not text.strip() or not (0 <= (rect[0] + rect[2]) / 2 <= width and 0 <= (rect[1] + rect[3]) / 2 <= height):
            continue  # drawn outside the visible page
        text_area += (rect[2] - rect[0]) * (rect[3] - rect[1])
        lines.setdefault((block_no, line_no), []).append((rect, text))

    blocks: dict[int, list[list[tuple[_Rect, str]]]] = {}
    for (block_no, _), line_words in lines.items():
        blocks.setdefault(block_no, []).append(line_words)
    # Reading order: blocks top to bottom, then left to right, as the text itself stands
    # (a page may show its text sideways); lines and words within a block in the order
    # the page draws them.
    key = _READING_ORDER[_writing_direction(lines.values())]
    ordered = sorted(blocks.values(), key=lambda block: key(_union(r for line in block for r, _ in line)))
    text = "\n\n".join("\n".join(" ".join(t for _, t in line) for line in block) for block in ordered)

    if not _is_usable(text, limits.native_text_min_chars):
        return None
    image_cover = max((_cover(image["bbox"], page) for image in images), default=0.0)
    if image_cover >= _SCAN_IMAGE_COVER and text_area / (width * height) < _STAMP_TEXT_COVER:
        return None

    out_lines: list[Line] = []
    out_words: list[Word] = []
    for block in ordered:
        for line in block:
            line_box = _box(_union(r for r, _ in line), width, height)
            out_lines.append(Line(text=" ".join(t for _, t in line), box=line_box))
            out_words.extend(Word(text=t, box=_box(r, width, height)) for r, t in line)
    return PageText(
        page_number=number,
        text=text,
        lines=out_lines,
        words=out_words,
        confidence=None,
        engine="native",
        duration_ms=(time.perf_counter() - started) * 1000,
    )


def _is_usable(text: str, min_chars: int) -> bool:
    chars = [c for c in text if not c.isspace()]
    if sum(c.isalnum() for c in chars) < min_chars:
        return False
    garbage = sum(c == "\ufffd" or unicodedata.category(c) in _GARBAGE_CATEGORIES for c in chars)
    return garbage <= _MAX_GARBAGE_SHARE * len(chars)


def _cover(bbox: Iterable[float], page: pymupdf.Page) -> float:
    """The share of the page an image covers (in unrotated coordinates, like its bbox)."""
    x0, y0, x1, y1 = bbox
    page_width, page_height = page.cropbox.width, page.cropbox.height
    w = max(0.0, min(x1, page_width) - max(x0, 0.0))
    h = max(0.0, min(y1, page_height) - max(y0, 0.0))
    return w * h / (page_width * page_height)


def _union(rects: Iterable[_Rect]) -> _Rect:
    x0s, y0s, x1s, y1s = zip(*rects)
    return (min(x0s), min(y0s), max(x1s), max(y1s))


def _writing_direction(lines: Iterable[list[tuple[_Rect, str]]]) -> str:
    """Which way most lines run on the displayed page: right, down, left or up."""
    votes = dict.fromkeys(_READING_ORDER, 0)
    for line in lines:
        if len(line) < 2:
            continue
        (first, _), (last, _) = line[0], line[-1]
        dx = (last[0] + last[2] - first[0] - first[2]) / 2
        dy = (last[1] + last[3] - first[1] - first[3]) / 2
        votes[max((dx, "right"), (dy, "down"), (-dx, "left"), (-dy, "up"))[1]] += 1
    return max(votes, key=lambda direction: (votes[direction], direction == "right"))


# Sort keys of a block's rect (x0, y0, x1, y1) that put blocks in reading order for text
# running that way: the next line of text is below (right), to the left (down), above
# (left) or to the right (up) of the previous one.
_READING_ORDER: dict[str, Callable[[_Rect], tuple[float, float]]] = {
    "right": lambda r: (r[1], r[0]),
    "down": lambda r: (-r[2], r[1]),
    "left": lambda r: (-r[3], -r[2]),
    "up": lambda r: (r[0], -r[3]),
}


def _box(rect: _Rect, width: float, height: float) -> Box:
    return Box.from_pixels(*rect, width, height)


# --- images --------------------------------------------------------------------------


@functools.cache
def _register_heif() -> None:
    import pillow_heif

    # One decoder thread: libde265's threads each leave a malloc arena behind, and a warm
    # process grew by ~17 MB with every 12 MP photo. Thumbnails, depth maps and auxiliary
    # images are never pages, so they are not loaded either.
    pillow_heif.register_heif_opener(decode_threads=1, thumbnails=False, depth_images=False, aux_images=False)


class _ImageDocument(Document):
    def __init__(self, path: Path, kind: DocumentKind, limits: Limits) -> None:
        self.kind = kind
        self._limits = limits
        if kind is DocumentKind.HEIC:
            _register_heif()
        try:
            # Only the decoder of the sniffed kind may read the file.
            self._image = Image.open(path, formats=[_PIL_FORMATS[kind]])
        except Image.DecompressionBombError as exc:
            raise PageTooLargeError("the image has more pixels than Pillow allows") from exc
        except Exception as exc:
            raise UnreadableDocumentError("the image could not be opened") from exc
        try:
            self._frames = self._page_frames()
            _check_page_count(len(self._frames), limits)
        except PipelineError:
            self._image.close()
            raise
        except Exception as exc:
            self._image.close()
            raise UnreadableDocumentError("the image's pages could not be read") from exc
        self.page_count = len(self._frames)

    def _page_frames(self) -> list[int]:
        if self.kind is not DocumentKind.TIFF:
            # A JPEG or PNG is one page. A HEIC's other images are bursts, depth maps or
            # alternates of the primary one, which Pillow opens first, not further pages.
            return [self._image.tell()]
        count = getattr(self._image, "n_frames", 1)
        _check_page_count(count, self._limits)  # before reading every frame's tags
        frames = []
        for index in range(count):
            self._image.seek(index)
            # Scanners and GIS tools append reduced-resolution copies (overviews) of a
            # page as further IFDs; they are not pages.
            if not int(self._image.tag_v2.get(_TIFF_SUBFILE_TYPE, 0)) & 1:
                frames.append(index)
        return frames or [0]

    def close(self) -> None:
        self._image.close()

    def pages(self) -> Iterator[RenderedPage]:
        for number, frame in enumerate(self._frames, start=1):
            yield _timed(self._limits, number, self._render, number, frame)

    def _render(self, number: int, frame: int) -> RenderedPage:
        limits = self._limits
        image = self._image
        try:
            if image.tell() != frame:
                image.seek(frame)
            width, height = image.size
        except Exception as exc:
            raise UnreadableDocumentError(f"page {number} could not be read") from exc
        # The header gives the size; nothing is decoded until load().
        _check_pixels(number, width, height, limits)
        orientation = _orientation(image)
        scale = min(1.0, limits.render_max_edge / max(width, height))
        try:
            if image.format == "JPEG" and scale < 1:
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly: a phone photo is
                # never held at full size.
                image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
            image.load()
            page = _jpeg_ready(image)
            if max(page.size) > limits.render_max_edge:
                fit = limits.render_max_edge / max(page.size)
                size = (max(1, round(page.width * fit)), max(1, round(page.height * fit)))
                page = page.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
            if orientation in _TRANSPOSE:
                page = page.transpose(_TRANSPOSE[orientation])
            jpeg = _encode_jpeg(page, limits, _dpi(image, width, page, orientation))
        except Image.DecompressionBombError as exc:
            raise PageTooLargeError(f"page {number} has more pixels than Pillow allows") from exc
        except Exception as exc:
            raise UnreadableDocumentError(f"page {number} could not be decoded") from exc
        return RenderedPage(page_number=number, jpeg=jpeg, width=page.width, height=page.height, native_text=None)


def _orientation(image: Image.Image) -> int:
    """The EXIF/TIFF orientation of the current frame, 1 when absent or unreadable."""
    try:
        if hasattr(image, "tag_v2"):  # TIFF: the tag of this frame, not of the first IFD
            value = image.tag_v2.get(_EXIF_ORIENTATION, 1)
        else:
            value = image.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value)
    except Exception:
        # Broken EXIF is common in photos and says nothing about the pixels: keep them
        # as stored.
        return 1


def _jpeg_ready(image: Image.Image) -> Image.Image:
    """The image in a mode JPEG holds: L for grey, RGB otherwise, transparency on white."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _stretch_to_grey(image)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        # Transparent pixels have arbitrary colour underneath, often black: a scan with
        # an alpha channel would OCR as a black page.
        rgba = image.convert("RGBA")
        page = Image.new("RGB", image.size, "white")
        page.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return page.convert("L") if mode in ("1", "L", "LA", "La") else page
    if mode in ("RGB", "L"):
        return image
    if mode == "1":
        # Bilevel scans go grey so that downscaling averages pixels instead of dropping them.
        return image.convert("L")
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV


def _stretch_to_grey(image: Image.Image) -> Image.Image:
    # 16-bit and float greys: stretch the values present to 0..255 rather than clip them.
    wide = image.convert("F")
    low, high = wide.getextrema()
    if high <= low:
        return Image.new("L", image.size, 255 if high > 0 else 0)
    factor = 255.0 / (high - low)
    return wide.point(lambda v: (v - low) * factor).convert("L")


def _dpi(image: Image.Image, stored_width: int, page: Image.Image, orientation: int) -> dict:
    """The resolution to write into the page JPEG: only a scan's, which is real.

    Photos and screenshots claim 72 or 96 dpi whatever they show; Tesseract does better
    estimating from the text than trusting that.
    """
    if image.format != "TIFF":
        return {}
    dpi = image.info.get("dpi")
    try:
        x_dpi, y_dpi = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return {}
    if not (50 <= x_dpi <= 2400 and 50 <= y_dpi <= 2400):
        return {}
    scale = (page.height if orientation in (5, 6, 7, 8) else page.width) / stored_width
    x_out, y_out = round(x_dpi * scale), round(y_dpi * scale)
    if orientation in (5, 6, 7, 8):
        x_out, y_out = y_out, x_out
    return {"dpi": (x_out, y_out)}
