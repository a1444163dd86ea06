"""template.yaml read as CloudFormation: what the Lambda deployment promises, checked."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from shared.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class _Tag:
    """A CloudFormation intrinsic (!Ref, !GetAtt, !Sub, !If, ...) kept as data."""

    def __init__(self, name: str, value) -> None:
        self.name, self.value = name, value

    def __repr__(self) -> str:
        return f"!{self.name} {self.value!r}"


class CloudFormationLoader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tag:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return _Tag(suffix, value)


CloudFormationLoader.add_multi_constructor("!", _construct)


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=CloudFormationLoader)


def resources(template, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def functions(template) -> dict[str, dict]:
    return resources(template, "AWS::Serverless::Function")


def sqs_events(function: dict) -> list[dict]:
    return [e["Properties"] for e in function["Properties"].get("Events", {}).values() if e["Type"] == "SQS"]


def queue_of(event: dict) -> str:
    ref = event["Queue"]
    assert isinstance(ref, _Tag) and ref.name == "GetAtt" and ref.value[1] == "Arn", ref
    return ref.value[0]


def prop(template, function: dict, name: str):
    return function["Properties"].get(name, template["Globals"]["Function"].get(name))


def literal_statements(function: dict) -> list[dict]:
    """Policy statements, with !If [cond, statement, NoValue] unwrapped to the statement."""
    out = []
    for policy in function["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []):
            if isinstance(statement, _Tag) and statement.name == "If":
                statement = statement.value[1]
            out.append(statement)
    return out


# --- item 2: batch item failures, DLQs, visibility ------------------------------------


def test_every_function_with_an_sqs_event_reports_batch_item_failures(template):
    events = [e for f in functions(template).values() for e in sqs_events(f)]
    assert len(events) >= 6  # three stages, three DLQs
    for event in events:
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert 1 <= event["BatchSize"] <= 10
        assert "MaximumBatchingWindowInSeconds" in event
        assert event["ScalingConfig"]["MaximumConcurrency"]


def test_every_queue_has_a_dead_letter_queue(template):
    queues = resources(template, "AWS::SQS::Queue")
    consumed = {queue_of(e) for f in functions(template).values() for e in sqs_events(f)}
    alarmed = {
        a["Properties"]["Dimensions"][0]["Value"].value[0]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    for name, queue in queues.items():
        redrive = queue["Properties"].get("RedrivePolicy")
        if redrive is None:
            # The end of the line: no function consumes it (so nothing retries it forever),
            # and a person is told the moment anything lands there.
            assert name not in consumed, f"{name} is consumed but has no DLQ"
            assert name in alarmed, f"{name} has no DLQ and no depth alarm"
            assert queue["Properties"]["MessageRetentionPeriod"] == 1209600
            continue
        target = redrive["deadLetterTargetArn"]
        assert target.name == "GetAtt" and target.value[0] in queues and target.value[0] != name
        assert 1 <= redrive["maxReceiveCount"] <= 10
    # Every stage queue and every stage DLQ is consumed by a function.
    stages = ("Preprocess", "Ocr", "Discover", "Purge")
    assert {f"{s}{suffix}" for s in stages for suffix in ("Queue", "DLQ")} <= consumed


def test_visibility_is_at_least_six_times_the_functions_timeout(template):
    queues = resources(template, "AWS::SQS::Queue")
    for name, function in functions(template).items():
        timeout = prop(template, function, "Timeout")
        assert timeout, f"{name} has no Timeout"
        for event in sqs_events(function):
            visibility = queues[queue_of(event)]["Properties"]["VisibilityTimeout"]
            needed = 6 * timeout + event["MaximumBatchingWindowInSeconds"]
            assert visibility >= needed, f"{queue_of(event)}: {visibility} s < 6 x {timeout} s + window"


# --- the rest of the template ---------------------------------------------------


def test_runtime_handlers_and_sizes(template):
    assert template["Globals"]["Function"]["Runtime"] == "python3.12"
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    handlers = set()
    for name, function in functions(template).items():
        module, attr = function["Properties"]["Handler"].rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), attr)), name
        handlers.add(module)
        assert function["Properties"]["MemorySize"], f"{name}: MemorySize per stage"
        assert function["Properties"]["Timeout"], f"{name}: Timeout per stage"
    assert handlers == {
        "handlers.preprocess", "handlers.ocr", "handlers.discover", "handlers.purge", "handlers.failures"}


def test_concurrency_caps_for_textract_and_the_llm(template):
    caps = {name: sqs_events(f)[0]["ScalingConfig"]["MaximumConcurrency"] for name, f in functions(template).items()}
    assert (caps["OcrFunction"].name, caps["OcrFunction"].value) == ("Ref", "OcrMaxConcurrency")
    assert (caps["DiscoverFunction"].name, caps["DiscoverFunction"].value) == ("Ref", "DiscoverMaxConcurrency")
    assert template["Parameters"]["OcrMaxConcurrency"]["Default"] <= 10  # Textract's 10 TPS


def test_environment_is_named_as_the_settings_model_names_it(template):
    fields = {name.upper() for name in Settings.model_fields}
    blocks = [template["Globals"]["Function"]["Environment"]["Variables"]]
    blocks += [f["Properties"].get("Environment", {}).get("Variables", {}) for f in functions(template).values()]
    names = {name for block in blocks for name in block}
    assert names, "no environment"
    assert {n for n in names if not n.startswith("POWERTOOLS_")} <= fields
    assert template["Globals"]["Function"]["Environment"]["Variables"]["OCR_ENGINE"] == "textract"


def test_secrets_are_read_at_run_time_never_in_the_environment(template):
    # A resolved environment variable is readable with GetFunctionConfiguration: the functions
    # get where a secret is kept (an SSM parameter, a Secrets Manager secret), never its value.
    secretish = re.compile(r"(KEY|PASSWORD|TOKEN|DATABASE_URL)$")
    for block in [template["Globals"]["Function"]["Environment"]["Variables"]] + [
        f["Properties"].get("Environment", {}).get("Variables", {}) for f in functions(template).values()
    ]:
        for name, value in block.items():
            assert not secretish.search(name), f"{name}: a secret's value in the environment"
            assert "resolve:" not in repr(value), f"{name}: a dynamic reference resolves the value into the environment"
            if name.endswith(("_SECRET", "_PARAMETER")):
                assert "Ref" in repr(value) and "Parameter" in repr(value) or "Secret" in repr(value), f"{name}: {value!r}"
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert "DATABASE_URL" not in env and env["DATABASE_URL_PARAMETER"].value == "DatabaseUrlParameter"
    discover = functions(template)["DiscoverFunction"]["Properties"]["Environment"]["Variables"]
    assert "OpenAiApiKeySecretName" in repr(discover["OPENAI_API_KEY_SECRET"])
    for name, parameter in template["Parameters"].items():
        if secretish.search(name.upper()):
            pytest.fail(f"parameter {name} would carry a secret as a literal")


def test_least_privilege(template):
    for name, function in functions(template).items():
        for statement in literal_statements(function):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in a for a in actions), f"{name}: wildcard action {actions}"
            res = statement["Resource"]
            resources_ = res if isinstance(res, list) else [res]
            for resource in resources_:
                if resource == "*":
                    # Textract has no resource-level permissions; AnalyzeDocument only with TEXTRACT_FEATURES.
                    assert actions in (["textract:DetectDocumentText"], ["textract:AnalyzeDocument"]), f"{name}: {actions} on *"
                elif isinstance(resource, _Tag) and resource.name == "Sub" and ":s3:::" in resource.value:
                    # The bucket's prefixes only, or the bucket itself for a prefix-bound list.
                    if resource.value.endswith("}"):
                        assert actions == ["s3:ListBucket"] and "Condition" in statement
                    else:
                        assert re.search(r"\}/((originals|processed)/\*|processed/\*/bundle\.json)$", resource.value), \
                            resource.value
    analyze = [s for s in functions(template)["OcrFunction"]["Properties"]["Policies"][0]["Statement"]
               if isinstance(s, _Tag) and s.name == "If" and "textract:AnalyzeDocument" in repr(s.value[1])]
    assert [s.value[0] for s in analyze] == ["AnalyzeDocuments"]  # only when TEXTRACT_FEATURES is set
    ocr_actions = {a for s in literal_statements(functions(template)["OcrFunction"]) for a in _actions(s)}
    assert "textract:DetectDocumentText" in ocr_actions and "s3:PutObject" not in ocr_actions
    # discover reads no object; with FhirOutput=storage (only then) it writes the Bundle, and only there
    discover = functions(template)["DiscoverFunction"]["Properties"]["Policies"][0]["Statement"]
    discover_actions = {a for s in literal_statements(functions(template)["DiscoverFunction"]) for a in _actions(s)}
    assert not any(a.startswith("textract:") for a in discover_actions)
    s3 = [s for s in discover if "s3:" in repr(s)]
    assert len(s3) == 1 and s3[0].name == "If" and s3[0].value[0] == "StoreFhirBundlesInS3"
    assert _actions(s3[0].value[1]) == ["s3:PutObject"]
    assert s3[0].value[1]["Resource"].value.endswith("}/processed/*/bundle.json")
    conditions = template["Conditions"]
    assert repr(conditions["StoreFhirBundles"]) == "!Equals [!Ref 'FhirOutput', 'storage']"
    assert template["Parameters"]["FhirOutput"]["Default"] == "none"
    # Erasure: only the purge function deletes objects, and it reads none
    deleters = {name for name, f in functions(template).items()
                if "s3:DeleteObject" in {a for s in literal_statements(f) for a in _actions(s)}}
    assert deleters == {"PurgeFunction"}
    purge_actions = {a for s in literal_statements(functions(template)["PurgeFunction"]) for a in _actions(s)}
    assert not {"s3:GetObject", "s3:PutObject"} & purge_actions


def test_each_function_may_schedule_retries_on_its_own_queues_only(template):
    # shared/runtime/batch.py sets a failed record's visibility to the backoff.
    for name, function in functions(template).items():
        consumed = {queue_of(event) for event in sqs_events(function)}
        granted = set()
        for statement in literal_statements(function):
            if "sqs:ChangeMessageVisibility" in _actions(statement):
                res = statement["Resource"]
                granted |= {r.value[0] for r in (res if isinstance(res, list) else [res])}
        assert granted == consumed, f"{name}: may change visibility on {granted}, consumes {consumed}"


def _actions(statement) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_alarms_on_dlq_depth_and_oldest_message_age(template):
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    by_metric: dict[str, set[str]] = {}
    for alarm in alarms:
        p = alarm["Properties"]
        assert p["Namespace"] == "AWS/SQS"
        by_metric.setdefault(p["MetricName"], set()).add(p["Dimensions"][0]["Value"].value[0])
    dlqs = {n for n in resources(template, "AWS::SQS::Queue") if n.endswith("DLQ") or "DeadLetters" in n}
    assert dlqs <= by_metric["ApproximateNumberOfMessagesVisible"]
    assert {"PreprocessQueue", "OcrQueue", "DiscoverQueue", "PurgeQueue"} <= by_metric["ApproximateAgeOfOldestMessage"]


# --- packaging: what `sam build` zips -----------------------------------------------------


def test_the_zip_holds_the_handlers_and_shared_only():
    code = ROOT / "deploy" / "lambda"
    assert {p.name for p in code.iterdir()} == {"handlers", "shared", "requirements.txt"}
    assert (code / "handlers").resolve() == ROOT / "handlers"
    assert (code / "shared").resolve() == ROOT / "shared"


def test_lambda_requirements_are_pyprojects_runtime_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "deploy" / "lambda" / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == deps, "run `make lambda-requirements`"
    assert any(d.startswith("aws-lambda-powertools[tracer]") for d in deps)
    assert any(d.startswith("supabase") for d in deps)


def test_stage_queues_deliver_for_the_whole_retry_budget(template):
    """Each stage queue's maxReceiveCount is the count the settings derive from the retry
    budget (RETRY_BUDGET_S over the backoff schedule, the same on Lambda and in the container),
    so a dependency down for the budget (an hour) fails nothing; and when scheduling the retry
    fails, the queue's own visibility timeout alone spaces the deliveries at least as far."""
    settings = Settings()
    queues = resources(template, "AWS::SQS::Queue")
    stage_queues = {name: q for name, q in queues.items()
                    if name in ("PreprocessQueue", "OcrQueue", "DiscoverQueue", "PurgeQueue")}
    assert len(stage_queues) == 4
    for name, queue in stage_queues.items():
        count = queue["Properties"]["RedrivePolicy"]["maxReceiveCount"]
        assert count == settings.max_receive_count, name
        assert (count - 1) * queue["Properties"]["VisibilityTimeout"] >= settings.retry_budget_s, name
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert "MAX_RECEIVE_COUNT" not in env and "RETRY_DELAY_S" not in env  # defaults: the ones checked here


def test_the_purge_function_also_runs_on_a_schedule(template):
    # An app's plain DELETE is recorded by a trigger, not a message: a scheduled scan purges it.
    events = functions(template)["PurgeFunction"]["Properties"]["Events"]
    schedules = [e["Properties"]["Schedule"] for e in events.values() if e["Type"] == "Schedule"]
    assert schedules == ["rate(1 minute)"]
    # The final sweep waits out the longest function (ERASURE_FINAL_SWEEP_S's default)
    longest = max(prop(template, f, "Timeout") for f in functions(template).values())
    assert Settings().erasure_final_sweep_s > longest
