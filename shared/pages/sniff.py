"""Which kind of document a file is, read from its first bytes, never from its name."""

from __future__ import annotations

import enum
import struct
from pathlib import Path

from shared.errors import EmptyFileError, UnsupportedTypeError

# A PDF header may follow some junk; readers (and MuPDF) look for it in the first 1 KB.
_HEAD_BYTES = 1024

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
# Generic HEIF brands: the image may be HEVC (ours) or AV1 (AVIF, not supported).
_HEIF_GENERIC_BRANDS = frozenset({b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


class DocumentKind(str, enum.Enum):
    PDF = "pdf"
    TIFF = "tiff"
    JPEG = "jpeg"
    PNG = "png"
    HEIC = "heic"

    @property
    def mime(self) -> str:
        return _MIME[self]

    @property
    def extension(self) -> str:
        return _EXTENSION[self]


_MIME = {
    DocumentKind.PDF: "application/pdf",
    DocumentKind.TIFF: "image/tiff",
    DocumentKind.JPEG: "image/jpeg",
    DocumentKind.PNG: "image/png",
    DocumentKind.HEIC: "image/heic",
}
_EXTENSION = {
    DocumentKind.PDF: "pdf",
    DocumentKind.TIFF: "tiff",
    DocumentKind.JPEG: "jpg",
    DocumentKind.PNG: "png",
    DocumentKind.HEIC: "heic",
}


def sniff(path: Path) -> DocumentKind:
    """The kind of the file at ``path`` by its magic bytes.

    Raises ``EmptyFileError`` for a zero-byte file and ``UnsupportedTypeError`` for
    anything that is not a PDF, TIFF, JPEG, PNG or HEIC file.
    """
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    if not head:
        raise EmptyFileError()
    kind = sniff_bytes(head)
    if kind is None:
        raise UnsupportedTypeError(f"not a PDF, TIFF, JPEG, PNG or HEIC file ({_describe(head)})")
    return kind


def sniff_bytes(head: bytes) -> DocumentKind | None:
    """The kind named by the first bytes of a file, or None."""
    if head.startswith(_JPEG):
        return DocumentKind.JPEG
    if head.startswith(_PNG):
        return DocumentKind.PNG
    if head.startswith(_TIFF):
        return DocumentKind.TIFF
    if _is_heic(head):
        return DocumentKind.HEIC
    if b"%PDF-" in head[:_HEAD_BYTES]:
        return DocumentKind.PDF
    return None


def _is_heic(head: bytes) -> bool:
    # ISO-BMFF: the first box is "ftyp": size, "ftyp", major brand, minor version,
    # then compatible brands up to the end of the box.
    if len(head) < 12 or head[4:8] != b"ftyp":
        return False
    (box_size,) = struct.unpack(">I", head[:4])
    major = head[8:12]
    end = min(box_size, len(head)) if box_size >= 16 else 12
    compatible = {head[i : i + 4] for i in range(16, end - 3, 4)}
    if major in _HEIC_BRANDS:
        return True
    if major in _AVIF_BRANDS:
        return False
    if major in _HEIF_GENERIC_BRANDS:
        return not (compatible & _AVIF_BRANDS) or bool(compatible & _HEIC_BRANDS)
    return bool(compatible & _HEIC_BRANDS)


def _describe(head: bytes) -> str:
    # Says what the file looks like without quoting its bytes (they could be text).
    brand = head[8:12]
    if head[4:8] == b"ftyp":
        if brand.isascii() and brand.isalnum():
            return f"an ISO media file of brand {brand.decode()!r}"
        return "an ISO media file of another brand"
    sample = head[:512]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    if printable == len(sample):
        return "plain text"
    return "unrecognised binary data"
