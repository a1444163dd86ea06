"""PDF pages: opened with PyMuPDF, each rasterised (grey when nothing on it is in colour) and
handed over with its text layer; MuPDF's store kept to a few pages of decoded images."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pymupdf
from PIL import Image

from shared.errors import EncryptedDocumentError, PipelineError, UnreadableDocumentError
from shared.pages.jpeg import encode_jpeg, with_density
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
            # Layers can hide an image from rendering; such a PDF's pages are always rendered.
            self._layered = bool(self._doc.get_ocgs())
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
        scale = min(limits.render_dpi / 72, limits.render_max_edge / max(rect.width, rect.height))
        check_pixels(number, math.ceil(rect.width * scale) + 1, math.ceil(rect.height * scale) + 1, limits)
        dpi = round(72 * scale)

        try:
            scanned = self._scanned_jpeg(page, rect, images, scale, dpi)
        except Exception:  # noqa: BLE001 - a page the shortcut cannot judge is rendered
            scanned = None
        if scanned is not None:
            jpeg, width, height = scanned
            return RenderedPage(number, width, height, native_text(page, number, images, limits), jpeg=jpeg)
        for image in images:
            self._decoded_bytes += int(image.get("width", 0)) * int(image.get("height", 0)) * 4

        try:
            pix = _rasterise(page.get_displaylist(), scale)
        except Exception as exc:
            raise UnreadableDocumentError(f"page {number} could not be rendered") from exc
        width, height = pix.width, pix.height
        mode = "L" if pix.n == 1 else "RGBX"
        samples = pix.samples_mv  # made here, on MuPDF's thread: the writers only read memory

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

    def _scanned_jpeg(self, page, rect, images: list[dict], scale: float, dpi: int) -> tuple[bytes, int, int] | None:
        """A scanner's page: one JPEG over the whole page, nothing else painted, stored at the
        size the page renders at. Its JPEG is the page's as it is in the PDF (with the page's
        resolution in its header): rendering would decode it and encode it again, the same
        pixels with a second JPEG loss, at 20 ms a page. None for any other page (render it).
        """
        if len(images) != 1 or page.rotation or self._layered or page.first_annot or page.first_widget:
            return None
        placed = images[0]
        a, b, c, d, _, _ = placed["transform"]
        components = placed.get("colorspace")
        if b or c or a <= 0 or d <= 0 or placed.get("has-mask") or placed.get("bpc") != 8 or components not in (1, 3):
            return None
        if any(abs(edge - page_edge) > _FULL_PAGE_PT for edge, page_edge in zip(placed["bbox"], rect)):
            return None
        width, height = int(placed["width"]), int(placed["height"])
        rendered = (rect * pymupdf.Matrix(scale, scale)).irect
        if abs(width - rendered.width) > 1 or abs(height - rendered.height) > 1:
            return None  # rendering would resample it: a size of the settings' choosing
        resources = page.get_images(full=True)
        if len(resources) != 1:
            return None
        xref, smask, stored_width, stored_height, _bpc, colourspace = resources[0][:6]
        if smask or (stored_width, stored_height) != (width, height) or colourspace not in _PLAIN_COLOURSPACES:
            return None
        if self._doc.xref_get_key(xref, "Filter") != ("name", "/DCTDecode"):
            return None
        if any(self._doc.xref_get_key(xref, key)[0] != "null" for key in ("Decode", "DecodeParms", "Mask", "ImageMask")):
            return None
        kinds = [kind for kind, _ in page.get_bboxlog()]
        if kinds.count("fill-image") != 1 or not set(kinds) <= {"fill-image", "ignore-text"}:
            return None  # text, lines or shading painted over the scan, or a clip
        jpeg = with_density(self._doc.xref_stream_raw(xref), width, height, components, dpi)
        return (jpeg, width, height) if jpeg is not None else None


# How near the page's edges a scan must lie to be the whole page (points).
_FULL_PAGE_PT = 1.0
# Colour spaces a JPEG's own components mean the same in (one or three components; ICC-based
# ones with their profile's count, checked above).
_PLAIN_COLOURSPACES = {"DeviceGray", "DeviceRGB", "ICCBased", "CalGray", "CalRGB"}


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
