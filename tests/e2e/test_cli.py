"""`docpipe` as a user runs it: a real process, the embedded local stack, generated documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import needs_tesseract
from tests.fakes import is_stored

REPO = Path(__file__).resolve().parents[2]
GOOD = ["two_visits.pdf", "scanned_discharge.pdf", "fax_referral.tiff", "lab_photo.jpg", "phone_letter.heic"]


def docpipe(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("docpipe")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]
    return subprocess.run(
        [*cmd, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@needs_tesseract()
def test_process_reads_every_kind_of_document(samples_dir, tmp_path):
    data = tmp_path / "data"
    result = docpipe("process", "--json", "--with-text", "--data-dir", data, *[samples_dir / n for n in GOOD])
    assert result.returncode == 0, result.stderr[-3000:]
    reports = {Path(r["file"]).name: r for r in lines(result)}
    assert list(reports) == GOOD
    for name, report in reports.items():
        assert report["status"] == "completed", (name, report["error_code"], report["error_message"])
        assert report["page_count"] == len(report["pages"]) >= 1
        assert [p["page_number"] for p in report["pages"]] == list(range(1, report["page_count"] + 1))
        expected_source = "native" if name == "two_visits.pdf" else "ocr"
        for page in report["pages"]:
            assert page["text_source"] == expected_source, (name, page["page_number"])
            assert page["chars"] > 50, (name, page["page_number"])
        assert len(report["encounters"]) >= 1, name
        uuid.UUID(report["shell_file_id"])
        patient_dir = next((data / "storage" / "processed").iterdir())
        jpegs = sorted((patient_dir / report["shell_file_id"]).glob("page-*.jpg"))
        assert len(jpegs) == report["page_count"]
        assert all(j.read_bytes()[:3] == b"\xff\xd8\xff" for j in jpegs)
    two = reports["two_visits.pdf"]["encounters"]
    assert len(two) == 2 and two[0]["date_start"] != two[1]["date_start"]
    # Upright text read correctly: the photographed (EXIF 6) and faxed pages read as words.
    words = {name: " ".join(p["text"] for p in r["pages"]).lower() for name, r in reports.items()}
    for name in GOOD[1:]:
        assert sum(w in words[name] for w in ("patient", "date", "dr")) >= 2, name


@needs_tesseract()
def test_bad_files_fail_alone_with_their_own_codes(samples_dir, tmp_path):
    names = ["empty.pdf", "truncated.pdf", "locked.pdf", "image_named.pdf", "notes.txt", "two_visits.pdf"]
    result = docpipe("process", "--json", "--data-dir", tmp_path / "data", *[samples_dir / n for n in names])
    assert result.returncode == 1, result.stderr[-3000:]
    reports = {Path(r["file"]).name: r for r in lines(result)}
    outcome = {n: (r["status"], r["error_code"]) for n, r in reports.items()}
    assert outcome == {
        "empty.pdf": ("failed", "empty_file"),
        "truncated.pdf": ("failed", "unreadable_document"),
        "locked.pdf": ("failed", "encrypted"),
        "image_named.pdf": ("completed", None),
        "notes.txt": ("failed", "unsupported_type"),
        "two_visits.pdf": ("completed", None),
    }
    assert reports["image_named.pdf"]["mime_type"] == "image/png"
    for name, report in reports.items():
        if report["status"] == "failed":
            assert len(report["error_message"]) > 10, name
            assert name not in report["error_message"]


def test_usage_errors_exit_2(tmp_path):
    assert docpipe("process").returncode == 2
    assert docpipe("process", tmp_path / "missing.pdf").returncode == 2
    real = tmp_path / "real.pdf"
    real.write_bytes(b"%PDF-1.7\n")
    assert docpipe("process", "--patient-id", "nope", real).returncode == 2
    assert docpipe("frobnicate").returncode == 2


@pytest.mark.pooler
def test_submit_then_worker_on_a_configured_stack(local_stack, database_url, samples_dir):
    """The non-embedded path: `migrate`, `submit` and `worker --burst` on a stack named by the
    environment; directly and through PgBouncer in transaction mode (Supabase's pooler)."""
    env = {**local_stack.env(), "DATABASE_URL": database_url, "QUEUE_PREFIX": f"cli{uuid.uuid4().hex[:8]}", "STORAGE_BUCKET": "docpipe-cli"}
    from shared.bootstrap import build_deps
    from shared.settings import Settings
    from shared.submit import provision

    settings = Settings(**{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    deps = build_deps(settings)
    provision(deps)
    assert docpipe("migrate", env=env).returncode == 0
    submitted = docpipe("submit", samples_dir / "two_visits.pdf", "--patient-id", uuid.uuid4(), env=env)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    sfid = uuid.UUID(submitted.stdout.strip())
    worked = docpipe("worker", "--burst", env=env)
    assert worked.returncode == 0, worked.stderr[-2000:]
    row = deps.db.get_shell_file(sfid)
    assert row.status.value == "completed" and row.page_count == 3
    assert all(is_stored(deps.storage, p.storage_key) for p in deps.db.pages(sfid))
    deps.db.close()


def test_local_up_prints_a_working_environment(tmp_path):
    """`docpipe local up` starts the stack, prints exports that work, and stops on SIGTERM."""
    script = Path(sys.executable).with_name("docpipe")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]
    proc = subprocess.Popen([*cmd, "local", "up", "--data-dir", str(tmp_path / "stack")], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        env = {}
        for line in proc.stdout:
            if line.startswith("# local stack up"):
                break
            key, _, value = line.removeprefix("export ").strip().partition("=")
            env[key] = value.strip("'")
        assert {"DATABASE_URL", "AWS_ENDPOINT_URL", "QUEUE_PREFIX"} <= set(env)
        from shared.adapters.aws import SqsQueue
        from shared.adapters.postgres import PostgresDb

        db = PostgresDb(env["DATABASE_URL"])
        assert db.query("select count(*) as n from shell_files")[0]["n"] == 0  # migrated
        db.close()
        queue = SqsQueue(env["QUEUE_PREFIX"], "us-east-1", env["AWS_ENDPOINT_URL"])
        assert queue.depth("preprocess") == (0, 0) and queue.depth("ocr-dlq") == (0, 0)
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_status_and_redrive_on_a_configured_stack(local_stack, samples_dir):
    """A dead letter held by `worker --no-dlqs` is shown by `status`, moved back by `redrive`,
    and completes on the next burst."""
    env = {**local_stack.env(), "QUEUE_PREFIX": f"ops{uuid.uuid4().hex[:8]}", "STORAGE_BUCKET": "docpipe-ops",
           "MAX_RECEIVE_COUNT": "1"}
    from shared.bootstrap import build_deps
    from shared.settings import Settings
    from shared.submit import provision, submit

    settings = Settings(**{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    deps = build_deps(settings)
    provision(deps)
    sfid = submit(deps, samples_dir / "two_visits.pdf", uuid.uuid4())
    [msg] = deps.queue.receive("preprocess")  # a delivery that never finished: next receive dead-letters it
    deps.queue.release("preprocess", msg.receipt_handle, 0)
    assert deps.queue.receive("preprocess") == []
    assert deps.queue.depth("preprocess-dlq") == (1, 0)
    assert docpipe("worker", "--burst", "--no-dlqs", env=env).returncode == 0
    shown = docpipe("status", "--json", env=env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    snapshot = json.loads(shown.stdout)
    assert "preprocess-dlq" in json.dumps(snapshot["queues"])
    moved = docpipe("redrive", env=env)
    assert moved.returncode == 0 and "moved 1" in moved.stderr
    assert docpipe("worker", "--burst", env=env).returncode == 0
    assert deps.db.get_shell_file(sfid).status.value == "completed"
    deps.db.close()
