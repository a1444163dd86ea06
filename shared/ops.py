"""Operator views and actions behind `docpipe retry`, `docpipe redrive`, `docpipe status` and
`docpipe delete`.

Both read and move ids, counts, codes and durations only: no message body is printed, no
file name, no text. They take the deps the CLI builds, so they run against any stack the
settings point at (local, or SQS + Supabase).
"""

from __future__ import annotations

import datetime as dt
import uuid

from shared.errors import PipelineError
from shared.keys import file_of, patient_prefixes
from shared.models import Erasure, PurgeMessage, Stage, shell_file_id_of
from shared.ports import STAGE_QUEUES, Queue, dlq_name

# The state a file re-enters when its stage's message is redriven: the state that stage
# expects to find (preprocess starts from queued; OCR's fan-in flips ocr -> discovering).
_REOPEN_STATUS = {"preprocess": "queued", "ocr": "ocr", "discover": "discovering"}


def redrive(queue: Queue, stage: str | None = None, db=None, max_messages: int = 10_000) -> int:
    """Move the messages of a stage's DLQ (every stage's when ``stage`` is None) back to the
    stage's queue; return how many moved.

    Each message is sent to its queue before it is deleted from the DLQ, so a crash between
    the two duplicates a message (the handlers are idempotent) rather than losing one. With
    ``db``, a file the failures handler already marked failed is reopened to the state its
    stage expects, so the redriven message does real work instead of a skip.

    A worker that serves the DLQs (the default) marks dead letters failed and acknowledges
    them; run this while it is stopped or serving without DLQs, or the DLQ may be empty.
    """
    stages = [stage] if stage else list(STAGE_QUEUES)
    unknown = set(stages) - set(STAGE_QUEUES)
    if unknown:
        raise ValueError(f"unknown stage: {sorted(unknown)[0]} (one of {', '.join(STAGE_QUEUES)})")
    moved = 0
    for name in stages:
        dlq = dlq_name(name)
        while moved < max_messages:
            # A long visibility: a message in hand is not received twice by this loop.
            batch = queue.receive(dlq, max_messages=10, wait_s=0, visibility_s=300)
            if not batch:
                break
            for message in batch:
                if db is not None and name in _REOPEN_STATUS:
                    _reopen(db, message.body, name)
                queue.send_raw(name, message.body)
                queue.delete(dlq, message.receipt_handle)
                moved += 1
    return moved


# template.yaml's end of the line: dead letters the failures function could not record.
TERMINAL_DLQ = "unrecorded-dlq"


def redrive_terminal(queue) -> str:
    """Move the terminal DLQ's messages back to the stage DLQs they came from, where the
    failures function records them, with SQS's own message move task; return its handle.
    ``NotImplementedError`` where the endpoint has none (moto, ElasticMQ): there, nothing is
    moved, and `docpipe retry` (the database knows what each failed file needs) is the way."""
    return queue.start_move_task(TERMINAL_DLQ)


def _reopen(db, body: str, stage: str) -> None:
    shell_file_id = shell_file_id_of(body)
    if shell_file_id is not None:  # an invalid message goes back as is; its stage rejects it again
        db.reopen_for_redrive(shell_file_id, _REOPEN_STATUS[stage])


def _retryable_codes() -> list[str]:
    """Codes of failures a later try may well fix: every RetryableError's, a dead letter's, and
    those the runtimes record for children that crashed or were killed."""
    from shared import errors

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    codes = {cls.code for cls in (errors.RetryableError, *subclasses(errors.RetryableError))}
    return sorted(codes | {errors.RetriesExhaustedError.code, "crash", "killed", "memory_cap", "shutdown"})


