"""PDF pages: opened with PyMuPDF, each rasterised (grey when nothing on it is in colour) and
handed over with its text layer; MuPDF's store kept to a few pages of decoded images."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pymupdf
from PIL import Image

from shared.errors import EncryptedDocumentError, PipelineError, UnreadableDocumentError
from shared.pages.jpeg import encode_jpeg
from shared.pages.page import Document, Limits, RenderedPage, check_page_count, check_pixels, timed
from shared.pages.sniff import DocumentKind
from shared.pages.text_layer import native_text

# MuPDF prints its complaints about broken files to stdout/stderr, outside the JSON logs;
# what matters reaches the caller as a typed error instead.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)


# Decoded image bytes after which MuPDF's store is emptied (see PdfDocument.pages).
_STORE_CAP_BYTES = 32 * 1024 * 1024


class PdfDocument(Document):
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
            check_page_count(self.page_count, limits)
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
            yield timed(self._limits, index + 1, self._render, index)
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
            check_pixels(number, int(image.get("width", 0)), int(image.get("height", 0)), limits, "an image")
            self._decoded_bytes += int(image.get("width", 0)) * int(image.get("height", 0)) * 4
        scale = min(limits.render_dpi / 72, limits.render_max_edge / max(rect.width, rect.height))
        check_pixels(number, math.ceil(rect.width * scale) + 1, math.ceil(rect.height * scale) + 1, limits)

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
                    return encode_jpeg(image, limits, {"dpi": (dpi, dpi)})
                finally:
                    image.close()
            except Exception as exc:
                raise UnreadableDocumentError(f"page {number} could not be encoded") from exc

        return RenderedPage(
            page_number=number,
            width=width,
            height=height,
            native_text=native_text(page, number, images, limits),
            pixmap=pix,
            encode=encode,
        )


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
