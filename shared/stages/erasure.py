"""The deletion guard: what every stage calls before a write batch (page images, rows), so that
nothing is written for a file once its deletion has begun. A stage that meets it ends its message
as ``deleted``: acknowledged, never retried, never failed (``shared.runtime.records``), and a purge
is asked for in case this invocation stored objects before it noticed (``shared.stages.purge``).

Rows cannot outlive the deletion anyway (their foreign keys name shell_files: a late insert fails
and the adapter says ``FileDeletedError``); objects can, which is why the check comes before each
batch and why the file's prefixes are swept after the last stage that could have written."""

from __future__ import annotations

import uuid

from shared.bootstrap import Deps
from shared.errors import FileDeletedError, FileNotFoundInDbError, PermanentError


def ensure_not_deleted(deps: Deps, shell_file_id: uuid.UUID) -> None:
    """Before a write batch: raise ``FileDeletedError`` once the file's deletion has begun."""
    if deps.db.is_deleted(shell_file_id):
        raise FileDeletedError()


def missing_file(deps: Deps, shell_file_id: uuid.UUID) -> FileDeletedError | PermanentError:
    """What to raise when a message's file has no row: it was deleted (the message ends quietly),
    or docpipe never knew it (``unknown_file``)."""
    return FileDeletedError() if deps.db.is_deleted(shell_file_id) else FileNotFoundInDbError()