def retry(deps, codes: list[str] | None = None, since: dt.datetime | None = None,
          ids: list[uuid.UUID] | None = None, limit: int = 10_000) -> list[dict]:
    """Retry failed files from the database (every runtime: it needs only the db and the queue).

    Selects failed files by ``codes`` (default: the retryable ones; a permanent code only when
    named, e.g. after a fix), ``since`` and ``ids`` (any code). Each is reopened to the state
    the stage it still needs expects, in one conditional UPDATE, and only the caller that
    reopened it sends what that state needs: a preprocess message before its pages exist, else
    what the fan-out repair sends (OCR for the pages without text, or the one discover
    message). Running it twice, or two at once, reopens and sends each file once; a pipeline_runs
    row (outcome 'reopened') records each. Returns what it did, ids, stages and codes only.

    A crash between the reopen and the send leaves the file active with nothing queued; the
    stages' idempotency makes ``retry --id`` after ``docpipe status`` safe, but it selects failed
    files only, so such a file is re-sent by hand (the window is one statement wide)."""
    from shared.stages.fanout import fan_out_missing
    from shared.models import PipelineRun, PreprocessMessage, Stage

    if codes is None and ids is None:
        codes = _retryable_codes()
    done = []
    for row in deps.db.failed_files(codes=codes, since=since, ids=ids, limit=limit):
        started_at = dt.datetime.now(dt.timezone.utc)
        stage = deps.db.reopen_failed(row["id"])
        if stage is None:
            continue  # another retry got there first
        if stage == Stage.PREPROCESS.value:
            deps.queue.send(stage, PreprocessMessage(shell_file_id=row["id"]))
        else:
            stage = fan_out_missing(deps, row["id"]) or stage
        deps.db.record_run(PipelineRun(
            stage=Stage(stage), shell_file_id=row["id"], attempt=0, outcome="reopened", error_code=None,
            started_at=started_at,
            duration_ms=(dt.datetime.now(dt.timezone.utc) - started_at).total_seconds() * 1000,
        ))
        done.append({"shell_file_id": str(row["id"]), "stage": stage, "was": row["error_code"]})
    return done


# The stage whose messages a file at this status waits on.
_STAGE_OF_STATUS = (
    "case f.status when 'ocr' then 'ocr' when 'discovering' then 'discover' else 'preprocess' end"
)
# A file's pending retry: among its current stage's messages since it was last reopened by
# `docpipe retry`, the latest whose last run ended in 'retry' (a dependency down, a throttle,
# a crash or a kill); that message is waiting for its next delivery. Joined laterally on f.
_PENDING_RETRY = f"""
    left join lateral (
        select last.error_code, last.attempt, last.started_at
        from (
            select distinct on (coalesce(r.message_id, '')) r.outcome, r.error_code, r.attempt, r.started_at
            from pipeline_runs r
            where r.shell_file_id = f.id and r.stage = {_STAGE_OF_STATUS}
              and r.started_at >= coalesce((select max(o.started_at) from pipeline_runs o
                                            where o.shell_file_id = f.id and o.outcome = 'reopened'), '-infinity')
            order by coalesce(r.message_id, ''), r.started_at desc, r.id desc
        ) last
        where last.outcome = 'retry'
        order by last.started_at desc
        limit 1
    ) retry on f.status in ('queued', 'preprocessing', 'ocr', 'discovering')
"""


