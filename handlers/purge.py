"""Lambda entry of the purge stage (``shared.stages.purge``): a deleted file's objects removed.

Two events: SQS records (a file's purge; or a scan, which the container worker's timer sends)
and the function's schedule (EventBridge), which scans for every erasure that is due."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.bootstrap import get_deps
from shared.models import Stage
from shared.observability import logger, metrics, tracer
from shared.runtime.batch import process_sqs_batch
from shared.runtime.records import handle_record
from shared.stages import purge


def record_handler(record: SQSRecord) -> None:
    if purge.is_scan(record.body):
        purge.scan(get_deps())
    else:
        handle_record(Stage.PURGE, record, purge.run)


@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    if "Records" not in event:  # the schedule: {"detail-type": "Scheduled Event", ...}
        return {"scan": purge.scan(get_deps())}
    return process_sqs_batch(event, context, record_handler)
