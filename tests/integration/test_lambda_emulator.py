"""The local Lambda's semantics, each on its own: a partial batch, a timeout returning the whole
batch, a MemorySize kill, cold then warm, frozen between invocations, a frozen environment
whose database connection died. Small templates written here run the handlers in
tests/lambda_functions/app.py behind moto's SQS."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from shared.runtime import lambda_template
from shared.runtime.lambda_emulator import LambdaEmulator

CODE = Path(__file__).resolve().parents[1] / "lambda_functions"

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Prefix: {{Type: String}}
  SeenFile: {{Type: String}}
  DatabaseUrl: {{Type: String, Default: ""}}
Globals:
  Function:
    Runtime: python3.12
    CodeUri: {code}
    Timeout: 20
    MemorySize: 256
    Environment:
      Variables:
        SEEN_FILE: !Ref SeenFile
        TEST_DATABASE_URL: !Ref DatabaseUrl
        GREETING: !Sub "hello-${{Prefix}}"
Resources:
  PartialQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${{Prefix}}-partial"
      VisibilityTimeout: 2
      RedrivePolicy: {{deadLetterTargetArn: !GetAtt PartialDLQ.Arn, maxReceiveCount: 2}}
  PartialDLQ:
    Type: AWS::SQS::Queue
    Properties: {{QueueName: !Sub "${{Prefix}}-partial-dlq"}}
  SlowQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${{Prefix}}-slow"
      VisibilityTimeout: 3
      RedrivePolicy: {{deadLetterTargetArn: !GetAtt SlowDLQ.Arn, maxReceiveCount: 2}}
  SlowDLQ:
    Type: AWS::SQS::Queue
    Properties: {{QueueName: !Sub "${{Prefix}}-slow-dlq"}}
  PartialFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.partial
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt PartialQueue.Arn
            BatchSize: 5
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig: {{MaximumConcurrency: 2}}
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.slow
      Timeout: 2
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt SlowQueue.Arn
            BatchSize: 2
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig: {{MaximumConcurrency: 2}}
  HogFunction:
    Type: AWS::Serverless::Function
    Properties: {{Handler: app.hog, MemorySize: 200}}
  WhoFunction:
    Type: AWS::Serverless::Function
    Properties: {{Handler: app.whoami, MemorySize: 320, Timeout: 7}}
  DatabaseFunction:
    Type: AWS::Serverless::Function
    Properties: {{Handler: app.database}}
"""


