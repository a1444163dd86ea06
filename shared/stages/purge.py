"""The purge stage (erasure): a deleted file's objects removed from storage, from its erasure record.

The deletion itself is the removal of the file's shell_files row, by `docpipe delete` or by an
app's own DELETE; the rows that hold its content go with it and a trigger records the erasure
(supabase/migrations/20261203002700_erasures.sql). What is left is storage, and storage is
addressed by ids: everything docpipe stores for a file is under ``originals/{patient}/{file}/``
and ``processed/{patient}/{file}/`` (its original, its page images, anything a stage adds later),
so a purge lists and deletes both prefixes without knowing what is in them.

Who asks for a purge: `docpipe delete` runs one itself; a stage that meets a deleted file sends a
``PurgeMessage`` (it may have stored an object before it noticed); and ``scan`` purges every
erasure that is due: one not purged yet (an app's plain DELETE, a purge that failed while Storage
was down) or one whose final sweep has come. The final sweep begins ERASURE_FINAL_SWEEP_S after the
request, when no stage that started before the deletion can still be running: after it nothing of
the file can be left, and ``finished_at`` says so.

A purge holds the erasure's lease, so two never run at once and every object is counted once; a
redelivered purge lists nothing and adds nothing. Called by ``handlers.purge``: ``run`` with a
parsed message, ``scan`` from the worker's timer or the function's schedule."""

from __future__ import annotations

import collections
import time
import uuid

from shared.bootstrap import Deps
from shared.errors import PipelineError, PurgeInProgressError, RetryableError
from shared.keys import file_prefixes
from shared.models import Erasure, PurgeMessage, ScanMessage
from shared.observability import logger

# The dependencies this stage builds (bootstrap builds each on first use; nothing else).
USES = ("db", "storage", "queue")  # the queue: a failed record's retry is scheduled on it

LEASE_S = 120.0  # one file's purge: two listings and a delete per 1000 objects
SCAN_LIMIT = 100  # erasures per scan; the next scan takes the rest


def run(msg: PurgeMessage, deps: Deps, attempt: int = 1) -> int | str | None:
    done = purge_file(deps, msg.shell_file_id, wait=True)
    return "skipped" if done is None else None


def purge_file(deps: Deps, shell_file_id: uuid.UUID, wait: bool = False) -> Erasure | None:
    """Remove every object under the file's prefixes and record it; return the erasure after the
    purge, or None when there is nothing to purge (no erasure, or the file's row is back) or,
    without ``wait``, another purge holds the lease. With ``wait``, a lease held past its
    expiry is ``PurgeInProgressError`` (retried)."""
    erasure = deps.db.erasure(shell_file_id)
    # Only a file whose row is gone: a message naming a live file removes nothing.
    if erasure is None or not deps.db.is_deleted(shell_file_id):
        logger.info("nothing to purge", extra={"recorded": erasure is not None})
        return None
    owner = str(uuid.uuid4())
    if not _claim(deps, shell_file_id, owner, wait):
        if wait:
            raise PurgeInProgressError(retry_after_s=LEASE_S)
        return None
    removed = 0
    try:
        for prefix in file_prefixes(erasure.patient_id, shell_file_id):
            removed += deps.storage.delete_prefix(prefix)
    except BaseException as exc:
        code = exc.code if isinstance(exc, PipelineError) else "crash"
        try:
            deps.db.fail_purge(shell_file_id, owner, code, removed)
        finally:
            logger.warning("purge failed", extra={"error_code": code, "objects_removed": removed})
        raise
    done = deps.db.finish_purge(shell_file_id, owner, removed, deps.settings.erasure_final_sweep_s)
    if done is None:  # the lease ran out under us and another purge took it over
        logger.warning("purge lease lost", extra={"objects_removed": removed})
        return deps.db.erasure(shell_file_id)
    if removed and erasure.finished_at is not None:
        logger.warning("objects found after the final sweep", extra={"objects_removed": removed})
    logger.info("purged", extra={"objects_removed": removed, "objects_total": done.objects_removed,
                                 "final": done.finished_at is not None})
    return done


def _claim(deps: Deps, shell_file_id: uuid.UUID, owner: str, wait: bool) -> bool:
    """The lease; waiting (a purge message) for as long as a lease can be held."""
    deadline = time.monotonic() + LEASE_S + 5
    while not deps.db.claim_erasure(shell_file_id, owner, LEASE_S):
        if not wait or time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def scan(deps: Deps, limit: int = SCAN_LIMIT) -> dict[str, int]:
    """Purge every erasure that is due (up to ``limit``, least recently tried first); return
    counts by result. A failed erasure keeps its error code and goes to the back of the line
    (it cannot hold up the others); a dependency failure ends the scan (Storage down: the rest
    would fail the same way), and the next one tries again."""
    counts: collections.Counter[str] = collections.Counter()
    for erasure in deps.db.due_erasures(deps.settings.erasure_final_sweep_s, limit):
        logger.append_keys(shell_file_id=str(erasure.shell_file_id))
        try:
            done = purge_file(deps, erasure.shell_file_id)
        except PipelineError as exc:
            counts["failed"] += 1
            if isinstance(exc, RetryableError):
                logger.warning("scan stopped", extra={"error_code": exc.code})
                break
            continue
        finally:
            logger.remove_keys(["shell_file_id"])
        counts["skipped" if done is None else "finished" if done.finished_at else "purged"] += 1
    logger.info("erasure scan", extra=dict(counts))
    return dict(counts)


def is_scan(body: str) -> bool:
    """A queue body that asks for a scan (``ScanMessage``) rather than one file's purge."""
    try:
        ScanMessage.model_validate_json(body)
    except ValueError:
        return False
    return True
