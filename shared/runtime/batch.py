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

from shared.observability import metrics, set_stage_dimension


def process_sqs_batch(event: dict, context, record_handler: Callable[[SQSRecord], None]) -> dict:
    """Run ``record_handler`` on every record; return ``{"batchItemFailures": [...]}``.

    A record whose handler returns is acknowledged (a ``PermanentError`` is recorded on the
    file and returns); one whose handler raises (``RetryableError``, any crash) is listed, so
    SQS delivers it again and, after maxReceiveCount, moves it to the DLQ. The others in the
    batch are unaffected.

    ``raise_on_entire_batch_failure=False``: a batch whose every record failed is still a
    partial response (all ids listed), not an exception whose text could quote a record.
    """
    # handlers.ocr -> "ocr": every metric of this invocation carries its stage.
    set_stage_dimension(record_handler.__module__.rsplit(".", 1)[-1])
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    metrics.add_metric(name="records", unit=MetricUnit.Count, value=len(event.get("Records") or []))
    metrics.add_metric(
        name="batch_item_failures", unit=MetricUnit.Count, value=len(response.get("batchItemFailures", []))
    )
    return response
