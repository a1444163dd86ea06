"""Lambda entry of the preprocess stage (``shared.stages.preprocess``): one record, parsed and run."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.models import Stage
from shared.observability import logger, metrics, tracer
from shared.runtime.batch import process_sqs_batch
from shared.runtime.records import handle_record
from shared.stages import preprocess


def record_handler(record: SQSRecord) -> None:
    handle_record(Stage.PREPROCESS, record, preprocess.run)


@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    return process_sqs_batch(event, context, record_handler)
