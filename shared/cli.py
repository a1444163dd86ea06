"""The `docpipe` command.

  docpipe process PATH [PATH ...]   the embedded default: local stack, submit, drain, report
  docpipe local up                  start the local stack and print the environment to export
  docpipe migrate                   apply supabase/migrations to DATABASE_URL
  docpipe submit FILE --patient-id  upload, create the row, enqueue (configured stack)
  docpipe worker [--burst]          serve the queues (configured stack)
  docpipe invoke STAGE --event FILE run a stage's lambda_handler on a Lambda-shaped event
  docpipe retry [--code C] [--id ID]  retry failed files from the database
  docpipe redrive [--terminal]      move dead letters back to their stage queues
  docpipe status                    queue depths, files by status, recent failures
  docpipe delete --file ID | --patient ID   erase files: rows, page images, originals, all of it
  docpipe samples DIR               write the generated sample documents
  docpipe lambda up                 template.yaml's functions, run as Lambda runs them, until Ctrl-C
  docpipe lambda process FILE ...   the same, on these files: submit, drain, report as `process` does
  docpipe view [--data-dir DIR]     a read-only review page of the stored files (127.0.0.1)
  docpipe fhir SHELL_FILE_ID        a completed file's encounters as a FHIR R4 transaction Bundle

Exit status: 0 success, 1 when any file failed, 2 on usage errors.

One module for fifteen commands (~800 lines): each is its argparse entry and a short function
that hands over to the runtime, ops or view modules; what they print is shared
(``shared/report.py``), what they do lives elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import uuid
from pathlib import Path

from shared.errors import MissingPackageError
from shared.extras import require

DEMO_PATIENT = uuid.UUID("00000000-0000-4000-8000-00000000d0c5")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docpipe", description="Medical documents -> pages, text, encounters.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("process", help="process files end to end on an embedded local stack")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON object per input file (JSON Lines)")
    p.add_argument("--with-text", action="store_true", help="include each page's text in --json output")
    p.add_argument("--data-dir", type=Path, default=Path(".docpipe"), help="local stack data (default ./.docpipe)")
    p.add_argument("--patient-id", type=_uuid, default=DEMO_PATIENT)
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--concurrency", type=int, default=min(2, os.cpu_count() or 1), help="children at once")
    p.add_argument("--fhir", type=Path, default=None, metavar="DIR",
                   help="also write each completed file's FHIR R4 Bundle to DIR/<file name>.fhir.json")

    p = sub.add_parser("local", help="the local stack (moto SQS+S3, embedded Postgres)")
    p.add_argument("action", choices=["up"])
    p.add_argument("--data-dir", type=Path, default=Path(".docpipe"))
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--storage", choices=["s3", "local"], default="s3")

    p = sub.add_parser("migrate", help="apply supabase/migrations to DATABASE_URL")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for migrations whose precondition does not hold yet (e.g. Supabase "
                   "Storage's schema), applying each when it does; exit 1 if one still waits")

    p = sub.add_parser("submit", help="upload a file and queue it")
    p.add_argument("file", type=Path)
    p.add_argument("--patient-id", type=_uuid, required=True)

    p = sub.add_parser("worker", help="serve the stage queues, a fresh child process per message")
    p.add_argument("--burst", action="store_true", help="drain the queues, then exit (no erasure scans)")
    p.add_argument("--stages", default="preprocess,ocr,discover,purge")
    p.add_argument("--concurrency", type=int, default=None, help="children at once (WORKER_CONCURRENCY)")
    p.add_argument("--max-messages", type=int, default=None, help="exit after starting this many")
    p.add_argument("--isolation", choices=["forkserver", "spawn"], default=None, help="WORKER_ISOLATION")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run handlers inside this process (no isolation: the old worker's design; for comparison)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="N",
        help="deliver N-record events (1-10), as Lambda's SQS event source mapping does, so partial batch "
        "failures happen locally; N > 1 serves in this process (a warm Lambda), not a child per message",
    )

    p.add_argument(
        "--no-dlqs",
        action="store_true",
        help="leave the dead-letter queues alone (by default the worker marks their files failed), "
        "so their messages can be inspected and moved back with `docpipe redrive`",
    )

    p = sub.add_parser("redrive", help="move dead-letter messages back to their stage queues")
    p.add_argument("--stage", choices=["preprocess", "ocr", "discover"], default=None, help="one stage only")
    p.add_argument("--terminal", action="store_true",
                   help="the terminal DLQ (unrecorded-dlq, Lambda) back to the stage DLQs, with SQS's message move task")

    p = sub.add_parser("retry", help="retry failed files from the database (every runtime)")
    p.add_argument("--code", action="append", default=None, metavar="CODE",
                   help="only files failed with this error code (repeatable; default: the retryable codes)")
    p.add_argument("--since", type=_since, default=None, metavar="WHEN",
                   help="only files failed at or after this: an ISO timestamp, or hours ago (e.g. 6h)")
    p.add_argument("--id", action="append", type=_uuid, default=None, metavar="UUID", dest="ids",
                   help="only this file (repeatable; any error code)")
    p.add_argument("--json", action="store_true", help="one JSON object per file retried")

    p = sub.add_parser("status", help="queue depths, files by status, recent failures, stage figures")
    p.add_argument("--json", action="store_true")
    p.add_argument("--hours", type=float, default=24.0, help="window for failures and stage figures")

    p = sub.add_parser("invoke", help="run a stage's lambda_handler once on a Lambda-shaped event (no Docker)")
    p.add_argument("stage", choices=["preprocess", "ocr", "discover", "purge", "failures"])
    p.add_argument("--event", type=Path, required=True, metavar="FILE", help="an SQS event JSON ('-' for stdin)")
    p.add_argument(
        "--shell-file-id",
        type=_uuid,
        default=None,
        help="replace {{shell_file_id}} in the event (the placeholder tests/events/*.json use)",
    )
    p.add_argument("--timeout", type=float, default=None, help="the context's time limit, s (STAGE_TIMEOUT_S)")

    p = sub.add_parser("delete", help="erase files: their rows, page images, originals and every other object")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--file", type=_uuid, action="append", dest="files", metavar="ID",
                       help="a shell_file_id (repeatable)")
    which.add_argument("--patient", type=_uuid, metavar="ID", help="every file of this patient")
    p.add_argument("--json", action="store_true", help="one JSON object per file: what was removed (counts, ids)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="what `docpipe process --data-dir DIR` stored (default: the environment's stack)")

    _lambda_parsers(sub)

    p = sub.add_parser("samples", help="write the generated sample documents")
    p.add_argument("dest", type=Path)
    p.add_argument("--bad", action="store_true", help="also the bad ones (empty, truncated, encrypted, ...)")

    p = sub.add_parser("view", help="a local, read-only review page: files, page images, word boxes, encounters")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="what `docpipe process --data-dir DIR` stored (default: the environment's DATABASE_URL "
                   "and storage, as the worker uses them; else ./.docpipe)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")

    p = sub.add_parser("fhir", help="a completed file's encounters as a FHIR R4 transaction Bundle (JSON)")
    p.add_argument("shell_file_id", type=_uuid, metavar="SHELL_FILE_ID")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write it here (default: stdout)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="what `docpipe process --data-dir DIR` stored (default: the environment's DATABASE_URL "
                   "and storage, as the worker uses them)")
    return parser


def _override(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"not Key=Value: {value!r}")
    return key, val


def _lambda_parsers(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--template", type=Path, default=Path("template.yaml"), help="the SAM template (template.yaml)")
    common.add_argument(
        "--parameter-overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters, as `sam deploy --parameter-overrides` takes them",
    )
    common.add_argument("--data-dir", type=Path, default=Path(".docpipe/lambda"), help="local stack data")
    # Each flag named for a setting defaults to that setting's variable, as every other command
    # reads it (filled in by _lambda_defaults, from the settings model).
    common.add_argument("--database-url", default=None,
                        help="an existing Postgres (default: $DATABASE_URL, else an embedded one)")
    common.add_argument("--no-pooler", action="store_true", help="functions connect directly, not through PgBouncer")
    common.add_argument(
        "--supabase-service-role-key",
        default=None,
        help="seeded into SSM for StorageBackend=supabase (default: $SUPABASE_SERVICE_ROLE_KEY)",
    )
    common.add_argument(
        "--openai-api-key",
        default=None,
        help="seeded into Secrets Manager for EncounterProvider=openai (default: $OPENAI_API_KEY)",
    )
    common.add_argument("--openai-base-url", default=None,
                        help="an OpenAI-compatible server for the discover function (default: $OPENAI_BASE_URL)")
    common.add_argument("--textract-endpoint-url", default=None,
                        help="Textract's endpoint (default: $TEXTRACT_ENDPOINT_URL, else moto's, random text)")
    common.add_argument("--max-concurrency", type=int, default=None, help="cap every mapping's concurrency (laptops)")
    common.add_argument("--schedule-interval", type=float, default=None, metavar="SECONDS",
                        help="fire every Schedule event this often instead of at its rate (tests)")
    p = sub.add_parser("lambda", help="template.yaml's functions run as Lambda runs them (no Docker)")
    actions = p.add_subparsers(dest="lambda_action", required=True)
    actions.add_parser("up", parents=[common], help="serve until Ctrl-C; function logs and REPORT lines on stderr")
    q = actions.add_parser("process", parents=[common], help="submit files, drain, print what `docpipe process` prints")
    q.add_argument("paths", nargs="*", type=Path, metavar="FILE")
    q.add_argument("--json", action="store_true", help="one JSON object per input file (JSON Lines)")
    q.add_argument("--with-text", action="store_true", help="include each page's text in --json output")
    q.add_argument("--patient-id", type=_uuid, default=DEMO_PATIENT)
    q.add_argument("--timeout", type=float, default=900.0, help="give up waiting after this many seconds")
    q.add_argument("--summary-json", type=Path, default=None, help="also write the invocation summary here")
    q.add_argument("--quiet", action="store_true", help="no progress display")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {
        "process": cmd_process,
        "local": cmd_local,
        "migrate": cmd_migrate,
        "submit": cmd_submit,
        "worker": cmd_worker,
        "invoke": cmd_invoke,
        "redrive": cmd_redrive,
        "retry": cmd_retry,
        "status": cmd_status,
        "samples": cmd_samples,
        "lambda": cmd_lambda,
        "view": cmd_view,
        "delete": cmd_delete,
        "fhir": cmd_fhir,
    }[args.command]
    try:
        return handler(args)
    except MissingPackageError as exc:
        _err(str(exc))  # "docpipe process needs pgserver, ...": it names the command itself
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _settings_or_exit():
    from pydantic import ValidationError

    from shared.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        _err(f"docpipe: bad configuration: {exc}")
        raise SystemExit(EXIT_USAGE) from exc


def _use_environment(env: dict[str, str]) -> None:
    """Point this process (settings, boto3) at a stack: the CLI is the one writer of os.environ."""
    from shared.settings import get_settings

    os.environ.update(env)
    get_settings.cache_clear()


# --- commands ------------------------------------------------------------------------


def cmd_migrate(args) -> int:
    import time

    from shared.bootstrap import build_db

    # DATABASE_URL, or the SSM parameter DATABASE_URL_PARAMETER names, as the functions read it.
    db = build_db(_settings_or_exit())
    deadline = time.monotonic() + max(0.0, args.wait)
    report = db.migrate_report()
    for name in report.applied:
        _err(f"applied  {name}")
    for name, precondition in report.waiting:
        _err(f"waiting  {name}: not applied until this holds: {precondition}")
    while report.waiting and time.monotonic() < deadline:
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        report = db.migrate_report()
        for name in report.applied:
            _err(f"applied  {name}")
    _err(f"skipped  {len(report.already)} applied before")
    if report.waiting:
        names = ", ".join(name for name, _ in report.waiting)
        if args.wait > 0:
            _err(f"docpipe: still waiting after {args.wait:g} s: {names}")
            return EXIT_FAILED
        _err(f"{names}: run `docpipe migrate` again once the precondition holds (or `docpipe migrate --wait SECONDS`)")
    return EXIT_OK


def cmd_submit(args) -> int:
    from shared.bootstrap import build_deps
    from shared.submit import submit

    if not args.file.is_file():
        _err(f"docpipe: no such file: {args.file}")
        return EXIT_USAGE
    shell_file_id = submit(build_deps(_settings_or_exit()), args.file, args.patient_id)
    print(shell_file_id)
    return EXIT_OK


def cmd_worker(args) -> int:
    settings = _settings_or_exit()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.concurrency is not None and args.concurrency < 1:
        _err("docpipe: --concurrency must be at least 1")
        return EXIT_USAGE
    if not 1 <= args.batch_size <= 10:
        _err("docpipe: --batch-size must be between 1 and 10 (SQS receives at most 10 messages)")
        return EXIT_USAGE
    # A batch is one handler call over several records in one process, as on a warm Lambda;
    # the child-per-message supervisor delivers one record per child by design.
    if args.in_process or args.batch_size > 1:
        from shared.bootstrap import build_deps, install
        from shared.runtime.worker import Worker

        deps = build_deps(settings)
        install(deps)
        try:
            worker = Worker(
                deps, stages=stages, batch_size=args.batch_size, include_dlqs=not args.no_dlqs, on_batch=_report_batch
            )
        except ValueError as exc:
            _err(f"docpipe: {exc}")
            return EXIT_USAGE
        handled = worker.run(burst=args.burst, max_messages=args.max_messages)
        _err(f"handled {handled} message(s) in process, in batches of up to {args.batch_size}")
        return EXIT_OK

    # The parent builds only its queue client: no database driver, no PDF or OCR library.
    from shared.adapters.aws import SqsQueue
    from shared.runtime.supervisor import Supervisor

    queue = SqsQueue(settings.queue_prefix, settings.aws_region, settings.sqs_endpoint)
    try:
        supervisor = Supervisor(
            settings,
            queue,
            stages=stages,
            concurrency=args.concurrency,
            isolation=args.isolation,
            include_dlqs=not args.no_dlqs,
        )
    except ValueError as exc:
        _err(f"docpipe: {exc}")
        return EXIT_USAGE
    supervisor.run(burst=args.burst, max_messages=args.max_messages, restore_signals=False)
    # Every message is deleted or released by now; a late SIGTERM must not turn a clean
    # exit into a kill (Python restores default handlers while it shuts down).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ok, total = supervisor.counts["succeeded"], sum(supervisor.counts.values())
    _err(f"handled {total} message(s): {ok} succeeded, {total - ok} to be retried or dead-lettered")
    return EXIT_OK


def _report_batch(queue: str, messages, failed: set[str]) -> None:
    if len(messages) > 1 or failed:
        _err(f"{queue}: batch of {len(messages)}, {len(failed)} reported in batchItemFailures")


def cmd_invoke(args) -> int:
    """What `sam local invoke` does, without Docker: this environment's settings, the event as
    given, a Lambda-shaped context; the handler's response on stdout."""
    from shared.runtime.events import LocalContext

    if str(args.event) == "-":
        text = sys.stdin.read()
    elif args.event.is_file():
        text = args.event.read_text()
    else:
        _err(f"docpipe: no such file: {args.event}")
        return EXIT_USAGE
    if args.shell_file_id is not None:
        text = text.replace("{{shell_file_id}}", str(args.shell_file_id))
    try:
        event = json.loads(text)
    except ValueError as exc:
        _err(f"docpipe: the event is not JSON: {exc}")
        return EXIT_USAGE
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list) or not event["Records"]:
        _err("docpipe: the event must be an SQS event: an object with a non-empty 'Records' list")
        return EXIT_USAGE
    settings = _settings_or_exit()
    from shared.runtime.worker import FAILURES_HANDLER, STAGE_HANDLERS

    module = FAILURES_HANDLER if args.stage == "failures" else STAGE_HANDLERS[args.stage]
    handler = importlib.import_module(module).lambda_handler
    timeout = args.timeout if args.timeout is not None else settings.stage_timeout_s
    response = handler(event, LocalContext(function_name=f"docpipe-{args.stage}", timeout_s=timeout))
    print(json.dumps(response))
    return EXIT_FAILED if response.get("batchItemFailures") else EXIT_OK


