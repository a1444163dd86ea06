"""`shared.ops` on the real local servers: redrive moves dead letters back and the file then
completes; status reports queues, files, failures and stage figures."""

from __future__ import annotations

import json
import uuid

import pytest

from shared import ops
from shared.models import FileStatus
from shared.runtime.supervisor import Supervisor
from shared.submit import submit


def _dead_letter(deps) -> None:
    """Let the SQS redrive policy itself move the file's preprocess message to the DLQ: receive
    it maxReceiveCount times without deleting it."""
    for _ in range(deps.settings.max_receive_count):
        assert deps.queue.receive("preprocess", visibility_s=0)
    assert deps.queue.receive("preprocess", visibility_s=0) == []
    assert deps.queue.depth("preprocess-dlq") == (1, 0)


def test_redrive_moves_a_dead_letter_back_and_the_file_completes(stack_deps, samples_dir, tmp_path):
    sfid = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    _dead_letter(stack_deps)
    # The failures handler would have marked it failed when it read the DLQ.
    stack_deps.db.mark_failed(sfid, "retries_exhausted", "the preprocess stage failed on every delivery")

    assert ops.redrive(stack_deps.queue, "ocr", db=stack_deps.db) == 0  # another stage's DLQ: nothing
    assert ops.redrive(stack_deps.queue, "preprocess", db=stack_deps.db) == 1
    assert stack_deps.queue.depth("preprocess-dlq") == (0, 0)
    assert stack_deps.queue.depth("preprocess") == (1, 0)
    row = stack_deps.db.get_shell_file(sfid)
    assert row.status == FileStatus.QUEUED and row.error_code is None

    settings = stack_deps.settings.model_copy(update={"worker_tmp_dir": tmp_path})
    Supervisor(settings, stack_deps.queue).run(burst=True)
    assert stack_deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED


def test_redrive_every_stage_keeps_bodies_and_leaves_other_files_alone(stack_deps):
    done = uuid.uuid4()
    bodies = {"ocr": json.dumps({"shell_file_id": str(done), "page_numbers": [2]}),
              "discover": json.dumps({"shell_file_id": str(uuid.uuid4())}),
              "preprocess": "not json"}
    for stage, body in bodies.items():
        stack_deps.queue.send_raw(f"{stage}-dlq", body)
    assert ops.redrive(stack_deps.queue, db=stack_deps.db) == 3
    for stage, body in bodies.items():
        got = stack_deps.queue.receive(stage)
        assert [m.body for m in got] == [body]  # byte for byte
        assert stack_deps.queue.depth(f"{stage}-dlq") == (0, 0)
    with pytest.raises(ValueError):
        ops.redrive(stack_deps.queue, "ocr-dlq")


def test_status_reports_queues_files_failures_and_stages(stack_deps, samples_dir, tmp_path):
    ok = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    bad = submit(stack_deps, samples_dir / "empty.pdf", uuid.uuid4())
    stack_deps.queue.send_raw("discover-dlq", json.dumps({"shell_file_id": str(uuid.uuid4())}))
    settings = stack_deps.settings.model_copy(update={"worker_tmp_dir": tmp_path})
    Supervisor(settings, stack_deps.queue, include_dlqs=False).run(burst=True)
    assert stack_deps.db.get_shell_file(ok).status == FileStatus.COMPLETED
    bad_code = stack_deps.db.get_shell_file(bad).error_code

    snapshot = ops.status(stack_deps)
    json.dumps(snapshot)  # serialisable as is, for --json
    assert set(snapshot["queues"]) == {"preprocess", "ocr", "discover", "purge",
                                       "preprocess-dlq", "ocr-dlq", "discover-dlq", "purge-dlq"}
    assert set(snapshot["erasures"]) == {"pending", "purged", "finished"}
    assert snapshot["queues"]["discover-dlq"] == {"visible": 1, "in_flight": 0}
    assert snapshot["files"]["completed"] >= 1 and snapshot["files"]["failed"] >= 1
    assert bad_code in {f["error_code"] for f in snapshot["recent_failures"]}
    pre = snapshot["stages"]["preprocess"]
    assert pre["runs"] >= 2 and pre["succeeded"] >= 1 and pre["failed"] >= 1
    assert pre["p50_ms"] > 0 and pre["max_ms"] >= pre["p95_ms"] >= pre["p50_ms"]
    assert pre["max_peak_rss_mb"] > 10
    text = ops.format_status(snapshot)
    assert "discover-dlq" in text and "dead letters" in text and bad_code in text and "erasures" in text
    assert "two_visits" not in text and "empty.pdf" not in text  # ids and figures only


def test_status_lists_files_waiting_on_retries_with_their_last_code(stack_deps, samples_dir, tmp_path):
    from pydantic import SecretStr

    from shared.runtime.localstack import free_port

    # Given a file whose discover cannot reach its model endpoint (nothing listens there)
    waiting = submit(stack_deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    settings = stack_deps.settings.model_copy(update={
        "worker_tmp_dir": tmp_path, "encounter_provider": "openai", "openai_api_key": SecretStr("sk-local"),
        "openai_base_url": f"http://127.0.0.1:{free_port()}/v1", "retry_delay_s": 60,
    })
    # When preprocess and one discover delivery have run (the next is a minute away)
    Supervisor(settings, stack_deps.queue).run(burst=True, max_messages=2)
    assert stack_deps.db.get_shell_file(waiting).status == FileStatus.DISCOVERING

    # Then `docpipe status` lists it, with the code and the attempt that failed
    snapshot = ops.status(stack_deps)
    json.dumps(snapshot)
    mine = [w for w in snapshot["waiting_on_retries"] if w["shell_file_id"] == str(waiting)]
    assert len(mine) == 1, snapshot["waiting_on_retries"]
    assert (mine[0]["status"], mine[0]["stage"], mine[0]["error_code"], mine[0]["attempt"]) == (
        "discovering", "discover", "dependency_unavailable", 1)
    text = ops.format_status(snapshot)
    assert f"{waiting}  discovering" in text
    assert "dependency_unavailable" in text and f"attempt 1 of {stack_deps.settings.max_receive_count}" in text
    # ... and progress says the same of it
    state = ops.progress(stack_deps.db, [waiting])[waiting]
    assert (state["status"], state["retry_code"], state["retry_attempt"]) == ("discovering", "dependency_unavailable", 1)
    assert state["page_count"] == state["pages_read"] == state["pages_stored"] == 3

    # When the endpoint answers again (here: the file is retried from scratch by `docpipe retry`
    # after failing), the old retry no longer shows
    stack_deps.db.mark_failed(waiting, "dependency_unavailable", "the model endpoint could not be reached")
    assert ops.progress(stack_deps.db, [waiting])[waiting]["retry_code"] is None
    ops.retry(stack_deps, ids=[waiting])
    assert ops.progress(stack_deps.db, [waiting])[waiting]["retry_code"] is None
    assert str(waiting) not in {w["shell_file_id"] for w in ops.status(stack_deps)["waiting_on_retries"]}