def progress(db, shell_file_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    """Where each file is, for progress lines: status, pages (stored by preprocess, read: with
    text, native or OCR, of ``page_count``), the error code of a failed file, and the stage's
    pending retry (``retry_code``, ``retry_attempt``: the delivery that failed), if any. Ids,
    counts and codes only."""
    rows = db.query(
        "select f.id, f.status, f.page_count, f.error_code,"
        " (select count(*) from shell_file_pages p where p.shell_file_id = f.id) as pages_stored,"
        " (select count(*) from ocr_text_extractions t where t.shell_file_id = f.id) as pages_read,"
        f" {_STAGE_OF_STATUS} as stage,"
        " retry.error_code as retry_code, retry.attempt as retry_attempt"
        f" from shell_files f {_PENDING_RETRY}"
        " where f.id = any(%s)",
        (list(shell_file_ids),),
    )
    return {row["id"]: row for row in rows}


def waiting_on_retries(db, limit: int = 20) -> list[dict]:
    """Files still in progress whose stage is waiting for a retry, latest first: id, status,
    stage, the last error code and the attempt that failed, when."""
    rows = db.query(
        f"select f.id, f.status, {_STAGE_OF_STATUS} as stage,"
        " retry.error_code, retry.attempt, retry.started_at as last_at"
        f" from shell_files f {_PENDING_RETRY}"
        " where f.status in ('queued', 'preprocessing', 'ocr', 'discovering') and retry.attempt is not null"
        " order by retry.started_at desc limit %s",
        (limit,),
    )
    return [
        {"shell_file_id": str(r["id"]), "status": r["status"], "stage": r["stage"], "error_code": r["error_code"],
         "attempt": r["attempt"], "last_at": r["last_at"].isoformat()}
        for r in rows
    ]


# --- `docpipe delete` ------------------------------------------------------------------------

DELETE_SOURCE = "docpipe delete"


def delete_file(deps, shell_file_id: uuid.UUID, source: str = DELETE_SOURCE) -> dict:
    """Erase one file: its row goes (with every row that holds its content; the trigger records
    the erasure), then its objects, purged here. Deleting a file whose row is already gone (an
    app's DELETE) purges it now. Returns what was removed: ids, counts and times, no content;
    ``status`` is ``not_found`` when docpipe never knew the id."""
    deps.db.delete_files(source, shell_file_ids=[shell_file_id])
    erasure = deps.db.erasure(shell_file_id)
    if erasure is None:
        return {"shell_file_id": str(shell_file_id), "status": "not_found"}
    return _purge_and_report(deps, erasure)


def delete_patient(deps, patient_id: uuid.UUID, source: str = DELETE_SOURCE) -> list[dict]:
    """Erase every file of a patient (one transaction for the rows), then every object under the
    patient's prefixes, an upload that never got its row included (recorded as an erasure of
    its own). Returns one report per file, as ``delete_file``."""
    deleted = set(deps.db.delete_files(source, patient_id=patient_id))
    try:
        for prefix in patient_prefixes(patient_id):
            for shell_file_id in {file_of(key) for key in deps.storage.list_keys(prefix)} - {None}:
                if deps.db.erasure(shell_file_id) is None and deps.db.get_shell_file(shell_file_id) is None:
                    deps.db.record_erasure(shell_file_id, patient_id, source)
    except PipelineError as exc:  # Storage down: the rows are gone; run it again to find row-less uploads
        from shared.observability import logger

        logger.warning("could not list the patient's objects", extra={"error_code": exc.code})
    todo = [e for e in deps.db.erasures_of(patient_id) if e.shell_file_id in deleted or e.finished_at is None]
    return [_purge_and_report(deps, erasure) for erasure in todo]


def _purge_and_report(deps, erasure: Erasure) -> dict:
    from shared.stages import purge

    error_code = None
    try:
        erasure = purge.purge_file(deps, erasure.shell_file_id, wait=True) or deps.db.erasure(erasure.shell_file_id)
    except PipelineError as exc:
        error_code = exc.code
        erasure = deps.db.erasure(erasure.shell_file_id)
        # The pipeline finishes it once the dependency is back: this message (with backoff),
        # and in any case the next scan (the erasure stays due).
        if deps.queue is not None:
            try:
                deps.queue.send(Stage.PURGE.value, PurgeMessage(shell_file_id=erasure.shell_file_id))
            except PipelineError:
                pass
    return erasure_report(erasure, deps.settings.erasure_final_sweep_s, error_code)


def erasure_report(erasure: Erasure, final_sweep_s: float, error_code: str | None = None) -> dict:
    """An erasure as `docpipe delete --json` prints it."""
    due = erasure.requested_at + dt.timedelta(seconds=final_sweep_s)
    return {
        "shell_file_id": str(erasure.shell_file_id),
        "patient_id": str(erasure.patient_id),
        "status": erasure.status,
        "source": erasure.source,
        "requested_at": erasure.requested_at.isoformat(),
        "purged_at": erasure.purged_at.isoformat() if erasure.purged_at else None,
        "finished_at": erasure.finished_at.isoformat() if erasure.finished_at else None,
        "final_sweep_after": None if erasure.finished_at else due.isoformat(),
        "rows_removed": erasure.rows_removed,
        "objects_removed": erasure.objects_removed,
        "error_code": error_code or erasure.last_error_code,
    }


def status(deps, window_hours: float = 24.0, failure_limit: int = 10) -> dict:
    """A snapshot for operators: queue depths (DLQs included), files by status, recent
    failures by error code, and per-stage durations and peak RSS from pipeline_runs, all over
    the last ``window_hours`` where time matters. JSON-serialisable."""
    queues = {}
    for name in [*STAGE_QUEUES, *(dlq_name(q) for q in STAGE_QUEUES)]:
        visible, in_flight = deps.queue.depth(name)
        queues[name] = {"visible": visible, "in_flight": in_flight}
    db = deps.db
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=window_hours)
    files = {r["status"]: r["n"] for r in db.query("select status, count(*) as n from shell_files group by status")}
    failures = db.query(
        "select coalesce(error_code, 'unknown') as error_code, count(*) as files, max(updated_at) as last_at"
        " from shell_files where status = 'failed' and updated_at >= %s"
        " group by 1 order by files desc, last_at desc limit %s",
        (since, failure_limit),
    )
    stages = db.query(
        "select stage, count(*) as runs,"
        " count(*) filter (where outcome = 'succeeded') as succeeded,"
        " count(*) filter (where outcome = 'failed') as failed,"
        " count(*) filter (where outcome = 'retry') as retried,"
        " count(*) filter (where outcome = 'skipped') as skipped,"
        " percentile_cont(0.5) within group (order by duration_ms) as p50_ms,"
        " percentile_cont(0.95) within group (order by duration_ms) as p95_ms,"
        " max(duration_ms) as max_ms,"
        " percentile_cont(0.5) within group (order by peak_rss_kb) as p50_rss_kb,"
        " max(peak_rss_kb) as max_rss_kb"
        " from pipeline_runs where started_at >= %s group by stage order by stage",
        (since,),
    )
    erasures = db.query(
        "select count(*) filter (where purged_at is null) as pending,"
        " count(*) filter (where purged_at is not null and finished_at is null) as purged,"
        " count(*) filter (where finished_at is not null) as finished from erasures"
    )[0]
    return {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "window_hours": window_hours,
        "queues": queues,
        "files": files,
        # Deliveries a message gets before its DLQ (MAX_RECEIVE_COUNT, derived from RETRY_BUDGET_S).
        "max_attempts": deps.settings.max_receive_count,
        "waiting_on_retries": waiting_on_retries(db),
        "erasures": dict(erasures),
        "recent_failures": [
            {"error_code": r["error_code"], "files": r["files"], "last_at": r["last_at"].isoformat()} for r in failures
        ],
        "stages": {
            r["stage"]: {
                "runs": r["runs"], "succeeded": r["succeeded"], "failed": r["failed"], "retried": r["retried"],
                "skipped": r["skipped"],
                "p50_ms": _round(r["p50_ms"]), "p95_ms": _round(r["p95_ms"]), "max_ms": _round(r["max_ms"]),
                "p50_peak_rss_mb": _mb(r["p50_rss_kb"]), "max_peak_rss_mb": _mb(r["max_rss_kb"]),
            }
            for r in stages
        },
    }


