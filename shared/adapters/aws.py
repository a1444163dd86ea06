"""boto3 adapters: ``SqsQueue`` and ``S3Storage``.

The endpoint URL comes from settings, so Amazon SQS/S3, ElasticMQ, MinIO, Supabase's S3
protocol and moto's server are one code path. Vendor errors become ours here: throttling ->
``ThrottledError``, connection trouble -> ``DependencyUnavailableError``, a missing object
-> ``ObjectMissingError`` (the stage that asked says which object); always raised from the
original.
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
from pydantic import BaseModel

from shared.errors import (
    DependencyUnavailableError,
    FileTooLargeError,
    ObjectMissingError,
    PipelineError,
    StorageKeyError,
    ThrottledError,
)
from shared.ports import STAGE_QUEUES, Queue, QueueMessage, Storage, dlq_name

_THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "SlowDown",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


def translate(exc: Exception, what: str) -> PipelineError:
    """Map a botocore exception to docpipe's taxonomy."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _THROTTLING:
            return ThrottledError(f"{what}: throttled ({code})")
        if code in _NOT_FOUND:
            return ObjectMissingError(f"{what}: object not found")
        return DependencyUnavailableError(f"{what}: {code or 'client error'}")
    return DependencyUnavailableError(f"{what}: {type(exc).__name__}")


_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _client_config() -> botocore.config.Config:
    return botocore.config.Config(
        retries={"mode": "adaptive", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=20,
    )


@functools.lru_cache(maxsize=16)
def boto_client(service: str, region: str, endpoint_url: str | None):
    """One boto3 client per (service, region, endpoint) per process.

    Building a client costs 30-50 ms of CPU; the worker's fork server builds the usual ones
    before it forks, so each child starts with them ready (a client holds no connection until
    its first request, so a forked copy shares nothing live with its siblings)."""
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=_client_config())


def read_secure_parameter(name: str, region: str) -> str:
    """A SecureString from SSM Parameter Store (secrets never sit in templates or env literals)."""
    try:
        return boto_client("ssm", region, None).get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except _BOTO_ERRORS as exc:
        raise translate(exc, "read parameter") from exc


