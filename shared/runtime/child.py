"""What runs inside the fresh child process the container worker starts for each message.

The module is the fork server's preload: importing it loads the pure-Python part of docpipe
(boto3, psycopg, Powertools, the discover/ocr/failures handlers, found by name in the
worker's table) once, so a forked child starts warm. It deliberately does not load the
preprocess handler: PyMuPDF and its native allocator are loaded by the child that needs them
and die with it.
"""

from __future__ import annotations

import importlib
import os
import resource
import signal
import sys
import tempfile

# Preloaded for the fork server; each is pure Python apart from the compiled pieces of
# pydantic and psycopg, which keep no pools between messages.
import shared.adapters.aws  # noqa: F401
import shared.adapters.postgres  # noqa: F401
import shared.adapters.tesseract  # noqa: F401
from shared import bootstrap
from shared.observability import logger
from shared.runtime.events import LocalContext, sqs_event
from shared.runtime.jobs import EXIT_CRASHED, EXIT_OK, EXIT_RECORD_FAILED, Job, write_result
from shared.runtime.records import retry_hint
from shared.runtime.worker import FAILURES_HANDLER, STAGE_HANDLERS
from shared.settings import Settings

# The handlers too, by name (nothing under shared/ imports handlers): every one but preprocess's.
PRELOADED_HANDLERS = (STAGE_HANDLERS["discover"], STAGE_HANDLERS["ocr"], STAGE_HANDLERS["purge"], FAILURES_HANDLER)
for _module in PRELOADED_HANDLERS:
    importlib.import_module(_module)


def _warm() -> None:
    """Do once, in the fork server, the start-up work every child would otherwise repeat:
    the SQS and S3 clients the environment's settings call for (30-50 ms each) and the
    heuristic provider's compiled patterns (~45 ms). Children inherit them ready."""
    from pydantic import ValidationError

    from shared.adapters.aws import boto_client
    from shared.encounters.heuristic import HeuristicEncounters
    from shared.settings import get_settings

    HeuristicEncounters()
    try:
        settings = get_settings()
    except ValidationError:
        return  # the child reports bad configuration with its own message
    boto_client("sqs", settings.aws_region, settings.sqs_endpoint)
    boto_client("s3", settings.aws_region, settings.s3_endpoint)


_warm()


def run_job(job: Job) -> None:
    """Child entry point: one Lambda-shaped, one-record event through the stage's handler."""
    # Own process group: the parent can kill this child and anything it started (Tesseract)
    # with one killpg, and a Ctrl-C at the terminal reaches the parent only.
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Every temp file of this message, ours and Tesseract's, goes under the parent's dir for
    # this child, which the parent removes however the child ends.
    tempfile.tempdir = job.tmpdir
    os.environ["TMPDIR"] = job.tmpdir
    code = EXIT_CRASHED
    try:
        bootstrap.install(bootstrap.build_deps(job.settings))
        handler = importlib.import_module(job.handler_module).lambda_handler
        event = sqs_event([job.message], job.queue_arn, job.settings.aws_region)
        context = LocalContext(function_name=f"docpipe-{job.queue}", timeout_s=job.timeout_s)
        response = handler(event, context)
        code = EXIT_RECORD_FAILED if response.get("batchItemFailures") else EXIT_OK
    except Exception as exc:  # noqa: BLE001 - never let a traceback (which may quote data) print
        logger.error("child crashed", extra={"error": type(exc).__name__, "queue": job.queue})
    finally:
        write_result(
            job.tmpdir,
            code,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            retry_hint(job.message.message_id),
        )
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


def record_abnormal_end(settings: Settings, run) -> None:
    """Write the pipeline_runs row of a child that could not write its own (killed, crashed)."""
    db = bootstrap.build_db(settings)
    try:
        db.record_run(run)
    finally:
        db.close()
