"""Submitting a document: upload the original, create its row, enqueue preprocess."""

from __future__ import annotations

import uuid
from pathlib import Path

from shared.bootstrap import Deps
from shared.errors import PermanentError
from shared.keys import original_key
from shared.models import FileStatus, PreprocessMessage, ShellFile, Stage
from shared.pages.sniff import sniff


def submit(deps: Deps, path: Path, patient_id: uuid.UUID, shell_file_id: uuid.UUID | None = None) -> uuid.UUID:
    """Upload ``path`` for ``patient_id`` and queue it; return the new shell_file_id.

    The storage key is built from ids and the sniffed type only: the file's name goes to the
    database row (``original_name``), never into a key, a message or a log.
    """
    shell_file_id = shell_file_id or uuid.uuid4()
    try:
        kind = sniff(path)
        extension, mime = kind.extension, kind.mime
    except PermanentError:
        # Not ours to judge here: preprocess records the failure where the user looks.
        extension, mime = "bin", "application/octet-stream"
    key = original_key(patient_id, shell_file_id, extension)
    deps.storage.put_file(key, path, mime)
    deps.db.create_shell_file(
        ShellFile(
            id=shell_file_id,
            patient_id=patient_id,
            storage_key=key,
            original_name=path.name,
            mime_type=mime,
            byte_size=path.stat().st_size,
            status=FileStatus.QUEUED,
        )
    )
    deps.queue.send(Stage.PREPROCESS.value, PreprocessMessage(shell_file_id=shell_file_id))
    return shell_file_id


def provision(deps: Deps, queues: bool = True) -> None:
    """Create what a fresh stack lacks: schema, queues with DLQs, bucket (all idempotent);
    without ``queues``, not the queues (``provision_queues`` made them already).

    The three are independent and mostly round trips to three servers: they run side by side."""
    from concurrent.futures import ThreadPoolExecutor

    from shared.adapters.aws import S3Storage
    from shared.adapters.postgres import PostgresDb

    tasks = []
    if isinstance(deps.db, PostgresDb):
        tasks.append(deps.db.migrate)
    if queues:
        tasks.append(lambda: provision_queues(deps))
    if isinstance(deps.storage, S3Storage):
        tasks.append(deps.storage.ensure_bucket)
    if not tasks:
        return
    with ThreadPoolExecutor(len(tasks), thread_name_prefix="docpipe-provision") as pool:
        for done in [pool.submit(task) for task in tasks]:
            done.result()


def provision_queues(deps: Deps) -> None:
    """Every stage queue and its DLQ, where the queue is SQS (idempotent). Needs no database:
    ``docpipe process`` makes them while its Postgres starts."""
    from shared.adapters.aws import SqsQueue

    if isinstance(deps.queue, SqsQueue):
        deps.queue.ensure_queues(deps.settings.visibility_timeout_s, deps.settings.max_receive_count)
