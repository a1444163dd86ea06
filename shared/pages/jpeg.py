"""JPEG encoding of a page: Pillow's libjpeg-turbo into an in-memory file (Linux memfd), so
that the encoder lets go of the GIL and writer threads encode while MuPDF renders."""

from __future__ import annotations

import os
import tempfile
from typing import IO

from PIL import Image

from shared.pages.page import Limits


def encode_jpeg(image: Image.Image, limits: Limits, extra: dict) -> bytes:
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
