"""Storage keys, built only from validated ids and numbers, never from file names."""

from __future__ import annotations

import uuid

_EXTENSIONS = frozenset({"pdf", "tif", "tiff", "jpg", "jpeg", "png", "heic", "bin"})


def original_key(patient_id: uuid.UUID, shell_file_id: uuid.UUID, extension: str) -> str:
    if extension not in _EXTENSIONS:
        raise ValueError("unknown extension")
    return f"originals/{uuid.UUID(str(patient_id))}/{uuid.UUID(str(shell_file_id))}/original.{extension}"


def page_key(patient_id: uuid.UUID, shell_file_id: uuid.UUID, page_number: int) -> str:
    if int(page_number) < 1:
        raise ValueError("page numbers start at 1")
    return f"processed/{uuid.UUID(str(patient_id))}/{uuid.UUID(str(shell_file_id))}/page-{int(page_number):04d}.jpg"


def bundle_key(patient_id: uuid.UUID, shell_file_id: uuid.UUID) -> str:
    """The file's FHIR Bundle, beside its page images (FHIR_OUTPUT=storage)."""
    return f"processed/{uuid.UUID(str(patient_id))}/{uuid.UUID(str(shell_file_id))}/bundle.json"
