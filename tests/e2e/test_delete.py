"""`docpipe delete` on the embedded runtime, as a user runs it: what `docpipe process --data-dir`
stored is erased from its database and its storage directory, and says so in ids and counts."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.e2e.test_cli import docpipe, lines

pytest.importorskip("pgserver")


def test_delete_erases_what_process_stored(samples_dir, tmp_path):
    data = tmp_path / "data"
    patient = uuid.uuid4()
    processed = docpipe("process", "--json", "--quiet", "--data-dir", data, "--patient-id", patient,
                        samples_dir / "two_visits.pdf", samples_dir / "two_visits.pdf")
    assert processed.returncode == 0, processed.stderr[-3000:]
    gone, kept = (r["shell_file_id"] for r in lines(processed))

    deleted = docpipe("delete", "--data-dir", data, "--file", gone, "--json")
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    (report,) = lines(deleted)
    assert (report["status"], report["objects_removed"]) == ("finished", 4)  # nothing of `process` runs after it
    assert report["rows_removed"]["shell_files"] == 1 and report["rows_removed"]["shell_file_pages"] == 3
    assert "two_visits" not in deleted.stdout + deleted.stderr

    # Then its files are gone from the storage directory, not even an empty folder named for it,
    # and the other file is whole
    names = [p.relative_to(data / "storage").as_posix() for p in (data / "storage").rglob("*")]
    assert not [n for n in names if gone in n]
    assert len([n for n in names if kept in n and n.endswith((".jpg", ".pdf"))]) == 4
    # ... and a human line says what happened, for the second file too
    again = docpipe("delete", "--data-dir", data, "--file", kept)
    assert again.returncode == 0 and f"{kept}  finished  rows" in again.stdout, again.stderr[-2000:]
    assert "objects 4" in again.stdout
    assert not any((data / "storage").rglob("*.jpg"))
    unknown = docpipe("delete", "--data-dir", data, "--file", str(uuid.uuid4()))
    assert unknown.returncode == 1 and "not found" in unknown.stdout
    # The erasures are in the embedded database for the record
    import pgserver

    pg = pgserver.get_server(data / "pg", cleanup_mode="stop")
    try:
        with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
            rows = conn.execute("select shell_file_id::text, source, objects_removed, finished_at is not null"
                                " from erasures order by requested_at").fetchall()
    finally:
        pg.cleanup()
    assert rows == [(gone, "docpipe delete", 4, True), (kept, "docpipe delete", 4, True)]
