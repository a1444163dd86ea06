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


# Start-of-frame markers of the JPEGs every decoder reads: baseline, extended and progressive
# Huffman. Arithmetic-coded and lossless ones are rendered instead.
_SOF = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length: TEM, RST0-7


def with_density(data: bytes, width: int, height: int, components: int, dpi: int) -> bytes | None:
    """``data``, a JPEG stream as a PDF embeds it, as a page JPEG of ``dpi``: its own bytes
    with a JFIF header naming that resolution (the page's scale, which Tesseract and the
    page's preparation read), or None when it is not plainly a ``width`` x ``height`` JPEG of
    ``components`` components that every decoder shows as MuPDF does (truncated, arithmetic
    coded, with an EXIF orientation, or an RGB one whose Adobe header says it is not YCbCr,
    which a JFIF header would contradict). Only the headers are read; no pixel is decoded."""
    end = data.rstrip(b"\0\r\n\t ")
    if not (data.startswith(b"\xff\xd8") and end.endswith(b"\xff\xd9")):
        return None
    kept: list[bytes] = []
    frame = None
    pos = 2
    while pos + 4 <= len(end):
        if end[pos] != 0xFF:
            return None
        marker = end[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            return None
        length = int.from_bytes(end[pos + 2 : pos + 4], "big")
        segment = end[pos : pos + 2 + length]
        if length < 2 or len(segment) < 2 + length:
            return None
        body = segment[4:]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data, kept as it is
            kept.append(end[pos:])
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in _SOF or len(body) < 6:
                return None
            frame = (int.from_bytes(body[3:5], "big"), int.from_bytes(body[1:3], "big"), body[5], body[0])
        elif marker == 0xE0 and body.startswith(b"JFIF\0"):
            pos += 2 + length
            continue  # ours replaces it
        elif marker == 0xE1 and body.startswith(b"Exif\0"):
            return None  # an orientation a viewer would apply and the PDF does not
        elif marker == 0xEE and body.startswith(b"Adobe") and components == 3 and len(body) >= 12 and body[11] == 0:
            return None  # RGB as stored, not YCbCr: a JFIF header would say otherwise
        kept.append(segment)
        pos += 2 + length
    else:
        return None
    if frame != (width, height, components, 8):
        return None
    jfif = b"JFIF\0\x01\x01\x01" + dpi.to_bytes(2, "big") * 2 + b"\0\0"
    return b"\xff\xd8\xff\xe0" + (len(jfif) + 2).to_bytes(2, "big") + jfif + b"".join(kept)
