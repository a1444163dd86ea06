"""``template.yaml`` as CloudFormation would deploy it, for the local Lambda emulator.

SAM CLI does the reading: its YAML loader (the short ``!Ref`` / ``!Sub`` forms), the SAM
translator's plugins (``Globals`` merged into every function, as the transform does) and its
intrinsic resolver (``Ref``, ``Fn::Sub``, ``Fn::GetAtt``, ``Fn::If`` over ``Conditions``,
``Fn::Join``, ...). We use them rather than a new evaluator so the emulator reads a template
the way ``sam`` does; two things SAM CLI leaves to CloudFormation are done here:

- ``AWS::NoValue``: SAM CLI's resolver refuses it as a branch of ``Fn::If`` (it evaluates
  both branches); it is swapped for a marker before resolving and the property dropped after,
  which is what CloudFormation does with it.
- dynamic references (``{{resolve:ssm:NAME}}``, ``{{resolve:ssm-secure:NAME}}``,
  ``{{resolve:secretsmanager:ID:SecretString[:KEY]}}``), which CloudFormation resolves at deploy
  time: here against the local SSM and Secrets Manager (``resolve_dynamic_references``).

Queues' ``Fn::GetAtt`` (Arn, QueueName, QueueUrl) come from the names the template gives them;
the account is Lambda-local's (``ACCOUNT``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

ACCOUNT = "123456789012"
_NO_VALUE = "\x00docpipe:AWS::NoValue"
_DYNAMIC = re.compile(r"\{\{resolve:(ssm|ssm-secure|secretsmanager):([^}]+)\}\}")


class TemplateError(ValueError):
    """The template cannot be run as given (a missing parameter, an unsupported property)."""


@dataclasses.dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    name: str
    visibility_timeout_s: int
    retention_s: int
    dead_letter_target: str | None  # logical id of its DLQ
    max_receive_count: int | None

    def attributes(self, arn_of: Callable[[str], str]) -> dict[str, str]:
        attrs = {"VisibilityTimeout": str(self.visibility_timeout_s), "MessageRetentionPeriod": str(self.retention_s)}
        if self.dead_letter_target:
            attrs["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arn_of(self.dead_letter_target), "maxReceiveCount": self.max_receive_count}
            )
        return attrs


@dataclasses.dataclass(frozen=True)
class SqsEventSpec:
    name: str
    queue_logical_id: str
    batch_size: int
    batching_window_s: float
    report_batch_item_failures: bool
    maximum_concurrency: int | None


@dataclasses.dataclass(frozen=True)
class ScheduleEventSpec:
    """A ``Schedule`` event (an EventBridge rule that invokes the function): ``rate(...)`` only."""

    name: str
    rate_s: float
    enabled: bool


_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str
    runtime: str
    code_dir: Path
    memory_mb: int
    timeout_s: float
    environment: dict[str, str]  # after dynamic references are resolved
    events: tuple[SqsEventSpec, ...]
    schedules: tuple[ScheduleEventSpec, ...] = ()


@dataclasses.dataclass
class LocalTemplate:
    path: Path
    parameters: dict[str, str]
    conditions: dict[str, bool]
    queues: dict[str, QueueSpec]
    functions: dict[str, FunctionSpec]
    region: str

    def queue_arn(self, logical_id: str) -> str:
        return f"arn:aws:sqs:{self.region}:{ACCOUNT}:{self.queues[logical_id].name}"

    def dlq_chain(self) -> list[tuple[str, str | None, int | None]]:
        """(queue, its DLQ, maxReceiveCount) for every queue, by physical name."""
        return [
            (q.name, self.queues[q.dead_letter_target].name if q.dead_letter_target else None, q.max_receive_count)
            for q in self.queues.values()
        ]


def load(
    path: Path,
    overrides: dict[str, str] | None = None,
    region: str = "us-east-1",
    resolve_reference: Callable[[str, str], str] | None = None,
) -> LocalTemplate:
    """Read and resolve ``path`` with ``overrides`` (as ``sam deploy --parameter-overrides``).

    ``resolve_reference(service, reference)`` answers a dynamic reference; without it, one in a
    function's environment is a ``TemplateError``.
    """
    from samcli.lib.intrinsic_resolver.intrinsic_property_resolver import IntrinsicResolver
    from samcli.lib.intrinsic_resolver.intrinsics_symbol_table import IntrinsicsSymbolTable
    from samcli.lib.samlib.wrapper import SamTranslatorWrapper
    from samcli.yamlhelper import yaml_parse

    path = Path(path).resolve()
    raw = yaml_parse(path.read_text())
    parameters = _parameter_values(raw, overrides or {})
    pseudo = {
        **IntrinsicsSymbolTable.DEFAULT_PSEUDO_PARAM_VALUES,
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::StackName": "docpipe-local",
    }
    symbols: dict = {**pseudo, **parameters}
    merged = SamTranslatorWrapper(copy.deepcopy(raw), parameter_values=symbols).run_plugins()
    merged = _mark_no_value(merged)
    resources = merged.get("Resources") or {}

    def resolver(translator: dict) -> IntrinsicResolver:
        return IntrinsicResolver(
            template=merged, symbol_resolver=IntrinsicsSymbolTable(logical_id_translator=translator, template=merged)
        )

    # First the queues' names (they depend on parameters only), so every Fn::GetAtt of a queue
    # can be answered when the rest is resolved.
    names: dict[str, str] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::SQS::Queue":
            props = _strip(resolver(dict(symbols)).intrinsic_property_resolver(resource.get("Properties") or {}, True))
            names[logical_id] = str(props.get("QueueName") or f"docpipe-local-{logical_id}")
    translator = dict(symbols)
    for logical_id, name in names.items():
        # No "Ref" entry: SAM CLI renames resources by their Ref translation. A queue's Ref is
        # its URL, which the emulator knows only once the queue exists; nothing here needs it.
        translator[logical_id] = {"Arn": f"arn:aws:sqs:{region}:{ACCOUNT}:{name}", "QueueName": name}
    resolved = resolver(translator)
    conditions = {
        name: bool(resolved.intrinsic_property_resolver(expr, False)) for name, expr in (raw.get("Conditions") or {}).items()
    }

    queues: dict[str, QueueSpec] = {}
    arn_to_queue = {f"arn:aws:sqs:{region}:{ACCOUNT}:{name}": lid for lid, name in names.items()}
    functions: dict[str, FunctionSpec] = {}
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind not in ("AWS::SQS::Queue", "AWS::Serverless::Function"):
            continue
        props = _strip(resolved.intrinsic_property_resolver(resource.get("Properties") or {}, False, logical_id))
        if kind == "AWS::SQS::Queue":
            redrive = props.get("RedrivePolicy") or {}
            if isinstance(redrive, str):
                redrive = json.loads(redrive)
            target = redrive.get("deadLetterTargetArn")
            if target and target not in arn_to_queue:
                raise TemplateError(f"{logical_id}: its dead-letter target {target} is not a queue of this template")
            queues[logical_id] = QueueSpec(
                logical_id=logical_id,
                name=names[logical_id],
                visibility_timeout_s=int(props.get("VisibilityTimeout", 30)),
                retention_s=int(props.get("MessageRetentionPeriod", 345600)),
                dead_letter_target=arn_to_queue.get(target) if target else None,
                max_receive_count=int(redrive["maxReceiveCount"]) if target else None,
            )
        else:
            functions[logical_id] = _function(logical_id, props, path.parent, arn_to_queue, resolve_reference)
    return LocalTemplate(path, parameters, conditions, queues, functions, region)


def parameters(path: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The template's parameter values: its defaults, then ``overrides`` (checked as CloudFormation does)."""
    from samcli.yamlhelper import yaml_parse

    return _parameter_values(yaml_parse(Path(path).read_text()), overrides or {})


