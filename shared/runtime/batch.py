"""The one Powertools batch call every handler's ``lambda_handler`` makes.

Each handler stacks the same three decorators over it, outermost first::

    @tracer.capture_lambda_handler(capture_response=False)   # X-Ray, never the response
    @metrics.log_metrics(capture_cold_start_metric=True)      # one EMF flush per invocation
    @logger.inject_lambda_context(clear_state=True)           # request id; no keys carried over
    def lambda_handler(event, context):
        return process_sqs_batch(event, context, record_handler)
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.bootstrap import get_deps
from shared.observability import logger, metrics, set_stage_dimension
from shared.runtime.records import attempt_of, retry_hint
from shared.retry import backoff_s


def process_sqs_batch(event: dict, context, record_handler: Callable[[SQSRecord], None]) -> dict:
    """Run ``record_handler`` on every record; return ``{"batchItemFailures": [...]}``.

    A record whose handler returns is acknowledged (a ``PermanentError`` is recorded on the
    file and returns); one whose handler raises (``RetryableError``, any crash) is listed, so
    SQS delivers it again and, after maxReceiveCount, moves it to the DLQ. The others in the
    batch are unaffected. When the caller is Lambda itself (not a local runtime, which
    releases its own messages), each listed record's retry is scheduled here.

    ``raise_on_entire_batch_failure=False``: a batch whose every record failed is still a
    partial response (all ids listed), not an exception whose text could quote a record.
    """
    # handlers.ocr -> "ocr": every metric of this invocation carries its stage.
    set_stage_dimension(record_handler.__module__.rsplit(".", 1)[-1])
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
    if failed and not getattr(context, "releases_failed_messages", False):
        schedule_retries(event, failed)
    metrics.add_metric(name="records", unit=MetricUnit.Count, value=len(event.get("Records") or []))
    metrics.add_metric(name="batch_item_failures", unit=MetricUnit.Count, value=len(failed))
    return response


def schedule_retries(event: dict, failed: set[str]) -> None:
    """On Lambda: make each failed record visible again after the same backoff the local
    runtimes use (2, 8, 32, 128, 512, 900 ... s by default, or the dependency's Retry-After) instead of the
    queue's visibility timeout, which is 6x the function's timeout (an hour for preprocess): a
    Postgres blip must not hold a document back for hours. Best effort: if SQS refuses, the
    visibility timeout applies as before. The receive count still grows, so a record that
    keeps failing still reaches the DLQ after MAX_RECEIVE_COUNT deliveries: the count the
    retry budget (RETRY_BUDGET_S, an hour) needs, which template.yaml's maxReceiveCount
    matches (tests/unit/test_template.py)."""
    try:
        deps = get_deps()
    except Exception as exc:  # noqa: BLE001 - the visibility timeout is the fallback
        logger.warning("could not schedule the retries", extra={"error": type(exc).__name__})
        return
    prefix = f"{deps.settings.queue_prefix}-"
    for raw in event.get("Records") or []:
        record = SQSRecord(raw)
        if record.message_id not in failed:
            continue
        physical = record.event_source_arn.rsplit(":", 1)[-1]
        queue = physical.removeprefix(prefix)
        delay = backoff_s(
            attempt_of(record), deps.settings.retry_delay_s, retry_hint(record.message_id), deps.settings.retry_max_delay_s
        )
        try:
            deps.queue.release(queue, record.receipt_handle, delay)
        except Exception as exc:  # noqa: BLE001 - the visibility timeout is the fallback
            logger.warning("could not schedule the retry", extra={"queue": queue, "error": type(exc).__name__})