@pytest.fixture
def emulator(local_stack, tmp_path):
    from shared.adapters.aws import boto_client

    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE.format(code=CODE))
    prefix = f"e{uuid.uuid4().hex[:8]}"
    seen = tmp_path / "seen.jsonl"
    seen.touch()
    template = lambda_template.load(
        path, {"Prefix": prefix, "SeenFile": str(seen), "DatabaseUrl": local_stack.database_url}
    )
    sqs = boto_client("sqs", "us-east-1", local_stack.endpoint_url)
    local_env = {"AWS_ENDPOINT_URL": local_stack.endpoint_url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    emu = LambdaEmulator(template, sqs, local_env, logs_dir=tmp_path / "logs")
    emu.seen = seen
    emu.create_queues()
    yield emu
    emu.stop(wait_s=5)


def seen(emu) -> list[dict]:
    return [json.loads(line) for line in emu.seen.read_text().splitlines()]


def send(emu, queue: str, *bodies: str) -> None:
    for body in bodies:
        emu.sqs.send_message(QueueUrl=emu.queue_urls[queue], MessageBody=body)


def drain(emu, queue: str) -> list[str]:
    bodies = []
    while True:
        got = emu.sqs.receive_message(QueueUrl=emu.queue_urls[queue], MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if not got.get("Messages"):
            return bodies
        bodies += [m["Body"] for m in got["Messages"]]


def depth(emu, queue: str) -> int:
    attrs = emu.sqs.get_queue_attributes(
        QueueUrl=emu.queue_urls[queue],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_for(condition, timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def record_event(*bodies: str) -> dict:
    return {"Records": [{"messageId": str(uuid.uuid4()), "body": b, "attributes": {}} for b in bodies]}


def test_a_partial_batch_keeps_the_listed_records_and_deletes_the_rest(emulator):
    # Given five messages, two of which the function will list as failed
    send(emulator, "PartialQueue", "ok-1", "fail-1", "ok-2", "fail-2", "ok-3")
    emulator.start()
    # When the mapping has delivered them until the queue's redrive policy moves what failed on
    wait_for(lambda: depth(emulator, "PartialQueue") == 0 and depth(emulator, "PartialDLQ") == 2)
    # Then each success was delivered once and deleted; each listed failure came back after
    # the visibility timeout and, after maxReceiveCount (2) deliveries, reached the DLQ
    counts: dict[str, int] = {}
    for entry in seen(emulator):
        counts[entry["body"]] = counts.get(entry["body"], 0) + 1
    assert counts == {"ok-1": 1, "ok-2": 1, "ok-3": 1, "fail-1": 2, "fail-2": 2}
    assert sorted(drain(emulator, "PartialDLQ")) == ["fail-1", "fail-2"]
    batches = [i for i in emulator.invocations if i.function == "PartialFunction"]
    assert max(i.records for i in batches) > 1  # the batching window gathered several records


def test_a_timeout_returns_the_whole_batch_and_discards_the_environment(emulator):
    # Given a batch whose slowest record outlasts the function's 2 s Timeout
    send(emulator, "SlowQueue", "0", "30")
    emulator.start()
    wait_for(lambda: depth(emulator, "SlowQueue") == 0 and depth(emulator, "SlowDLQ") == 2, timeout_s=60)
    # Then nothing of the timed-out batch was deleted: the quick record came back with it
    # (two deliveries each), both ended in the DLQ, and every timed-out environment was killed
    counts: dict[str, int] = {}
    for entry in seen(emulator):
        counts[entry["body"]] = counts.get(entry["body"], 0) + 1
    assert counts == {"0": 2, "30": 2}
    timed_out = [i for i in emulator.invocations if i.function == "SlowFunction"]
    assert [i.status for i in timed_out] == ["timeout", "timeout"] and all(i.duration_ms == 2000 for i in timed_out)
    assert all(i.cold for i in timed_out)  # a timed-out environment is never reused
    assert emulator.functions["SlowFunction"].environments() == []


def test_memory_size_kills_the_environment(emulator):
    hog = _function(emulator, "HogFunction")
    small = hog.invoke(record_event("10"))
    assert small.status == "ok" and small.response["held_mb"] == 10
    # An invocation that holds more than MemorySize (200 MB) is killed, its environment discarded
    big = hog.invoke(record_event("400"))
    assert big.status == "out_of_memory" and big.error == "Runtime.OutOfMemory"
    assert 200 < big.max_memory_mb < 400
    assert hog.environments() == []
    after = hog.invoke(record_event("10"))
    assert after.status == "ok" and after.cold


def test_cold_then_warm_frozen_between_invocations_with_the_template_environment(emulator):
    who = _function(emulator, "WhoFunction")
    first = who.invoke(record_event("x"))
    (environment,) = who.environments()
    assert first.cold and first.init_ms is not None and first.init_ms > 0
    assert environment.state() == "T"  # frozen: SIGSTOP between invocations
    second = who.invoke(record_event("x"))
    assert not second.cold and second.init_ms is None
    assert second.response["pid"] == first.response["pid"] and second.response["invocation"] == 2
    assert environment.state() == "T"
    # The environment is the template's (Globals plus the function's own), what Lambda sets,
    # and the local endpoints: nothing of this process's own environment.
    names = set(first.response["environment"])
    assert {"SEEN_FILE", "GREETING", "TEST_DATABASE_URL", "AWS_LAMBDA_FUNCTION_NAME", "AWS_ENDPOINT_URL"} <= names
    # (_X_AMZN_TRACE_ID: set per invocation as Lambda does; LC_CTYPE: Python's own locale coercion)
    expected = set(emulator.function_env(emulator.template.functions["WhoFunction"]))
    assert names - {"_X_AMZN_TRACE_ID", "LC_CTYPE"} == expected
    assert "PYTEST_CURRENT_TEST" in os.environ and "PYTEST_CURRENT_TEST" not in names and "HOME" not in names
    assert first.response["memory_limit_in_mb"] == 320 and 0 < first.response["remaining_ms"] <= 7000
    assert "REPORT RequestId: " in first.report_line() and "Init Duration" in first.report_line()
    assert "Init Duration" not in second.report_line()


def test_a_frozen_environment_whose_database_connection_died_succeeds_without_a_retry(emulator, local_stack):
    db = _function(emulator, "DatabaseFunction")
    first = db.invoke(record_event("x"))
    assert first.status == "ok", first
    # While the environment is frozen, the server ends its connection (a pooler or NAT would)
    with psycopg.connect(local_stack.database_url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", (first.response["backend_pid"],))
    # Its next invocation still succeeds, on the first delivery, on a new connection
    second = db.invoke(record_event("x"))
    assert second.status == "ok", second
    assert second.response["backend_pid"] != first.response["backend_pid"]
    assert second.response["reconnects"] == 1


def test_a_pgbouncer_restart_between_invocations_costs_no_delivery(emulator, pgbouncer, local_stack, tmp_path):
    # Through the pooler (Supabase's 6543), the client's own connection is what a restart drops
    from shared.runtime.lambda_emulator import Function

    spec = emulator.template.functions["DatabaseFunction"]
    spec = type(spec)(**{**spec.__dict__, "environment": {**spec.environment, "TEST_DATABASE_URL": pgbouncer.url}})
    db = Function(spec, emulator.function_env(spec), open(tmp_path / "db.log", "a"), emulator)
    try:
        first = db.invoke(record_event("x"))
        assert first.status == "ok", first
        # The server side ends (pg_terminate_backend of the pooler's server connection) ...
        with psycopg.connect(local_stack.database_url, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", (first.response["backend_pid"],))
        second = db.invoke(record_event("x"))
        assert second.status == "ok", second
        # ... then the pooler itself restarts: the function's own connection is gone
        pgbouncer.restart()
        third = db.invoke(record_event("x"))
        assert third.status == "ok", third
        assert third.response["reconnects"] >= 1
    finally:
        db.shutdown()


def _function(emulator, logical_id):
    from shared.runtime.lambda_emulator import Function

    spec = emulator.template.functions[logical_id]
    function = Function(spec, emulator.function_env(spec), emulator._log_for(logical_id), emulator)
    emulator.functions[logical_id] = function
    return function
