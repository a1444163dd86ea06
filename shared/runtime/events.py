"""Lambda-shaped SQS events and contexts, so local runtimes call ``lambda_handler`` exactly as
Lambda's SQS event source mapping would."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid

from shared.ports import QueueMessage

ACCOUNT = "000000000000"


def queue_arn(region: str, physical_name: str) -> str:
    return f"arn:aws:sqs:{region}:{ACCOUNT}:{physical_name}"


def sqs_event(messages: list[QueueMessage], arn: str, region: str) -> dict:
    return {
        "Records": [
            {
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": str(m.receive_count),
                    "SentTimestamp": str(m.sent_timestamp_ms or int(time.time() * 1000)),
                    "SenderId": ACCOUNT,
                    "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m.body.encode()).hexdigest(),  # noqa: S324 - SQS's own checksum
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


@dataclasses.dataclass
class LocalContext:
    """The parts of Lambda's context object that handlers and Powertools read."""

    function_name: str = "docpipe-local"
    memory_limit_in_mb: int = 1024
    timeout_s: float = 900.0
    aws_request_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/docpipe/local"
    log_stream_name: str = "local"
    # True: the local runtime that made the event deletes what succeeded and releases what
    # failed itself, with backoff. Lambda's context has no such attribute: there the handler
    # schedules a failed record's retry itself (shared.runtime.batch).
    releases_failed_messages: bool = True
    _deadline: float = dataclasses.field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
