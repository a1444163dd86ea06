"""Lambda entry of the failures stage (``shared.stages.failures``): the dead-letter queues."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.bootstrap import get_deps
from shared.observability import logger, metrics, tracer
from shared.runtime.batch import process_sqs_batch
from shared.stages import failures


def record_handler(record: SQSRecord) -> None:
    failures.run(get_deps(), record.event_source_arn or "", record.body, record.message_id)


@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    return process_sqs_batch(event, context, record_handler)
