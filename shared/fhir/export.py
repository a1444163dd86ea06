"""A stored file's Bundle, read back from the database, and where its attachments live."""

from __future__ import annotations

import datetime as dt
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path

from shared.errors import FileNotFoundInDbError, NotReadyError
from shared.fhir.bundle import build_bundle
from shared.models import FileStatus
from shared.ports import Database
from shared.settings import Settings


def bundle_for_file(db: Database, shell_file_id: uuid.UUID, locate: Callable[[str], str],
                    recorded: dt.datetime | None = None) -> dict:
    """The Bundle of a completed file, from its rows (any runtime's database)."""
    row = db.get_shell_file(shell_file_id)
    if row is None:
        raise FileNotFoundInDbError("no such file")
    manifest = db.manifest(shell_file_id) if row.status == FileStatus.COMPLETED else None
    if manifest is None:
        raise NotReadyError(f"the file is {row.status.value}, not completed: it has no encounters to map")
    return build_bundle(row, db.pages(shell_file_id), manifest, locate=locate, recorded=recorded)


def locator(settings: Settings) -> Callable[[str], str]:
    """Storage key -> the URL an object is fetched from, for the configured backend: an S3 URI,
    Supabase Storage's authenticated download URL (the service role's key, or the patient's
    own JWT under the Storage policies), or a file:// URL for local storage."""
    if settings.storage_backend == "supabase" and settings.supabase_url:
        base = f"{settings.supabase_url.rstrip('/')}/storage/v1/object/authenticated/{settings.storage_bucket}/"
        return lambda key: base + urllib.parse.quote(key)
    if settings.storage_backend == "local":
        return local_locator(settings.local_storage_dir)
    return lambda key: f"s3://{settings.storage_bucket}/{key}"


def local_locator(root: Path) -> Callable[[str], str]:
    root = Path(root).resolve()
    return lambda key: (root / key).as_uri()