class SqsQueue(Queue):
    """SQS queues named ``{prefix}-{logical}``, e.g. ``docpipe-ocr`` and ``docpipe-ocr-dlq``."""

    def __init__(self, prefix: str, region: str, endpoint_url: str | None = None, client=None) -> None:
        self._prefix = prefix
        self._client = client or boto_client("sqs", region, endpoint_url)

    def physical_name(self, queue: str) -> str:
        return f"{self._prefix}-{queue}"

    @functools.lru_cache(maxsize=32)
    def url(self, queue: str) -> str:
        try:
            return self._client.get_queue_url(QueueName=self.physical_name(queue))["QueueUrl"]
        except _BOTO_ERRORS as exc:
            raise translate(exc, f"queue {queue}") from exc

    def ensure_queues(self, visibility_timeout_s: int, max_receive_count: int) -> dict[str, str]:
        """Create every stage queue and its DLQ (idempotent); return logical name -> URL."""
        urls: dict[str, str] = {}
        try:
            for queue in STAGE_QUEUES:
                dlq = dlq_name(queue)
                dlq_url = self._client.create_queue(
                    QueueName=self.physical_name(dlq), Attributes={"MessageRetentionPeriod": "1209600"}
                )["QueueUrl"]
                dlq_arn = self._client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"]
                redrive = f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}'
                url = self._client.create_queue(
                    QueueName=self.physical_name(queue),
                    Attributes={"VisibilityTimeout": str(visibility_timeout_s), "RedrivePolicy": redrive},
                )["QueueUrl"]
                urls[queue], urls[dlq] = url, dlq_url
        except _BOTO_ERRORS as exc:
            raise translate(exc, "create queues") from exc
        self.url.cache_clear()
        return urls

    def start_move_task(self, queue: str) -> str:
        """Move every message of a dead-letter queue back to the queues it came from with SQS's
        own message move task (StartMessageMoveTask); return the task handle. Raises
        ``NotImplementedError`` where the endpoint has no move task (moto, ElasticMQ)."""
        try:
            arn = self._client.get_queue_attributes(QueueUrl=self.url(queue), AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            return self._client.start_message_move_task(SourceArn=arn)["TaskHandle"]
        except NotImplementedError:
            raise
        except botocore.exceptions.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = exc.response.get("Error", {}).get("Code", "")
            if status >= 500 or "Unsupported" in code or "InvalidAction" in code or "NotImplemented" in code:
                raise NotImplementedError(f"the SQS endpoint has no message move task ({code or status})") from exc
            raise translate(exc, f"move task on {queue}") from exc
        except _BOTO_ERRORS as exc:
            raise translate(exc, f"move task on {queue}") from exc

    def send(self, queue: str, message: BaseModel, delay_s: int = 0) -> str:
        try:
            response = self._client.send_message(
                QueueUrl=self.url(queue), MessageBody=message.model_dump_json(), DelaySeconds=delay_s
            )
        except _BOTO_ERRORS as exc:
            raise translate(exc, f"send to {queue}") from exc
        return response["MessageId"]

    def send_raw(self, queue: str, body: str) -> str:
        """Send a body as is (redrive, tests of malformed messages)."""
        try:
            return self._client.send_message(QueueUrl=self.url(queue), MessageBody=body)["MessageId"]
        except _BOTO_ERRORS as exc:
            raise translate(exc, f"send to {queue}") from exc

    def receive(
        self, queue: str, max_messages: int = 1, wait_s: int = 0, visibility_s: int | None = None
    ) -> list[QueueMessage]:
        kwargs = {
            "QueueUrl": self.url(queue),
            "MaxNumberOfMessages": max(1, min(10, max_messages)),
            "WaitTimeSeconds": wait_s,
            "AttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
        }
        if visibility_s is not None:
            kwargs["VisibilityTimeout"] = visibility_s
        try:
            response = self._client.receive_message(**kwargs)
        except _BOTO_ERRORS as exc:
            raise translate(exc, f"receive from {queue}") from exc
        return [
            QueueMessage(
                queue=queue,
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                sent_timestamp_ms=int(m.get("Attributes", {}).get("SentTimestamp", 0)) or None,
            )
            for m in response.get("Messages", [])
        ]

    def delete(self, queue: str, receipt_handle: str) -> None:
        try:
            self._client.delete_message(QueueUrl=self.url(queue), ReceiptHandle=receipt_handle)
        except _BOTO_ERRORS as exc:
            raise translate(exc, f"delete from {queue}") from exc

    def release(self, queue: str, receipt_handle: str, delay_s: int = 0) -> None:
        try:
            self._client.change_message_visibility(
                QueueUrl=self.url(queue), ReceiptHandle=receipt_handle, VisibilityTimeout=delay_s
            )
        except _BOTO_ERRORS as exc:
            raise translate(exc, f"release on {queue}") from exc

    def depth(self, queue: str) -> tuple[int, int]:
        try:
            attrs = self._client.get_queue_attributes(
                QueueUrl=self.url(queue),
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        except _BOTO_ERRORS as exc:
            raise translate(exc, f"depth of {queue}") from exc
        return int(attrs.get("ApproximateNumberOfMessages", 0)), int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
        )


_XMLNS = re.compile(rb"(<Error)\s+xmlns=\"[^\"]*\"")


def _strip_error_namespace(response_dict, **_) -> None:
    """``before-parse`` hook. Supabase Storage's S3 endpoint (v1.70) answers errors as
    ``<Error xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Code>NoSuchKey</Code>...``;
    botocore looks for an un-namespaced ``Code`` and reads an empty one, so a missing object
    would look like any other failure. Amazon S3, MinIO and moto send no namespace: a no-op there."""
    body = response_dict.get("body")
    if response_dict.get("status_code", 200) >= 300 and isinstance(body, bytes) and b"xmlns" in body[:512]:
        response_dict["body"] = _XMLNS.sub(rb"\1", body, count=1)


def _delete_objects_as_xml(params, **_) -> None:
    """``before-call`` hook: Supabase's S3 endpoint refuses DeleteObjects (batch delete) unless
    the request says ``Content-Type: application/xml``, which botocore does not send."""
    params.setdefault("headers", {})["Content-Type"] = "application/xml"


def s3_client(region: str, endpoint_url: str | None, access_key_id: str | None = None,
              secret_access_key: str | None = None, path_style: bool = False):
    """An S3 client that also speaks to Supabase Storage's S3 protocol: its own keys when given
    (Supabase's S3 access keys are not the AWS credentials SQS uses), path-style addressing, and
    the hooks above. Without keys or path style it is the shared cached client."""
    if access_key_id or secret_access_key or path_style:
        config = _client_config().merge(botocore.config.Config(s3={"addressing_style": "path"} if path_style else {}))
        client = boto3.client(
            "s3", region_name=region, endpoint_url=endpoint_url, aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None, config=config,
        )
    else:
        client = boto_client("s3", region, endpoint_url)
    # unique_id: the cached client is shared, and registering twice must not run a hook twice.
    client.meta.events.register("before-parse.s3.*", _strip_error_namespace, unique_id="docpipe-s3-error-xmlns")
    client.meta.events.register("before-call.s3.DeleteObjects", _delete_objects_as_xml,
                                unique_id="docpipe-s3-delete-objects-xml")
    return client


class S3Storage(Storage):
    """One bucket; keys are built by docpipe from validated ids only. Amazon S3, moto, MinIO, or
    Supabase Storage's S3 protocol (``{SUPABASE_URL}/storage/v1/s3``, path style, its own keys)."""

    def __init__(
        self,
        bucket: str,
        region: str,
        endpoint_url: str | None = None,
        client=None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        path_style: bool = False,
    ) -> None:
        self._bucket = bucket
        self._client = client or s3_client(region, endpoint_url, access_key_id, secret_access_key, path_style)

    def ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except botocore.exceptions.ClientError:
            try:
                self._client.create_bucket(Bucket=self._bucket)
            except _BOTO_ERRORS as exc:
                raise translate(exc, "create bucket") from exc

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        try:
            self._client.upload_file(str(path), self._bucket, key, ExtraArgs={"ContentType": content_type})
        except (*_BOTO_ERRORS, boto3.exceptions.S3UploadFailedError) as exc:
            raise translate(exc, "upload") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        except _BOTO_ERRORS as exc:
            raise translate(exc, "put object") from exc

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except _BOTO_ERRORS as exc:
            raise translate(exc, "list") from exc
        return keys

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 keys at most
            chunk = keys[start : start + 1000]
            try:
                response = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
                )
            except _BOTO_ERRORS as exc:
                raise translate(exc, "delete") from exc
            errors = response.get("Errors") or []
            if errors:  # never the keys: they name a patient
                code = errors[0].get("Code")
                raise DependencyUnavailableError(f"delete: {len(errors)} object(s) not deleted ({code})")

    def download(self, key: str, dest: Path, max_bytes: int | None = None) -> int:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            size = int(response["ContentLength"])
            if max_bytes is not None and size > max_bytes:
                response["Body"].close()
                raise FileTooLargeError(f"file is {size} bytes; the limit is {max_bytes}")
            with dest.open("wb") as out:
                for chunk in response["Body"].iter_chunks(1024 * 1024):
                    out.write(chunk)
        except _BOTO_ERRORS as exc:
            raise translate(exc, "download") from exc
        return size


class LocalStorage(Storage):
    """Storage in a local directory: the embedded default (`docpipe process`)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def path(self, key: str) -> Path:
        target = (self._root / key).resolve()
        if not target.is_relative_to(self._root):
            raise StorageKeyError("the storage key points outside the storage root")
        return target

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(path, tmp)
        tmp.replace(target)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)

    def list_keys(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        # Files only; a writer's unfinished ``.part`` is an object's bytes too.
        return sorted(p.relative_to(self._root).as_posix() for p in base.rglob("*") if p.is_file())

    def delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            target = self.path(key)
            target.unlink(missing_ok=True)
            parent = target.parent
            while parent != self._root:  # no empty folder named for a patient or a file is left
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    def download(self, key: str, dest: Path, max_bytes: int | None = None) -> int:
        source = self.path(key)
        if not source.is_file():
            raise ObjectMissingError("object not found")
        size = source.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise FileTooLargeError(f"file is {size} bytes; the limit is {max_bytes}")
        shutil.copyfile(source, dest)
        return size
