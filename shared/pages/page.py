"""One rendered page, the open document that yields them, and the limits every reader checks.

``Limits`` is what the settings allow a document (pages, pixels, render size, time a page);
``RenderedPage`` one page as a reader hands it over (its JPEG, or its pixmap and an encoder);
``Document`` the open file. The checks here are the ones a PDF and an image share: page
count, pixels per page, render time.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Iterator

import pymupdf

from shared.errors import NoPagesError, PageRenderTooSlowError, PageTooLargeError, TooManyPagesError
from shared.models import PageText
from shared.pages.sniff import DocumentKind
from shared.settings import Settings


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


def timed(limits: Limits, number: int, render: Callable[..., RenderedPage], *args) -> RenderedPage:
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


def check_page_count(count: int, limits: Limits) -> None:
    if count == 0:
        raise NoPagesError()
    if count > limits.max_pages:
        raise TooManyPagesError(f"the document has {count} pages; the limit is {limits.max_pages}")


def check_pixels(page_number: int, width: int, height: int, limits: Limits, what: str = "page") -> None:
    if width * height > limits.max_page_pixels:
        raise PageTooLargeError(
            f"page {page_number}: {what} of {width}x{height} pixels is over the limit of "
            f"{limits.max_page_pixels} pixels"
        )
