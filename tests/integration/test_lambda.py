"""The Lambda contract on the real local stack: partial batch responses over SQS, a warm
process's memory, and logs and metrics free of patient data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import botocore.exceptions

from handlers import preprocess
from shared.models import FileStatus
from shared.runtime.events import LocalContext, queue_arn, sqs_event
from shared.submit import submit

ROOT = Path(__file__).resolve().parents[2]


def receive_all(deps, queue: str, count: int) -> list:
    """``count`` messages off ``queue`` (SQS may return fewer than asked per call)."""
    messages, deadline = [], time.monotonic() + 20
    while len(messages) < count and time.monotonic() < deadline:
        messages += deps.queue.receive(queue, max_messages=count - len(messages), wait_s=1)
    assert len(messages) == count
    return messages


def lambda_event(deps, queue: str, messages) -> dict:
    settings = deps.settings
    return sqs_event(messages, queue_arn(settings.aws_region, f"{settings.queue_prefix}-{queue}"), settings.aws_region)


# --- item 3 -------------------------------------------------------------------------------


def test_ten_record_batch_with_a_poison_document_and_a_timeout(stack_deps, samples_dir, monkeypatch):
    """Ten preprocess records in one event, as the event source mapping delivers them: eight
    good files, one poison (an encrypted PDF, a PermanentError) and one whose storage read
    times out (a RetryableError).

    The response lists the timed-out record only. The poison one is acknowledged, not
    retried: it is recorded on its file as failed with its code, exactly as DESIGN.md's
    error model (and the issue's own Handlers bullet) says of PermanentError; listing it
    would only buy a redelivery that can end no other way. The timed-out one succeeds on
    redelivery."""
    deps = stack_deps
    good = [submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4()) for _ in range(8)]
    poison = submit(deps, samples_dir / "locked.pdf", uuid.uuid4())
    slow = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    messages = receive_all(deps, "preprocess", 10)
    ids = {json.loads(m.body)["shell_file_id"]: m.message_id for m in messages}

    # The dependency that times out: S3 itself, for the one file's original.
    client = deps.storage._client
    real_get_object = client.get_object

    def get_object(**kwargs):
        if str(slow) in kwargs["Key"]:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=deps.settings.s3_endpoint)
        return real_get_object(**kwargs)

    monkeypatch.setattr(client, "get_object", get_object)

    response = preprocess.lambda_handler(lambda_event(deps, "preprocess", messages), LocalContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": ids[str(slow)]}]}
    row = deps.db.get_shell_file(poison)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "encrypted")
    assert "password" in row.error_message
    assert all(deps.db.get_shell_file(f).status == FileStatus.DISCOVERING for f in good)
    assert deps.db.get_shell_file(slow).status == FileStatus.PREPROCESSING
    runs = deps.db.query(
        "select shell_file_id, outcome, error_code from pipeline_runs where shell_file_id = any(%s)",
        ([poison, slow],),
    )
    assert {(r["shell_file_id"], r["outcome"], r["error_code"]) for r in runs} == {
        (poison, "failed", "encrypted"),
        (slow, "retry", "dependency_unavailable"),
    }

    # What Lambda does with the response: delete what succeeded; the listed record becomes
    # visible again (at once here, instead of after the visibility timeout).
    for m in messages:
        if m.message_id == ids[str(slow)]:
            deps.queue.release("preprocess", m.receipt_handle, 0)
        else:
            deps.queue.delete("preprocess", m.receipt_handle)
    monkeypatch.setattr(client, "get_object", real_get_object)  # the dependency is back

    [again] = receive_all(deps, "preprocess", 1)
    assert (again.message_id, again.receive_count) == (ids[str(slow)], 2)  # the poison never returns
    assert preprocess.lambda_handler(lambda_event(deps, "preprocess", [again]), LocalContext()) == {
        "batchItemFailures": []
    }
    deps.queue.delete("preprocess", again.receipt_handle)
    assert deps.db.get_shell_file(slow).status == FileStatus.DISCOVERING
    assert deps.queue.depth("preprocess") == (0, 0)
    assert deps.db.get_shell_file(poison).status == FileStatus.FAILED  # untouched by the redelivery


def test_a_poison_that_crashes_every_delivery_is_listed_then_dead_lettered(stack_deps, samples_dir, monkeypatch):
    """The issue's literal reading, for the kind of poison that is not a PermanentError: a
    record that crashes on every delivery (an unexpected exception, as a broken decoder
    raises). Its error is not known to be permanent, so it is listed beside the timed-out
    one: exactly those two ids. SQS delivers it MAX_RECEIVE_COUNT times, then moves it to
    the DLQ, where the failures handler marks its file failed; the timed-out one succeeds
    on redelivery."""
    from shared.runtime.worker import Worker

    deps = stack_deps
    good = [submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4()) for _ in range(8)]
    crasher = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    slow = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    client = deps.storage._client
    real_get_object = client.get_object
    timeouts = [1]

    def get_object(**kwargs):
        if str(crasher) in kwargs["Key"]:
            raise RuntimeError("the decoder blew up")
        if str(slow) in kwargs["Key"] and timeouts[0]:
            timeouts[0] -= 1
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=deps.settings.s3_endpoint)
        return real_get_object(**kwargs)

    monkeypatch.setattr(client, "get_object", get_object)
    messages = receive_all(deps, "preprocess", 10)
    ids = {json.loads(m.body)["shell_file_id"]: m.message_id for m in messages}

    response = preprocess.lambda_handler(lambda_event(deps, "preprocess", messages), LocalContext())

    listed = sorted(item["itemIdentifier"] for item in response["batchItemFailures"])
    assert listed == sorted([ids[str(crasher)], ids[str(slow)]])
    for m in messages:
        if m.message_id in listed:
            deps.queue.release("preprocess", m.receipt_handle, 0)
        else:
            deps.queue.delete("preprocess", m.receipt_handle)

    # Lambda's redeliveries, the redrive to the DLQ and the failures function, locally.
    Worker(deps, stages=["preprocess"], batch_size=10).run(burst=True, max_messages=20, idle_sleep_s=0.2)

    row = deps.db.get_shell_file(crasher)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "retries_exhausted")
    assert "preprocess" in row.error_message and "crash" in row.error_message
    attempts = deps.db.query(
        "select count(*) as n from pipeline_runs where shell_file_id = %s and error_code = 'crash'", (crasher,)
    )[0]["n"]
    assert attempts == deps.settings.max_receive_count
    assert deps.db.get_shell_file(slow).status == FileStatus.DISCOVERING
    assert all(deps.db.get_shell_file(f).status == FileStatus.DISCOVERING for f in good)


def test_each_record_reports_the_pages_it_handled(stack_deps, samples_dir, caplog, capsys):
    """The ``pages`` figure (log line and EMF metric) comes from the stage run itself: the
    document's pages for preprocess and discover, the message's pages for OCR."""
    from handlers import discover

    deps = stack_deps
    submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())  # 3 pages, all with a text layer
    caplog.set_level("INFO", logger="docpipe")
    for queue, handler in (("preprocess", preprocess), ("discover", discover)):
        [message] = receive_all(deps, queue, 1)
        assert handler.lambda_handler(lambda_event(deps, queue, [message]), LocalContext()) == {"batchItemFailures": []}
        deps.queue.delete(queue, message.receipt_handle)

    finished = [r for r in caplog.records if r.getMessage() == "stage finished"]
    assert [(r.outcome, r.pages) for r in finished] == [("succeeded", 3), ("succeeded", 3)]
    emf = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith('{"_aws"')]
    pages = [(line["stage"], line["pages"]) for line in emf if "pages" in line]  # not the cold-start line
    assert pages == [("preprocess", [3.0]), ("discover", [3.0])]


def test_on_lambda_a_failed_record_comes_back_after_its_backoff_not_the_visibility_timeout(
    stack_deps, samples_dir, monkeypatch
):
    """Lambda's context (no ``releases_failed_messages``): the handler itself makes each
    listed record visible again after the local runtimes' backoff: RETRY_DELAY_S (1 s in
    these tests) after a first failure, or the dependency's Retry-After when it gave one,
    instead of the queue's visibility timeout (an hour for preprocess in template.yaml;
    600 s at this receive)."""
    from shared.errors import ThrottledError

    deps = stack_deps
    ok = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    blip = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    throttled = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    real_download = deps.storage.download

    def download(key, dest, max_bytes=None):
        if str(blip) in key:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url=deps.settings.s3_endpoint)
        if str(throttled) in key:
            raise ThrottledError("storage asked us to slow down", retry_after_s=4)
        return real_download(key, dest, max_bytes=max_bytes)

    monkeypatch.setattr(deps.storage, "download", download)
    messages = []
    deadline = time.monotonic() + 20
    while len(messages) < 3 and time.monotonic() < deadline:  # as the event source mapping receives
        messages += deps.queue.receive("preprocess", max_messages=3 - len(messages), wait_s=1, visibility_s=600)
    ids = {json.loads(m.body)["shell_file_id"]: m.message_id for m in messages}
    lambda_context = LocalContext(function_name="docpipe-preprocess", releases_failed_messages=False)

    response = preprocess.lambda_handler(lambda_event(deps, "preprocess", messages), lambda_context)
    returned = time.monotonic()

    assert sorted(i["itemIdentifier"] for i in response["batchItemFailures"]) == sorted(
        [ids[str(blip)], ids[str(throttled)]]
    )
    deps.queue.delete("preprocess", next(m for m in messages if m.message_id == ids[str(ok)]).receipt_handle)
    back: dict[str, float] = {}
    while len(back) < 2 and time.monotonic() - returned < 30:
        for m in deps.queue.receive("preprocess", max_messages=10, wait_s=1, visibility_s=600):
            back.setdefault(m.message_id, time.monotonic() - returned)
    assert set(back) == {ids[str(blip)], ids[str(throttled)]}
    assert back[ids[str(blip)]] < 4.0  # 1 s backoff (+ polling), not 600 s
    assert 3.5 <= back[ids[str(throttled)]] < 9.0  # its Retry-After of 4 s


def test_worker_batch_size_delivers_multi_record_events(stack_deps, samples_dir):
    """`docpipe worker --batch-size 10` is this Worker: one event of up to ten records per
    handler call, failures released for redelivery, the rest deleted."""
    from shared.runtime.worker import Worker

    files = [submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4()) for _ in range(4)]
    files.append(submit(stack_deps, samples_dir / "locked.pdf", uuid.uuid4()))
    sizes: list[int] = []
    worker = Worker(stack_deps, stages=["preprocess", "discover"], batch_size=10, include_dlqs=False)
    worker.on_batch = lambda queue, messages, failed: sizes.append(len(messages))
    worker.run(burst=True, max_messages=50, idle_sleep_s=0.05)
    assert max(sizes) > 1  # records really shared events
    statuses = [stack_deps.db.get_shell_file(f).status for f in files]
    assert statuses == [FileStatus.COMPLETED] * 4 + [FileStatus.FAILED]


def test_a_warm_container_keeps_one_pooler_safe_connection(stack_deps, samples_dir):
    """Supabase's transaction pooler hands each transaction to any server connection, so a
    server-side prepared statement would not be there next time: psycopg must never prepare
    (it does after 5 runs of a query by default). And a warm container reuses its one
    connection across invocations instead of opening one per record."""
    from handlers import discover

    db = stack_deps.db
    pid = db.query("select pg_backend_pid() as pid")[0]["pid"]
    for _ in range(4):
        sfid = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
        event = lambda_event(stack_deps, "preprocess", receive_all(stack_deps, "preprocess", 1))
        assert preprocess.lambda_handler(event, LocalContext()) == {"batchItemFailures": []}
        event = lambda_event(stack_deps, "discover", receive_all(stack_deps, "discover", 1))
        assert discover.lambda_handler(event, LocalContext()) == {"batchItemFailures": []}
        assert db.get_shell_file(sfid).status == FileStatus.COMPLETED
    assert db.query("select pg_backend_pid() as pid")[0]["pid"] == pid
    assert db.query("select count(*) as n from pg_prepared_statements")[0]["n"] == 0


# --- items 4 and 5: a warm process, in a subprocess of its own ---------------------------


def run_warm_lambda(stack_env, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**stack_env, "POWERTOOLS_METRICS_DISABLED": "false", **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.warm_lambda", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )


def report_of(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_warm_process_serving_200_records_keeps_its_rss(stack_deps, stack_env):
    """Item 4: 200 records through lambda_handler in one process (preprocess, OCR and
    discover of text and scanned PDFs); RSS after record 200 within 30 MB of record 10."""
    result = run_warm_lambda(stack_env, "--records", "200", "--report-after", "10",
                             extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"})
    report = report_of(result)
    print("warm lambda:", json.dumps(report))
    assert report["records"] >= 200
    assert report["completed"] == report["files"]
    assert report["growth_mb"] is not None and report["growth_mb"] <= 30, report


def test_logs_and_metrics_never_carry_the_canary(stack_deps, stack_env):
    """Item 5: a patient's name planted in every document's text, in what OCR reads and in
    the file names; all stages run through lambda_handler with DEBUG logs and metrics on.
    Everything the process wrote (stdout and stderr: logs, EMF metrics, warnings) has ids
    and figures, and never the name."""
    canary = "Zebediah Canarywood"
    result = run_warm_lambda(stack_env, "--records", "30", "--canary", canary, "--batch-size", "3",
                             extra_env={"POWERTOOLS_LOG_LEVEL": "DEBUG"})
    report = report_of(result)
    assert report["canary_in_page_texts"] is True  # it did go through the pipeline
    assert report["completed"] == report["files"] > 0

    output = result.stdout + result.stderr
    for part in (canary, *canary.split()):
        assert part.lower() not in output.lower(), f"{part!r} leaked into the output"

    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    logs = [line for line in lines if "message" in line]
    emf = [line for line in lines if "_aws" in line]
    assert any(line.get("shell_file_id") and line.get("stage") for line in logs)  # ids
    assert any(line.get("message") == "stage finished" and "duration_ms" in line for line in logs)  # figures
    metric_names = {m["Name"] for line in emf for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"pages", "duration", "peak_rss", "records", "batch_item_failures"} <= metric_names


# --- the CLI: `docpipe invoke` and `docpipe worker --batch-size` --------------------------


def cli(stack_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args], cwd=ROOT, env=stack_env, capture_output=True, text=True, timeout=120
    )


def test_docpipe_invoke_runs_a_stage_on_an_event_file(stack_deps, stack_env, samples_dir):
    sfid = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    events = ROOT / "tests" / "events"

    # discover before preprocess: not ready, a retryable failure, listed; exit status 1.
    early = cli(stack_env, "invoke", "discover", "--event", str(events / "discover.json"), "--shell-file-id", str(sfid))
    assert early.returncode == 1, early.stderr[-2000:]
    assert json.loads(early.stdout) == {"batchItemFailures": [{"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975830a7d"}]}

    done = cli(stack_env, "invoke", "preprocess", "--event", str(events / "preprocess.json"), "--shell-file-id", str(sfid))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"batchItemFailures": []}
    assert stack_deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING

    # A stale dead letter from the preprocess DLQ (a duplicate of a message whose work was
    # done): the file is past preprocess, so the failures function leaves it alone.
    dead = cli(stack_env, "invoke", "failures", "--event", str(events / "failures.json"), "--shell-file-id", str(sfid))
    assert dead.returncode == 0 and json.loads(dead.stdout) == {"batchItemFailures": []}
    assert stack_deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING

    # The same dead letter for a file still at preprocess fails it, with the last code its
    # runs recorded.
    stuck = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    early = cli(stack_env, "invoke", "discover", "--event", str(events / "discover.json"), "--shell-file-id", str(stuck))
    assert early.returncode == 1
    dead = cli(stack_env, "invoke", "failures", "--event", str(events / "failures.json"), "--shell-file-id", str(stuck))
    assert dead.returncode == 0 and json.loads(dead.stdout) == {"batchItemFailures": []}
    row = stack_deps.db.get_shell_file(stuck)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "not_ready")

    bad = cli(stack_env, "invoke", "ocr", "--event", str(events / "no-such-event.json"))
    assert bad.returncode == 2


def test_docpipe_worker_batch_size(stack_deps, stack_env, samples_dir):
    files = [submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4()) for _ in range(3)]
    result = cli(stack_env, "worker", "--burst", "--batch-size", "5", "--stages", "preprocess,discover")
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"preprocess: batch of [2-5]", result.stderr), result.stderr[-2000:]
    assert "in batches of up to 5" in result.stderr
    assert all(stack_deps.db.get_shell_file(f).status == FileStatus.COMPLETED for f in files)
    assert cli(stack_env, "worker", "--batch-size", "11").returncode == 2
