"""Storage keys, built only from validated ids and numbers, never from file names."""

from __future__ import annotations

import re
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


def file_prefixes(patient_id: uuid.UUID, shell_file_id: uuid.UUID) -> tuple[str, str]:
    """Where every object of one file lives (its original; its page images and anything else a
    stage stores for it): what an erasure removes."""
    p, f = uuid.UUID(str(patient_id)), uuid.UUID(str(shell_file_id))
    return f"originals/{p}/{f}/", f"processed/{p}/{f}/"


def patient_prefixes(patient_id: uuid.UUID) -> tuple[str, str]:
    p = uuid.UUID(str(patient_id))
    return f"originals/{p}/", f"processed/{p}/"


def file_of(key: str) -> uuid.UUID | None:
    """The file id a key built here names (its third part), or None."""
    parts = key.split("/")
    try:
        return uuid.UUID(parts[2]) if len(parts) > 3 and parts[0] in ("originals", "processed") else None
    except ValueError:
        return None


_UUID = r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"
_PREFIX = re.compile(rf"(originals|processed)/{_UUID}/({_UUID}/)?")


def check_prefix(prefix: str) -> str:
    """A patient's or a file's prefix as built here, or ``ValueError``: a purge never deletes
    anything wider (an empty or mangled prefix would be the whole bucket)."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError("not a patient's or a file's prefix")
    return prefix
