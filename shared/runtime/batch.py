"""The one Powertools batch call every handler's ``lambda_handler`` makes."""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


def process_sqs_batch(event: dict, context, record_handler: Callable[[SQSRecord], None]) -> dict:
    """Run ``record_handler`` on every record; return ``{"batchItemFailures": [...]}``.

    ``raise_on_entire_batch_failure=False``: a batch whose every record failed is still a
    partial response (all ids listed), not an exception whose text could quote a record.
    """
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
