"""Erasure in the production configuration (issue 27): `docpipe lambda up` runs template.yaml with
EncounterProvider=openai, StorageBackend=supabase (the real Storage server), FhirOutput=storage,
Textract and the database through PgBouncer; documents are deleted while OCR reads them (a plain DELETE, as a
Supabase app does), after they completed (`docpipe delete --file`, and a plain DELETE the
scheduled purge finds), and a patient's every file (`docpipe delete --patient`). Nothing of them
is left in Storage or in any content table, and none of their messages crashed or was retried."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.e2e.test_cli import GOOD, REPO, docpipe
from tests.servers import TEXTRACT_FIXTURES, RecordedTextract, SchemaAnsweringOpenAi

pytestmark = pytest.mark.slow


class SlowTextract(RecordedTextract):
    """A page takes a while to read, so a deletion can land while OCR is under way."""

    def answer(self, path, headers, body):
        time.sleep(3.0)
        return super().answer(path, headers, body)


def _wait(what, predicate, timeout_s: float, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def test_deletions_in_the_production_configuration_leave_nothing(samples_dir, tmp_path, local_stack, supabase_storage):
    fixture = TEXTRACT_FIXTURES / "single-page-1.png.textract.json"
    if not fixture.is_file():
        pytest.skip("../shared/fixtures/textract is absent")
    bucket = f"docpipe-{uuid.uuid4().hex[:8]}"
    script = Path(sys.executable).with_name("docpipe")
    err = open(tmp_path / "stderr.txt", "w")  # function logs stream here: never a full pipe
    with SlowTextract(fixture) as textract, SchemaAnsweringOpenAi() as openai_server:
        proc = subprocess.Popen(
            [str(script), "lambda", "up", "--data-dir", str(tmp_path / "lambda"),
             "--database-url", local_stack.database_url,
             "--parameter-overrides", "EncounterProvider=openai", "StorageBackend=supabase", "FhirOutput=storage",
             f"SupabaseUrl={supabase_storage.env['SUPABASE_URL']}", f"StorageBucketName={bucket}",
             "PreprocessMaxConcurrency=2", "OcrMaxConcurrency=2", "DiscoverMaxConcurrency=2",
             "--supabase-service-role-key", supabase_storage.env["SUPABASE_SERVICE_ROLE_KEY"],
             "--openai-base-url", openai_server.base_url, "--textract-endpoint-url", textract.url,
             "--schedule-interval", "2"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
        )
        try:
            env = {}
            for line in proc.stdout:
                if line.startswith("export "):
                    key, _, value = line[len("export "):].strip().partition("=")
                    env[key] = value.strip("'")
                if line.startswith("# Lambda functions up"):
                    break
            assert env.get("STORAGE_BACKEND") == "supabase", (env, (tmp_path / "stderr.txt").read_text()[-3000:])
            # The operator's and the uploader's environment: the exports, and the service-role key
            env.update(SUPABASE_SERVICE_ROLE_KEY=supabase_storage.env["SUPABASE_SERVICE_ROLE_KEY"],
                       POWERTOOLS_LOG_LEVEL="ERROR")

            def submit(name: str, patient: uuid.UUID) -> str:
                result = docpipe("submit", samples_dir / name, "--patient-id", patient, env=env)
                assert result.returncode == 0, result.stderr[-2000:]
                return result.stdout.strip()

            patient, other = uuid.uuid4(), uuid.uuid4()
            files = {
                "docpipe delete --file": submit("two_visits.pdf", patient),
                "plain DELETE, completed": submit("two_visits.pdf", patient),
            }
            patients_files = [submit("two_visits.pdf", other), submit(GOOD[3], other)]
            conn = psycopg.connect(local_stack.database_url, autocommit=True)
            files["during ocr"] = submit("scanned_discharge.pdf", patient)  # last: its OCR is watched

            def status(sfid):
                row = conn.execute("select status from shell_files where id = %s", (sfid,)).fetchone()
                return row[0] if row else None

            # A Supabase app deletes the scanned file's row while Textract reads its pages
            _wait("OCR of the scanned file", lambda: status(files["during ocr"]) == "ocr", 180, 0.1)
            conn.execute("delete from shell_files where id = %s", (files["during ocr"],))
            for sfid in [files["docpipe delete --file"], files["plain DELETE, completed"], *patients_files]:
                _wait(f"{sfid} completed", lambda s=sfid: status(s) == "completed", 180)

            # The operator deletes one completed file and a patient; the app deletes another row
            deleted = docpipe("delete", "--file", files["docpipe delete --file"], "--json", env=env)
            assert deleted.returncode == 0, deleted.stderr[-3000:]
            (report,) = [json.loads(line) for line in deleted.stdout.splitlines()]
            # the original, three page images and the FHIR Bundle the discover function stored
            assert report["objects_removed"] == 5 and report["rows_removed"]["shell_file_pages"] == 3
            by_patient = docpipe("delete", "--patient", other, "--json", env=env)
            assert by_patient.returncode == 0, by_patient.stderr[-3000:]
            assert sorted(json.loads(line)["shell_file_id"] for line in by_patient.stdout.splitlines()) == sorted(
                patients_files)
            conn.execute("delete from shell_files where id = %s", (files["plain DELETE, completed"],))

            # Then the purge function (its queue and its schedule) finishes what the app began
            every = [*files.values(), *patients_files]
            _wait("every erasure purged", lambda: conn.execute(
                "select count(*) from erasures where shell_file_id = any(%s::uuid[]) and purged_at is not null",
                (every,)).fetchone()[0] == len(every), 120)
            # ... and the OCR messages of the file deleted under them have ended quietly
            _wait("the deleted file's OCR messages", lambda: ("ocr", "deleted") in {
                tuple(r) for r in conn.execute(
                    "select stage, outcome from pipeline_runs where shell_file_id = %s", (files["during ocr"],))}, 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=90)
            err.close()

    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    left = conn.execute(
        "select name from storage.objects where bucket_id = %s and (starts_with(name, %s) or starts_with(name, %s))",
        (bucket, f"originals/{patient}/", f"originals/{other}/"),
    ).fetchall() + conn.execute(
        "select name from storage.objects where bucket_id = %s and (starts_with(name, %s) or starts_with(name, %s))",
        (bucket, f"processed/{patient}/", f"processed/{other}/"),
    ).fetchall()
    assert left == []
    tables = [r[0] for r in conn.execute(
        "select table_name from information_schema.columns where table_schema = 'public'"
        " and column_name = 'shell_file_id' and table_name not in ('pipeline_runs', 'erasures')")]
    for table in tables:
        n = conn.execute(f"select count(*) from {table} where shell_file_id = any(%s::uuid[])", (every,)).fetchone()[0]
        assert n == 0, table
    assert conn.execute("select count(*) from shell_files where id = any(%s::uuid[])", (every,)).fetchone()[0] == 0
    outcomes = conn.execute(
        "select stage, outcome, error_code from pipeline_runs where shell_file_id = any(%s::uuid[])"
        " and outcome not in ('succeeded', 'skipped', 'deleted')", (every,)).fetchall()
    assert outcomes == []
    records = {str(r[0]): r[1:] for r in conn.execute(
        "select shell_file_id, source, objects_removed, rows_removed from erasures"
        " where shell_file_id = any(%s::uuid[])",
        (every,))}
    assert records[files["plain DELETE, completed"]][:2] == ("row delete", 5)
    assert records[files["during ocr"]][0] == "row delete" and records[files["during ocr"]][1] == 3
    assert records[files["docpipe delete --file"]][:2] == ("docpipe delete", 5)
    conn.close()
    # The purge function ran, as Lambda runs it, from its queue and from its schedule
    assert "PurgeFunction REPORT RequestId: " in stderr