def local_defaults(path: Path, defaults: dict[str, str]) -> dict[str, str]:
    """``defaults`` for the parameters the template declares without a default of its own."""
    from samcli.yamlhelper import yaml_parse

    declared = yaml_parse(Path(path).read_text()).get("Parameters") or {}
    return {k: v for k, v in defaults.items() if k in declared and "Default" not in declared[k]}


def _parameter_values(raw: dict, overrides: dict[str, str]) -> dict[str, str]:
    declared = raw.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameter(s) not in the template: {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            value = str(overrides[name])
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            raise TemplateError(f"parameter {name} has no default: pass --parameter-overrides {name}=...")
        allowed = spec.get("AllowedValues")
        if allowed and value not in [str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            raise TemplateError(f"parameter {name}={value!r} does not match {pattern}")
        if spec.get("Type") == "Number" and "MinValue" in spec and float(value) < float(spec["MinValue"]):
            raise TemplateError(f"parameter {name}={value} is below its MinValue {spec['MinValue']}")
        if spec.get("Type") == "Number" and "MaxValue" in spec and float(value) > float(spec["MaxValue"]):
            raise TemplateError(f"parameter {name}={value} is above its MaxValue {spec['MaxValue']}")
        values[name] = value
    return values


def _function(logical_id, props, template_dir: Path, arn_to_queue, resolve_reference) -> FunctionSpec:
    if props.get("PackageType", "Zip") != "Zip" or not props.get("Handler"):
        raise TemplateError(f"{logical_id}: only zip functions with a Handler run locally")
    env = {k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()}
    env = {k: resolve_dynamic_references(v, resolve_reference, f"{logical_id}.{k}") for k, v in env.items()}
    events, schedules = [], []
    for name, event in (props.get("Events") or {}).items():
        if event.get("Type") == "Schedule":
            schedules.append(_schedule(logical_id, name, event.get("Properties") or {}))
            continue
        if event.get("Type") != "SQS":
            continue
        ep = event.get("Properties") or {}
        queue_arn = ep.get("Queue")
        if queue_arn not in arn_to_queue:
            raise TemplateError(f"{logical_id}.{name}: its queue {queue_arn} is not a queue of this template")
        events.append(
            SqsEventSpec(
                name=name,
                queue_logical_id=arn_to_queue[queue_arn],
                batch_size=int(ep.get("BatchSize", 10)),
                batching_window_s=float(ep.get("MaximumBatchingWindowInSeconds", 0)),
                report_batch_item_failures="ReportBatchItemFailures" in (ep.get("FunctionResponseTypes") or []),
                maximum_concurrency=(
                    int(ep["ScalingConfig"]["MaximumConcurrency"]) if (ep.get("ScalingConfig") or {}).get("MaximumConcurrency") else None
                ),
            )
        )
    return FunctionSpec(
        logical_id=logical_id,
        handler=str(props["Handler"]),
        runtime=str(props.get("Runtime", "")),
        code_dir=(template_dir / str(props.get("CodeUri", "."))).resolve(),
        memory_mb=int(props.get("MemorySize", 128)),
        timeout_s=float(props.get("Timeout", 3)),
        environment=env,
        events=tuple(events),
        schedules=tuple(schedules),
    )


def _schedule(logical_id: str, name: str, props: dict) -> ScheduleEventSpec:
    expression = str(props.get("Schedule", ""))
    match = _RATE.fullmatch(expression)
    if not match:
        raise TemplateError(f"{logical_id}.{name}: only rate(N minute(s)|hour(s)|day(s)) schedules run locally")
    count, unit = int(match[1]), match[2].rstrip("s")
    if count < 1 or (count == 1) != (match[2] == unit):  # rate(1 minute), rate(5 minutes), as EventBridge wants
        raise TemplateError(f"{logical_id}.{name}: {expression!r} is not a valid rate expression")
    return ScheduleEventSpec(name=name, rate_s=count * _UNIT_S[unit], enabled=bool(props.get("Enabled", True)))


def resolve_dynamic_references(value: str, resolve_reference, where: str) -> str:
    """Replace every ``{{resolve:...}}`` in ``value`` through ``resolve_reference``."""

    def one(match: re.Match) -> str:
        service, reference = match[1], match[2]
        if resolve_reference is None:
            raise TemplateError(f"{where}: a dynamic reference to {service} and nothing to resolve it with")
        return resolve_reference(service, reference)

    return _DYNAMIC.sub(one, value)


def _mark_no_value(node):
    if isinstance(node, dict):
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        return {k: _mark_no_value(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_mark_no_value(v) for v in node]
    return node


def _strip(node):
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if v != _NO_VALUE}
    if isinstance(node, list):
        return [_strip(v) for v in node if v != _NO_VALUE]
    return node