def format_status(snapshot: dict, view_base: str | None = None) -> str:
    """The human view of ``status()`` (`docpipe status` without --json); with ``view_base``,
    each failure code links to the review page's list of its files."""
    lines = ["queues            visible  in flight"]
    for name, d in snapshot["queues"].items():
        flag = "  <- dead letters" if name.endswith("-dlq") and d["visible"] + d["in_flight"] else ""
        lines.append(f"  {name:16}{d['visible']:>7}{d['in_flight']:>11}{flag}")
    files = snapshot["files"]
    lines.append("files             " + (", ".join(f"{k}={v}" for k, v in sorted(files.items())) or "none"))
    waiting = snapshot.get("waiting_on_retries") or []
    lines.append(f"waiting on retries{len(waiting):>6} file(s)" + (" (the latest 20)" if len(waiting) >= 20 else ""))
    for w in waiting:
        lines.append(f"  {w['shell_file_id']}  {w['status']:13} {w['error_code']:24} attempt {w['attempt']} of "
                     f"{snapshot.get('max_attempts') or '?'}  {w['last_at'][:19]}")
    if "erasures" in snapshot:  # pending: objects not purged yet (Storage down?); purged: final sweep due
        lines.append("erasures          " + ", ".join(f"{k}={v}" for k, v in snapshot["erasures"].items()))
    lines.append(f"failures, last {snapshot['window_hours']:g} h")
    for f in snapshot["recent_failures"] or [{"error_code": "none", "files": 0, "last_at": ""}]:
        link = f"  {view_base}/?status=failed&error_code={f['error_code']}" if view_base and f["files"] else ""
        lines.append(f"  {f['error_code']:24}{f['files']:>6}  {f['last_at'][:19]}{link}")
    lines.append(f"stages, last {snapshot['window_hours']:g} h   runs   ok fail retry skip   p50 ms   p95 ms   "
                 "max ms  p50 MB  max MB")
    for stage, s in snapshot["stages"].items():
        lines.append(
            f"  {stage:18}{s['runs']:>6}{s['succeeded']:>5}{s['failed']:>5}{s['retried']:>6}{s['skipped']:>5}"
            f"{_cell(s['p50_ms']):>9}{_cell(s['p95_ms']):>9}{_cell(s['max_ms']):>9}"
            f"{_cell(s['p50_peak_rss_mb']):>8}{_cell(s['max_peak_rss_mb']):>8}"
        )
    if view_base:
        lines.append(f"review pages: run `docpipe view` in this environment, then open {view_base}/")
    return "\n".join(lines)


def _round(value) -> float | None:
    return None if value is None else round(float(value), 1)


def _mb(kb) -> float | None:
    return None if kb is None else round(float(kb) / 1024, 1)


def _cell(value) -> str:
    return "-" if value is None else f"{value:g}"
