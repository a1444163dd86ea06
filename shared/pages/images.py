"""Image documents: JPEG, PNG, HEIC (one page) and TIFF (a page per frame, overviews skipped),
each page decoded at the size it is stored at (a JPEG at 1/2, 1/4, 1/8 where that is enough),
turned upright by its EXIF/TIFF orientation, made a mode JPEG holds, and encoded."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from shared.errors import PageTooLargeError, PipelineError, UnreadableDocumentError
from shared.pages.jpeg import encode_jpeg
from shared.pages.page import Document, Limits, RenderedPage, check_page_count, check_pixels, timed
from shared.pages.sniff import DocumentKind

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


@functools.cache
def _register_heif() -> None:
    import pillow_heif

    # One decoder thread: libde265's threads each leave a malloc arena behind, and a warm
    # process grew by ~17 MB with every 12 MP photo. Thumbnails, depth maps and auxiliary
    # images are never pages, so they are not loaded either.
    pillow_heif.register_heif_opener(decode_threads=1, thumbnails=False, depth_images=False, aux_images=False)


class ImageDocument(Document):
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
            check_page_count(len(self._frames), limits)
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
        check_page_count(count, self._limits)  # before reading every frame's tags
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
            yield timed(self._limits, number, self._render, number, frame)

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
        check_pixels(number, width, height, limits)
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
            jpeg = encode_jpeg(page, limits, _dpi(image, width, page, orientation))
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
