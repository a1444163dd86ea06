"""What every stage does around its ``run``: parse, log context, error model, run ledger.

``handle_record`` is the body of each handler's ``record_handler``. It turns the error
taxonomy into queue behaviour:

- ``PermanentError`` (invalid message included): recorded on the file, the record succeeds,
  so the message is acknowledged and never retried;
- ``RetryableError`` or any other exception: re-raised, so Powertools reports the record in
  ``batchItemFailures`` and SQS delivers it again (then the DLQ);
- ``FileDeletedError`` (the file was deleted): the record succeeds as ``deleted``, nothing is
  recorded on the file (it has no row), and a purge of its prefixes is asked for, in case this
  invocation stored an object before it noticed.

Every invocation leaves a ``pipeline_runs`` row (best effort: a database that is down must
not turn a retry into a crash) and its metrics: pages, duration, peak and current RSS, and
``errors`` by code (figures and codes only, flushed once per invocation by the handler's
``@metrics.log_metrics``).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from shared.bootstrap import Deps, get_deps
from shared.errors import FileDeletedError, InvalidMessageError, PermanentError, PipelineError
from shared.models import MAX_MESSAGE_BYTES, MESSAGE_MODELS, PipelineRun, PurgeMessage, Stage, shell_file_id_of
from shared.observability import count_error, logger, peak_rss_kb, record_metrics, rss_kb, set_stage_dimension

# run(msg, deps, attempt) -> the pages it handled (for the ``pages`` metric), "skipped", or None
StageRun = Callable[..., int | str | None]

_LOG_KEYS = ("stage", "message_id", "shell_file_id", "attempt")


# message id -> the dependency's own Retry-After hint, for the runtime that releases the message
_retry_hints: dict[str, float] = {}


def retry_hint(message_id: str) -> float | None:
    """The Retry-After a dependency gave for this message's last failure here, if any (once)."""
    return _retry_hints.pop(message_id, None)


def parse_message(stage: Stage, body: str):
    """The stage's message model from a queue body, or ``InvalidMessageError``."""
    if len(body.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES:
        raise InvalidMessageError(f"message body is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        return MESSAGE_MODELS[stage].model_validate_json(body)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "body" for err in exc.errors()})
        raise InvalidMessageError(f"invalid {stage.value} message: bad or unknown fields {fields}") from exc


def attempt_of(record: SQSRecord) -> int:
    try:
        return max(1, int(record.attributes.approximate_receive_count or 1))
    except (TypeError, ValueError):
        return 1


def handle_record(stage: Stage, record: SQSRecord, run: StageRun, deps: Deps | None = None) -> None:
    deps = deps or get_deps()
    attempt = attempt_of(record)
    started_at = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    logger.append_keys(stage=stage.value, message_id=record.message_id, attempt=attempt)
    set_stage_dimension(stage.value)
    shell_file_id: uuid.UUID | None = None
    outcome, error_code, pages = "succeeded", None, None
    try:
        try:
            msg = parse_message(stage, record.body)
        except InvalidMessageError:
            shell_file_id = shell_file_id_of(record.body)
            raise
        shell_file_id = msg.shell_file_id
        logger.append_keys(shell_file_id=str(shell_file_id))
        note = run(msg, deps, attempt)
        if note == "skipped":
            outcome = "skipped"
        elif isinstance(note, int):
            pages = note
    except FileDeletedError:
        outcome = "deleted"
        logger.info("file deleted: the message ends here")
        if stage != Stage.PURGE and shell_file_id is not None:
            _request_purge(deps, shell_file_id)
    except PermanentError as exc:
        outcome, error_code = "failed", exc.code
        logger.warning("stage failed permanently", extra={"error_code": exc.code, "error": type(exc).__name__})
        if shell_file_id is not None:
            deps.db.mark_failed(shell_file_id, exc.code, exc.message)
    except PipelineError as exc:
        outcome, error_code = "retry", exc.code
        if getattr(exc, "retry_after_s", None):
            _retry_hints[record.message_id] = float(exc.retry_after_s)
        extra = {"error_code": exc.code, "error": type(exc).__name__}
        if getattr(exc, "setting", None):
            extra["setting"] = exc.setting  # the variable's name, never its value
        logger.warning("stage will be retried", extra=extra)
        raise
    except Exception as exc:
        outcome, error_code = "retry", "crash"
        # The exception's text may quote data; log its class only.
        logger.error("stage crashed", extra={"error_code": "crash", "error": type(exc).__name__})
        raise
    finally:
        duration_ms = (time.perf_counter() - t0) * 1000
        _record_run(deps, stage, shell_file_id, record.message_id, attempt, outcome, error_code, started_at, duration_ms)
        peak_kb, now_kb = peak_rss_kb(), rss_kb()
        record_metrics(pages, duration_ms, peak_kb, now_kb)
        if error_code is not None:
            count_error(stage.value, error_code)
        logger.info(
            "stage finished",
            extra={
                "outcome": outcome,
                "duration_ms": round(duration_ms, 1),
                "pages": pages,
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "rss_mb": round(now_kb / 1024, 1) if now_kb is not None else None,
            },
        )
        logger.remove_keys(list(_LOG_KEYS))


def _request_purge(deps: Deps, shell_file_id: uuid.UUID) -> None:
    """The sweep after the last write this invocation could have made (its writes are all done:
    the stage has returned). Best effort: the erasure's final sweep comes anyway."""
    try:
        deps.queue.send(Stage.PURGE.value, PurgeMessage(shell_file_id=shell_file_id))
    except Exception as exc:  # noqa: BLE001 - the final sweep covers it
        logger.warning("could not ask for a purge", extra={"error": type(exc).__name__})


def _record_run(deps: Deps, stage: Stage, shell_file_id, message_id, attempt, outcome, error_code, started_at, duration_ms):
    try:
        deps.db.record_run(
            PipelineRun(
                stage=stage,
                shell_file_id=shell_file_id,
                message_id=message_id,
                attempt=attempt,
                outcome=outcome,
                error_code=error_code,
                started_at=started_at,
                duration_ms=duration_ms,
                peak_rss_kb=peak_rss_kb(),
            )
        )
    except Exception as exc:  # noqa: BLE001 - the ledger must not mask the stage's own outcome
        logger.warning("could not record the stage run", extra={"error": type(exc).__name__})