def cmd_redrive(args) -> int:
    from shared import ops
    from shared.bootstrap import build_deps
    from shared.errors import PipelineError

    deps = build_deps(_settings_or_exit())
    if args.terminal:
        try:
            _err(f"terminal DLQ: message move task started ({ops.redrive_terminal(deps.queue)})")
        except NotImplementedError as exc:
            _err(f"docpipe: terminal DLQ not moved: {exc}; retry the failed files from the database: docpipe retry")
            return EXIT_FAILED
        except PipelineError as exc:  # no such queue here (only template.yaml creates it), SQS down
            _err(f"docpipe: terminal DLQ not moved: {exc}")
            return EXIT_FAILED
        return EXIT_OK
    moved = ops.redrive(deps.queue, args.stage, db=deps.db)
    _err(f"moved {moved} message(s) back to their stage queues")
    return EXIT_OK


def _since(value: str):
    import datetime as dt

    try:
        if value.endswith("h"):
            return dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=float(value[:-1]))
        when = dt.datetime.fromisoformat(value)
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time (ISO, or hours ago like 6h): {value!r}") from exc


def cmd_retry(args) -> int:
    from shared import ops
    from shared.bootstrap import build_deps

    deps = build_deps(_settings_or_exit())
    done = ops.retry(deps, codes=args.code, since=args.since, ids=args.ids)
    for item in done:
        print(json.dumps(item) if args.json else f"{item['shell_file_id']}  {item['was'] or '-'} -> {item['stage']}")
    _err(f"retried {len(done)} failed file(s)")
    return EXIT_OK


