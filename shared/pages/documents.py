"""Open a document and render its pages one at a time.

Each page becomes a JPEG no larger than ``render_max_edge`` on its longest side and, for a
PDF page whose text layer is usable, that text with word and line boxes normalised to the
page as displayed (after /Rotate). Only one page's pixels are alive at a time: ``pages()``
is a generator and the caller stores each page before asking for the next.

Every failure of a hostile or broken file ends in one of docpipe's permanent errors
(unreadable, encrypted, no pages, too many pages, page too large); vendor exceptions never
escape. Nothing here logs, and no error message quotes the document's content.

The work is done by the modules beside this one, each owning one part:

- ``page``: ``Limits``, ``RenderedPage``, ``Document`` and the checks every reader shares;
- ``pdf``: PDF pages through PyMuPDF (rasterising, colour detection, MuPDF's store);
- ``text_layer``: a PDF page's words and lines, their reading order, and whether to trust them;
- ``images``: JPEG, PNG, HEIC and TIFF pages (EXIF/TIFF orientation, overviews, modes, dpi);
- ``jpeg``: encoding a page into an in-memory file;
- ``memory``: giving native memory back between documents (``release_native_caches``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from shared.pages.images import ImageDocument
from shared.pages.memory import release_native_caches
from shared.pages.page import Document, Limits, RenderedPage
from shared.pages.pdf import PdfDocument
from shared.pages.sniff import DocumentKind

__all__ = ["Document", "Limits", "RenderedPage", "open_document", "release_native_caches"]


@contextlib.contextmanager
def open_document(path: Path, kind: DocumentKind, limits: Limits) -> Iterator[Document]:
    """Open ``path`` as a ``kind`` document; raises a ``PermanentError`` if it cannot be read."""
    document: Document
    if kind is DocumentKind.PDF:
        document = PdfDocument(path, limits)
    else:
        document = ImageDocument(path, kind, limits)
    try:
        yield document
    finally:
        document.close()
