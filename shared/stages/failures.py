"""The failures stage: a message from a dead-letter queue failed on every delivery; its file is
marked failed with the last error code its stage runs recorded, so the user sees why, if the
file is still at that message's stage (a stale duplicate fails nothing). A failed file is
retried from the database (`docpipe retry`). A purge's dead letter fails nothing: the erasure
stays due. Called by ``handlers.failures`` with the letter's queue ARN, body and message id."""

from __future__ import annotations

from shared.bootstrap import Deps
from shared.errors import RetriesExhaustedError
from shared.models import Stage, shell_file_id_of
from shared.observability import logger
from shared.ports import DLQ_SUFFIX

# The dependencies this stage builds (bootstrap builds each on first use; nothing else).
USES = ("db", "queue")  # the queue: a failed record's retry is scheduled on it


def stage_of(queue_arn: str) -> Stage | None:
    name = queue_arn.rsplit(":", 1)[-1]
    for stage in Stage:
        if name.endswith(f"-{stage.value}{DLQ_SUFFIX}") or name == f"{stage.value}{DLQ_SUFFIX}":
            return stage
    return None


def run(deps: Deps, queue_arn: str, body: str, message_id: str) -> bool:
    """Record one dead letter; True if its file was marked failed."""
    stage = stage_of(queue_arn)
    shell_file_id = shell_file_id_of(body)
    logger.append_keys(message_id=message_id, stage=stage.value if stage else None)
    if stage == Stage.PURGE:
        # A deleted file has no row to fail; its erasure keeps its error code and stays due,
        # and the next scan purges it (`docpipe status` counts the erasures still pending).
        logger.warning("purge dead letter: the erasure stays due for the next scan")
        return False
    if shell_file_id is None:
        logger.warning("dead letter without a file id", extra={"error_code": "invalid_message"})
        return False
    logger.append_keys(shell_file_id=str(shell_file_id))
    last = deps.db.last_error_code(shell_file_id)
    code = last if last and last not in ("crash", "retryable") else RetriesExhaustedError.code
    where = stage.value if stage else "an unknown stage"
    message = f"the {where} stage failed on every delivery and reached the dead-letter queue"
    if last:
        message += f" (last error: {last})"
    # Only while the file is still at this letter's stage: the stages send duplicates on
    # purpose, and a stale copy of a message whose work was done must not fail the file.
    marked = deps.db.mark_failed(shell_file_id, code, message, at_stage=stage)
    log = logger.warning if marked else logger.info
    log("dead letter recorded" if marked else "dead letter of a file past its stage: ignored",
        extra={"error_code": code, "marked": marked})
    return marked
