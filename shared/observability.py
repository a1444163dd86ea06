"""Powertools Logger, Metrics and Tracer for every runtime.

Logs are JSON lines on stderr (Lambda ships stderr to CloudWatch as it does stdout, and the
CLI keeps stdout for its own output). Log ids, counts, page numbers, durations, byte sizes,
error codes and exception class names; never message bodies, file names, text or patient
fields.

Metrics are CloudWatch embedded-metric-format (EMF) lines, on stderr too, flushed once per
invocation by ``@metrics.log_metrics``. They carry figures and bounded dimensions only
(service, stage, error code): no id, no name, nothing a record contains.

The Tracer is X-Ray's where X-Ray listens (in Lambda with ``Tracing: Active``). Everywhere
else (container children, ``docpipe process``, tests) it is a no-op: Powertools would
otherwise import and configure the X-Ray SDK even to disable it (~18 MB RSS, ~175 ms per
fresh process) for traces nobody receives.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.tracing.base import BaseProvider

SERVICE = "docpipe"
NAMESPACE = "docpipe"

logger = Logger(service=SERVICE, logger_handler=logging.StreamHandler(sys.stderr))


# --- metrics -----------------------------------------------------------------------


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Powertools prints EMF with ``print()``; stdout belongs to the CLI's own output."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


class _StderrEMFProvider(AmazonCloudWatchEMFProvider):
    """The EMF provider, writing where the logs go. Every Powertools path that prints is here:
    the flush, the 100-values overflow inside ``add_metric``, and the cold-start metric."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with _stdout_to_stderr():
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)

    def add_metric(self, *args, **kwargs) -> None:
        with _stdout_to_stderr():
            super().add_metric(*args, **kwargs)

    def add_cold_start_metric(self, context) -> None:
        if is_metrics_disabled():
            return
        with _stdout_to_stderr():
            super().add_cold_start_metric(context)


metrics = Metrics(service=SERVICE, namespace=NAMESPACE)
# Metrics' sets are shared by every instance; the provider must write into the same ones.
metrics.provider = _StderrEMFProvider(
    namespace=NAMESPACE,
    service=SERVICE,
    metric_set=metrics.metric_set,
    dimension_set=metrics.dimension_set,
    metadata_set=metrics.metadata_set,
    default_dimensions=metrics.default_dimensions,
)


def set_stage_dimension(stage: str) -> None:
    """The dimension every metric of this invocation carries (cleared by the flush).

    Set in place rather than through ``add_dimension``: a handler called without its
    decorators (tests, a record handler on its own) leaves the last stage's value unflushed,
    and replacing it is right, not worth Powertools' overwrite warning."""
    metrics.dimension_set["stage"] = stage


def record_metrics(pages: int | None, duration_ms: float, peak_rss_kb: int, rss_kb: int | None) -> None:
    """One record's figures; several records of a batch become one EMF line with value arrays."""
    if pages is not None:
        metrics.add_metric(name="pages", unit=MetricUnit.Count, value=pages)
    metrics.add_metric(name="duration", unit=MetricUnit.Milliseconds, value=round(duration_ms, 1))
    metrics.add_metric(name="peak_rss", unit=MetricUnit.Megabytes, value=round(peak_rss_kb / 1024, 1))
    if rss_kb is not None:
        metrics.add_metric(name="rss", unit=MetricUnit.Megabytes, value=round(rss_kb / 1024, 1))


def count_error(stage: str, error_code: str) -> None:
    """``errors`` by stage and error code: a line of its own, since EMF dimensions apply to a
    whole line and the batch's other records have other codes (or none)."""
    if is_metrics_disabled():
        return
    with _stdout_to_stderr():
        with single_metric(
            name="errors",
            unit=MetricUnit.Count,
            value=1,
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE, "stage": stage, "error_code": error_code},
        ):
            pass


def peak_rss_kb() -> int:
    """This process's peak resident set size so far, in KiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_kb() -> int | None:
    """This process's resident set size now, in KiB (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (resource.getpagesize() // 1024)
    except (OSError, ValueError, IndexError):
        return None


# --- tracing -----------------------------------------------------------------------


class _NoSegment:
    """Stands in for an X-Ray (sub)segment: accepts annotations, metadata, exceptions."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _NoTraceProvider(BaseProvider):
    """A provider for where no X-Ray daemon listens: records nothing, imports nothing."""

    @contextlib.contextmanager
    def in_subsegment(self, name=None, **kwargs):
        yield _NoSegment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name=None, **kwargs):
        yield _NoSegment()

    def put_annotation(self, key, value) -> None:
        pass

    def put_metadata(self, key, value, namespace="default") -> None:
        pass

    def patch(self, modules) -> None:
        pass

    def patch_all(self) -> None:
        pass


def _tracer() -> Tracer:
    # Powertools' own rule: traced in Lambda, not under `sam local`, not with
    # POWERTOOLS_TRACE_DISABLED. Only then is the X-Ray SDK worth loading (it also patches
    # botocore, so S3, SQS, SSM and Textract calls become subsegments).
    if not Tracer._is_tracer_disabled():
        return Tracer(service=SERVICE)
    return Tracer(service=SERVICE, disabled=True, auto_patch=False, provider=_NoTraceProvider())


tracer = _tracer()