def cmd_status(args) -> int:
    from shared import ops
    from shared.bootstrap import build_deps
    from shared.view import base_url

    snapshot = ops.status(build_deps(_settings_or_exit()), window_hours=args.hours)
    print(json.dumps(snapshot, default=str) if args.json else ops.format_status(snapshot, view_base=base_url()))
    return EXIT_OK


def cmd_local(args) -> int:
    require("docpipe local up", "pgserver", "moto")
    from shared.bootstrap import build_deps
    from shared.runtime.localstack import LocalStack
    from shared.submit import provision

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalStack(args.data_dir, port=args.port, storage=args.storage) as stack:
        env = stack.env()
        _use_environment(env)
        provision(build_deps(_settings_or_exit()))
        _export_and_wait(env, "local stack up", stop)
    return EXIT_OK


def _export_and_wait(env: dict[str, str], banner: str, stop: threading.Event) -> None:
    """Print the environment to export, then serve until SIGTERM (``stop``) or Ctrl-C."""
    for key, value in env.items():
        print(f"export {key}='{value}'")
    print(f"# {banner}; Ctrl-C to stop", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


# `docpipe lambda` flags named for a setting: their default is the setting's variable.
LAMBDA_FLAG_SETTINGS = ("database_url", "supabase_service_role_key", "openai_api_key", "openai_base_url",
                        "textract_endpoint_url")


def _lambda_defaults(args, settings) -> list[str]:
    """Fill each flag left unset from its setting (DATABASE_URL, OPENAI_BASE_URL, ...); return
    the variables so used."""
    used = []
    for name in LAMBDA_FLAG_SETTINGS:
        if getattr(args, name) is not None:
            continue
        value = getattr(settings, name)
        value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if value:
            setattr(args, name, value)
            used.append(name.upper())
    return used


def cmd_lambda(args) -> int:
    used = _lambda_defaults(args, _settings_or_exit())
    if "DATABASE_URL" in used:
        _err("docpipe lambda: using the database $DATABASE_URL names (--database-url to choose another)")
    # SAM CLI reads the template; moto stands in for SQS, S3 and SSM; pgserver unless --database-url.
    require("docpipe lambda", "samcli", "moto", "rich", *(["pgserver"] if args.database_url is None else []))
    from shared.runtime.lambda_emulator import format_summary
    from shared.runtime.lambda_local import LambdaLocal
    from shared.runtime.lambda_template import TemplateError

    if not args.template.is_file():
        _err(f"docpipe: no such template: {args.template}")
        return EXIT_USAGE
    # `--parameter-overrides A=1 B=2 scan.pdf`: argparse's nargs="+" takes the files too.
    overrides, strays = [], []
    for item in args.parameter_overrides:
        (strays if strays or "=" not in item else overrides).append(item)
    if strays and args.lambda_action != "process":
        _err(f"docpipe: not Key=Value: {strays[0]!r}")
        return EXIT_USAGE
    try:
        args.parameter_overrides = [_override(item) for item in overrides]
    except argparse.ArgumentTypeError as exc:
        _err(f"docpipe: {exc}")
        return EXIT_USAGE
    paths = [Path(p) for p in strays] + list(getattr(args, "paths", []) or [])
    args.paths = paths
    if args.lambda_action == "process" and not paths:
        _err("docpipe: lambda process needs at least one FILE")
        return EXIT_USAGE
    missing = [p for p in paths if not p.is_file()]
    if missing:
        _err("docpipe: no such file: " + ", ".join(str(p) for p in missing))
        return EXIT_USAGE
    processing = args.lambda_action == "process"
    from shared.runtime.localstack import LOCAL_CREDENTIALS

    # This process is the uploader: it talks to the local stand-ins with their credentials.
    # The functions get theirs explicitly, never this process's environment.
    _use_environment({**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"})
    local = LambdaLocal(
        args.data_dir,
        args.template,
        dict(args.parameter_overrides),
        database_url=args.database_url,
        pooler=not args.no_pooler,
        supabase_service_role_key=args.supabase_service_role_key,
        openai_api_key=args.openai_api_key,
        openai_base_url=args.openai_base_url,
        textract_endpoint_url=args.textract_endpoint_url,
        # `process` keeps the terminal for progress and results; `up` streams the functions' logs.
        logs_dir=args.data_dir / "logs" if processing else None,
        report=_current_stderr(),
        concurrency_cap=args.max_concurrency,
        schedule_interval_s=args.schedule_interval,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        local.start()
    except TemplateError as exc:
        _err(f"docpipe: {exc}")
        return EXIT_USAGE
    except (RuntimeError, OSError) as exc:  # a stand-in (PgBouncer, Postgres, moto) did not start
        _err(f"docpipe: a local stand-in did not start: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    try:
        if not processing:
            _export_and_wait(
                local.environment_for_users(), "Lambda functions up (docpipe submit FILE --patient-id ID)", stop
            )
            local.emulator.stop()
            _err(format_summary(local.emulator.summary()))
            return EXIT_OK
        return _lambda_process(args, local)
    finally:
        local.stop()


def _lambda_process(args, local) -> int:
    from shared.report import file_report, summary_line
    from shared.runtime.lambda_emulator import format_summary

    files = list(zip(args.paths, local.submit(args.paths, args.patient_id)))
    ids = [sfid for _, sfid in files]
    monitor = _start_progress(args.quiet, local.uploader().db, ids, local.max_attempts().get)
    try:
        finished = local.wait(ids, args.timeout)
    finally:
        if monitor is not None:
            monitor.stop()
    local.emulator.stop()
    db = local.uploader().db
    reports = [file_report(db, sfid, str(path), with_text=args.with_text) for path, sfid in files]
    pages, ocr_pages = local.page_figures([sfid for _, sfid in files])
    summary = local.emulator.summary(documents=len(files), pages=pages, ocr_pages=ocr_pages)
    for report in reports:
        print(json.dumps(report, ensure_ascii=False) if args.json else summary_line(report))
    failed = sum(r["status"] != "completed" for r in reports)
    if not args.json:
        print(f"{len(reports) - failed} completed, {failed} failed; data in {args.data_dir}")
    _err(format_summary(summary))
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2))
    if not finished:
        _err(f"docpipe: gave up after {args.timeout:.0f} s with files still in progress (logs in {args.data_dir / 'logs'})")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_delete(args) -> int:
    """Erase files on the stack the environment names (the container's, `local up`'s, a Lambda
    deployment's: the database and storage are enough), or `docpipe process`'s --data-dir."""
    from shared import ops

    if args.data_dir is not None:
        require("docpipe delete (a --data-dir)", "pgserver")
        try:
            deps, close = _data_dir_deps(args.data_dir)
        except FileNotFoundError as exc:
            _err(f"docpipe: {exc}")
            return EXIT_USAGE
    else:
        from shared.bootstrap import build_deps

        deps = build_deps(_settings_or_exit())

        def close() -> None:
            if "db" in deps.built():
                deps.db.close()
    try:
        if args.patient is not None:
            reports = ops.delete_patient(deps, args.patient)
        else:
            reports = [ops.delete_file(deps, sfid) for sfid in args.files]
    finally:
        close()
    for report in reports:
        print(json.dumps(report) if args.json else _erasure_line(report))
    unfinished = [r for r in reports if r["status"] not in ("purged", "finished")]
    if not args.json:
        _err(f"erased {len(reports) - len(unfinished)} file(s)"
             + (f"; {len(unfinished)} not (yet): see above" if unfinished else ""))
    return EXIT_FAILED if unfinished else EXIT_OK


def _erasure_line(report: dict) -> str:
    if report["status"] == "not_found":
        return f"{report['shell_file_id']}  not found: no file and no erasure with this id"
    rows = sum(report["rows_removed"].values())
    line = f"{report['shell_file_id']}  {report['status']}  rows {rows}  objects {report['objects_removed']}"
    if report["status"] == "pending":
        return line + f"  ({report['error_code']}: the pipeline purges it once that is fixed)"
    if report["final_sweep_after"]:
        return line + f"  (final sweep after {report['final_sweep_after'][:19]})"
    return line


def _data_dir_deps(data_dir: Path):
    """Deps over what `docpipe process --data-dir DIR` left: its embedded PostgreSQL (started
    again if need be) and its storage directory; no queue. Nothing of `process` runs once it has
    exited, so a purge here is the final sweep."""
    import warnings

    from shared.adapters.aws import LocalStorage
    from shared.adapters.postgres import PostgresDb
    from shared.bootstrap import Deps
    from shared.settings import Settings

    data_dir = Path(data_dir).resolve()
    if not (data_dir / "pg").is_dir():
        raise FileNotFoundError(f"no docpipe data in {data_dir} (no pg/)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver
    pg = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    db = PostgresDb(pg.get_uri())
    db.migrate()  # data of an older docpipe: the erasures table and its trigger
    settings = Settings(storage_backend="local", local_storage_dir=data_dir / "storage", erasure_final_sweep_s=0)
    deps = Deps(settings, db=db, storage=LocalStorage(data_dir / "storage"), queue=None)

    def close() -> None:
        db.close()
        pg.cleanup()

    return deps, close


def cmd_samples(args) -> int:
    try:
        import docpipe_samples as samples
    except ModuleNotFoundError as exc:
        if exc.name != "docpipe_samples":
            raise
        # The demo documents live beside shared/, not in it: the Lambda zip and the image lack them.
        _err("docpipe samples needs docpipe_samples, which this installation does not include: "
             "run it from a checkout (pip install -e .)")
        return EXIT_USAGE

    written = samples.write_samples(args.dest)
    if args.bad:
        written.update(samples.write_bad_samples(args.dest))
    for path in written.values():
        print(path)
    return EXIT_OK


def cmd_view(args) -> int:
    from shared.view.server import ViewServer, open_configured, open_data_dir

    data_dir = args.data_dir
    settings = None
    if data_dir is None:
        settings = _settings_or_exit()
        if not (settings.database_url.get_secret_value() or settings.database_url_parameter):
            data_dir = Path(".docpipe")  # where `docpipe process` keeps its data by default
    if data_dir is not None:
        require("docpipe view (a --data-dir)", "pgserver")  # its embedded Postgres
    try:
        db, storage, close = open_data_dir(data_dir) if data_dir is not None else open_configured(settings)
    except FileNotFoundError as exc:
        _err(f"docpipe: {exc}")
        return EXIT_USAGE
    try:
        try:
            server = ViewServer(db, storage, host=args.host, port=args.port, log=_err)
        except OSError as exc:
            _err(f"docpipe: cannot listen on {args.host}:{args.port}: {exc.strerror} (try --port)")
            return EXIT_USAGE
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.httpd.shutdown).start())
        _err(f"docpipe view: {server.url}/ (read-only; Ctrl-C to stop)")
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        close()
    return EXIT_OK


def cmd_fhir(args) -> int:
    from shared.errors import FileNotFoundInDbError, NotReadyError
    from shared.fhir import bundle_for_file, local_locator, locator
    from shared.view.server import open_configured, open_data_dir

    if args.data_dir is not None:
        require("docpipe fhir (a --data-dir)", "pgserver")  # its embedded Postgres
        try:
            db, _, close = open_data_dir(args.data_dir)
        except FileNotFoundError as exc:
            _err(f"docpipe: {exc}")
            return EXIT_USAGE
        locate = local_locator(args.data_dir.resolve() / "storage")
    else:
        settings = _settings_or_exit()
        db, _, close = open_configured(settings)
        locate = locator(settings)
    try:
        bundle = bundle_for_file(db, args.shell_file_id, locate)
    except FileNotFoundInDbError:
        _err(f"docpipe: no such file: {args.shell_file_id}")
        return EXIT_FAILED
    except NotReadyError as exc:
        _err(f"docpipe: {exc}")
        return EXIT_FAILED
    finally:
        close()
    text = json.dumps(bundle, indent=2, ensure_ascii=False)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text + "\n")
        _err(f"wrote {args.out} ({len(bundle['entry'])} entries)")
    return EXIT_OK


def _write_bundles(db, files, reports, dest: Path, storage_dir: Path) -> None:
    """`process --fhir DIR`: a Bundle per completed file, DIR/<file name>.fhir.json (the
    shell_file_id added when two inputs share a name)."""
    from shared.fhir import bundle_for_file, local_locator

    dest.mkdir(parents=True, exist_ok=True)
    locate = local_locator(storage_dir)
    names = [path.name for path, _ in files]
    written = 0
    for (path, sfid), report in zip(files, reports):
        if report["status"] != "completed":
            continue
        name = path.name if names.count(path.name) == 1 else f"{path.name}.{sfid}"
        bundle = bundle_for_file(db, sfid, locate)
        (dest / f"{name}.fhir.json").write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
        written += 1
    _err(f"{written} FHIR Bundle(s) in {dest}")


def cmd_process(args) -> int:
    missing = [p for p in args.paths if not p.is_file()]
    if missing:
        _err("docpipe: no such file: " + ", ".join(str(p) for p in missing))
        return EXIT_USAGE

    if args.concurrency < 1:
        _err("docpipe: --concurrency must be at least 1")
        return EXIT_USAGE
    require("docpipe process", "pgserver", "moto", "rich")  # the local stack it starts; its progress bars
    from shared.runtime.localstack import LocalStack, free_port

    stack = LocalStack(args.data_dir, storage="local", port=free_port())
    # Postgres first, in a thread: its start (initdb on a new data dir: mostly waiting for the
    # disk) overlaps this process's imports, the fork server's start and moto's.
    stack.start_database()
    try:
        from concurrent.futures import ThreadPoolExecutor

        from shared.bootstrap import build_deps
        from shared.report import file_report, summary_line, view_lines
        from shared.runtime.supervisor import Supervisor, start_fork_server, stop_fork_server
        from shared.submit import provision, provision_queues, submit

        env = {}
        if not os.environ.get("POWERTOOLS_LOG_LEVEL"):
            env["POWERTOOLS_LOG_LEVEL"] = "ERROR"  # progress lines and the summary are the user's view
        if not os.environ.get("POWERTOOLS_METRICS_DISABLED"):
            env["POWERTOOLS_METRICS_DISABLED"] = "true"  # EMF lines are for CloudWatch, not a terminal
        # The worker's fork server starts next, and imports its preload while the stack starts,
        # the database is migrated and the files are uploaded. Its environment is the stack's but
        # for the database URL, not known yet, which each child gets in its job's settings.
        _use_environment({**stack.env(database=False), **env})
        early = _settings_or_exit()
        if early.worker_isolation == "forkserver":
            start_fork_server()
        stack.start(wait=False)  # moto serves; Postgres may still be starting
        # The queues are made in a thread (the SQS client, botocore's first, and moto's SQS on
        # its first request: ~0.4 s, mostly CPU) while Postgres starts and is migrated (mostly
        # waiting for it), no longer before or after them.
        queues = ThreadPoolExecutor(1, thread_name_prefix="docpipe-queues")
        made = queues.submit(lambda deps: (provision_queues(deps), deps.queue)[1], build_deps(early))
    except BaseException:
        stack.stop()  # what it has started
        raise
    with stack, queues:  # the stack's start was above; its stop at the end, after the thread's
        _use_environment(stack.env())  # once Postgres serves
        from shared.observability import logger

        logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
        settings = _settings_or_exit()
        deps = build_deps(settings)
        provision(deps, queues=False)
        deps = deps.with_parts(queue=made.result())
        # The same runtime as the container: a fresh child process per message.
        supervisor = Supervisor(settings, deps.queue, concurrency=args.concurrency)
        stack.checkpoint_soon()  # the migrations' tables to disk now, not in the stop at the end
        files = [(path, submit(deps, path, args.patient_id)) for path in args.paths]
        monitor = _start_progress(
            args.quiet, deps.db, [sfid for _, sfid in files], lambda stage: settings.max_receive_count
        )
        try:
            supervisor.run(burst=True)
        finally:
            if monitor is not None:
                monitor.stop()
        stop_fork_server()  # its exit overlaps the reports and the stack's stop
        reports = [file_report(deps.db, sfid, str(path), with_text=args.with_text) for path, sfid in files]
        if args.fhir is not None:
            _write_bundles(deps.db, files, reports, args.fhir, settings.local_storage_dir)
    for report in reports:
        if args.json:
            print(json.dumps(report, ensure_ascii=False))
        else:
            print(summary_line(report))
    failed = sum(r["status"] != "completed" for r in reports)
    if not args.json:
        print(f"{len(reports) - failed} completed, {failed} failed; data in {args.data_dir}")
        print("\n".join(view_lines(reports, args.data_dir)))
    elif not args.quiet:
        _err(view_lines(reports, args.data_dir)[0])
    global _nothing_left_to_tear_down
    _nothing_left_to_tear_down = True  # the stack is stopped, the fork server exiting
    return EXIT_FAILED if failed else EXIT_OK


def _start_progress(quiet: bool, db, shell_file_ids, max_attempts):
    """The progress display on stderr (shared/progress.py), or None with --quiet."""
    if quiet:
        return None
    from shared.progress import ProgressMonitor, open_view

    return ProgressMonitor(db, shell_file_ids, open_view(sys.stderr), max_attempts=max_attempts).start()


def _current_stderr():
    from shared.progress import CurrentStderr

    return CurrentStderr()


# Set by a command once everything it started is released (``docpipe process``: its stack
# stopped, its worker's fork server told to exit). The interpreter's teardown then has nothing
# left to do but free the modules a local stack loads (moto, boto3, pydantic, psycopg): 0.2-0.4 s
# that the user waits for at the prompt, or a script for the output's end. entrypoint() skips it.
_nothing_left_to_tear_down = False


def entrypoint() -> None:
    code = main()
    if _nothing_left_to_tear_down:
        import logging

        logging.shutdown()  # what the atexit hook would flush
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # a reader gone, as sys.exit would find it
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entrypoint()
