"""template.yaml read as `sam` reads it and resolved as CloudFormation would (parameters,
conditions, NoValue, GetAtt of queues, dynamic references), for the local Lambda."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.runtime import lambda_template
from shared.runtime.lambda_template import TemplateError

REPO = Path(__file__).resolve().parents[2]

SMALL = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Mode: {Type: String, Default: plain, AllowedValues: [plain, fancy]}
  Name: {Type: String, AllowedPattern: "^[a-z]+$"}
  Workers: {Type: Number, Default: 3, MinValue: 2, MaxValue: 64}
Conditions:
  Fancy: !Equals [!Ref Mode, fancy]
Globals:
  Function:
    Runtime: python3.12
    CodeUri: .
    Environment:
      Variables:
        FROM_GLOBALS: !Sub "${Name}-global"
        ONLY_WHEN_FANCY: !If [Fancy, "yes", !Ref "AWS::NoValue"]
Resources:
  Dlq:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !Sub "${Name}-dlq"}
  Work:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${Name}-work"
      VisibilityTimeout: 45
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 4}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      MemorySize: 300
      Environment:
        Variables:
          OWN: !GetAtt Work.QueueName
          PASSWORD: "{{resolve:ssm-secure:/app/password}}"
          TOKEN: !Sub "{{resolve:secretsmanager:${Name}/token:SecretString:value}}"
      Events:
        Q:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 7
            MaximumBatchingWindowInSeconds: 2
            ScalingConfig: {MaximumConcurrency: !Ref Workers}
"""


@pytest.fixture
def small(tmp_path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(SMALL)
    return path


def resolver(service, reference):
    return f"<{service}|{reference}>"


def test_globals_conditions_no_value_get_att_and_dynamic_references(small):
    t = lambda_template.load(small, {"Name": "app"}, resolve_reference=resolver)
    fn = t.functions["Fn"]
    assert fn.environment == {
        "FROM_GLOBALS": "app-global",  # Globals merged, Fn::Sub of a parameter
        "OWN": "app-work",  # Fn::GetAtt of a queue
        "PASSWORD": "<ssm-secure|/app/password>",
        "TOKEN": "<secretsmanager|app/token:SecretString:value>",
    }  # ONLY_WHEN_FANCY is AWS::NoValue: gone, as CloudFormation drops it
    assert (fn.memory_mb, fn.timeout_s, fn.code_dir) == (300, 3.0, small.parent)
    (event,) = fn.events
    assert (event.queue_logical_id, event.batch_size, event.batching_window_s, event.maximum_concurrency) == (
        "Work", 7, 2.0, 3)
    assert not event.report_batch_item_failures
    work = t.queues["Work"]
    assert (work.name, work.visibility_timeout_s, work.dead_letter_target, work.max_receive_count) == (
        "app-work", 45, "Dlq", 4)
    assert t.conditions == {"Fancy": False}
    fancy = lambda_template.load(small, {"Name": "app", "Mode": "fancy"}, resolve_reference=resolver)
    assert fancy.functions["Fn"].environment["ONLY_WHEN_FANCY"] == "yes" and fancy.conditions == {"Fancy": True}


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({}, "Name has no default"),
        ({"Name": "App"}, "does not match"),
        ({"Name": "app", "Mode": "odd"}, "is not one of"),
        ({"Name": "app", "Workers": "1"}, "below its MinValue"),
        ({"Name": "app", "Workers": "65"}, "above its MaxValue"),
        ({"Name": "app", "Nope": "x"}, "not in the template"),
    ],
)
def test_parameters_are_checked_as_cloudformation_checks_them(small, overrides, says):
    with pytest.raises(TemplateError, match=says):
        lambda_template.load(small, overrides, resolve_reference=resolver)


def test_a_dynamic_reference_without_a_resolver_is_an_error(small):
    with pytest.raises(TemplateError, match="dynamic reference"):
        lambda_template.load(small, {"Name": "app"})


def test_the_real_template_in_the_production_configuration():
    t = lambda_template.load(
        REPO / "template.yaml",
        {"StorageBucketName": "b", "EncounterProvider": "openai", "StorageBackend": "supabase",
         "SupabaseUrl": "https://x.supabase.co"},
    )
    assert [q.name for q in t.queues.values()] == [
        "docpipe-preprocess", "docpipe-ocr", "docpipe-discover", "docpipe-purge",
        "docpipe-preprocess-dlq", "docpipe-ocr-dlq", "docpipe-discover-dlq", "docpipe-purge-dlq",
        "docpipe-unrecorded-dlq",
    ]
    assert t.queues["PreprocessDLQ"].dead_letter_target == "UnrecordedDeadLetters"
    discover = t.functions["DiscoverFunction"]
    assert discover.environment["OPENAI_API_KEY_SECRET"] == "docpipe/openai-api-key"
    assert "OPENAI_API_KEY_SECRET" not in t.functions["OcrFunction"].environment
    assert t.functions["OcrFunction"].environment["SUPABASE_URL"] == "https://x.supabase.co"
    assert {e.queue_logical_id for e in t.functions["FailuresFunction"].events} == {
        "PreprocessDLQ", "OcrDLQ", "DiscoverDLQ", "PurgeDLQ"}
    purge = t.functions["PurgeFunction"]
    assert [(e.queue_logical_id, e.batch_size) for e in purge.events] == [("PurgeQueue", 5)]
    assert [(s.name, s.rate_s, s.enabled) for s in purge.schedules] == [("Scan", 60, True)]
    assert t.functions["PreprocessFunction"].code_dir == (REPO / "deploy" / "lambda").resolve()


@pytest.mark.parametrize(("expression", "seconds"), [("rate(1 minute)", 60), ("rate(5 minutes)", 300),
                                                      ("rate(2 hours)", 7200), ("rate(1 day)", 86400)])
def test_rate_schedules_are_read_as_eventbridge_reads_them(expression, seconds):
    assert lambda_template._schedule("F", "S", {"Schedule": expression}).rate_s == seconds


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "cron(0 * * * ? *)"])
def test_other_schedules_are_a_template_error(expression):
    with pytest.raises(TemplateError):
        lambda_template._schedule("F", "S", {"Schedule": expression})
