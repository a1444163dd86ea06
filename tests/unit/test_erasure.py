"""Erasure logic over in-memory fakes of the ports: the deletion guard in each stage, the purge
and its lease, the final sweep, the scan, and the worker's scan timer."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pymupdf
import pytest

from shared import ops
from shared.bootstrap import Deps
from shared.keys import check_prefix, file_of, file_prefixes
from shared.models import FileStatus, Stage
from shared.runtime.records import handle_record
from shared.runtime.worker import ScanTimer, serving_order
from shared.settings import Settings
from shared.stages import discover, ocr, preprocess, purge
from shared.submit import submit
from tests.fakes import CannedOcr, InMemoryDb, InMemoryQueue, InMemoryStorage, OneEncounterPerDocument
from tests.unit.test_stages import _record

RUNS = {Stage.PREPROCESS: preprocess.run, Stage.OCR: ocr.run, Stage.DISCOVER: discover.run, Stage.PURGE: purge.run}


@pytest.fixture
def deps(tmp_path):
    return Deps(
        settings=Settings(storage_backend="local", local_storage_dir=tmp_path / "store", erasure_final_sweep_s=0),
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=InMemoryDb(),
        ocr=CannedOcr(),
        encounters=OneEncounterPerDocument(),
    )


def _pdf(path, pages=2, text=True):
    doc = pymupdf.open()
    for n in range(pages):
        page = doc.new_page()
        if text:
            page.insert_text((72, 100), f"Clinic Visit Note page {n + 1}. Seen on 2024-03-05 by Dr Jane Smith.")
        else:
            page.draw_rect(pymupdf.Rect(72, 72, 300, 120), fill=(0, 0, 0))
    doc.save(path)
    return path


def deliver(deps, stage: Stage) -> list[str]:
    """Every queued message of ``stage`` once through the record wrapper; the runs' outcomes."""
    before = len(deps.db.runs)
    for msg in deps.queue.receive(stage.value, max_messages=100):
        handle_record(stage, _record(stage, msg.body, msg.receive_count), RUNS[stage], deps)
    return [r.outcome for r in deps.db.runs[before:]]


def objects_of(deps, row) -> list[str]:
    return [k for p in file_prefixes(row.patient_id, row.id) for k in deps.storage.list_keys(p)]


def test_a_message_of_a_deleted_file_ends_quietly_and_asks_for_a_purge(deps, tmp_path):
    sfid = submit(deps, _pdf(tmp_path / "a.pdf"), uuid.uuid4())
    deps.db.delete_files("row delete", shell_file_ids=[sfid])
    assert deliver(deps, Stage.PREPROCESS) == ["deleted"]
    assert deps.db.pages(sfid) == [] and [json.loads(b) for b in deps.queue.bodies("purge")] == [
        {"shell_file_id": str(sfid)}]
    # the purge removes the original, once
    assert deliver(deps, Stage.PURGE) == ["succeeded"]
    assert deps.storage.objects == {}
    assert deps.db.erasure(sfid).objects_removed == 1 and deps.db.erasure(sfid).status == "finished"


def test_an_unknown_file_is_still_unknown_not_deleted(deps):
    handle_record(Stage.OCR, _record(Stage.OCR, json.dumps({"shell_file_id": str(uuid.uuid4()), "page_numbers": [1]})),
                  ocr.run, deps)
    assert [(r.outcome, r.error_code) for r in deps.db.runs] == [("failed", "unknown_file")]
    assert deps.queue.bodies("purge") == []


def test_preprocess_stops_before_the_next_run_of_pages_once_the_file_is_deleted(deps, tmp_path, monkeypatch):
    monkeypatch.setattr(preprocess, "_ROWS_PER_WRITE", 2)
    sfid = submit(deps, _pdf(tmp_path / "a.pdf", pages=6), uuid.uuid4())
    real_put = deps.storage.put_bytes

    def put_bytes(key, data, content_type):
        real_put(key, data, content_type)
        if key.endswith("page-0003.jpg"):
            deps.db.delete_files("row delete", shell_file_ids=[sfid])

    monkeypatch.setattr(deps.storage, "put_bytes", put_bytes)
    assert deliver(deps, Stage.PREPROCESS) == ["deleted"]
    row = deps.db.erasure(sfid)
    assert row.rows_removed["shell_file_pages"] == 2  # pages 1-2 stored when the row went
    stored = sorted(k.rsplit("/", 1)[-1] for k in deps.storage.objects)
    assert stored == ["original.pdf", "page-0001.jpg", "page-0002.jpg", "page-0003.jpg", "page-0004.jpg"]  # no 5, 6
    assert deliver(deps, Stage.PURGE) == ["succeeded"]
    assert deps.storage.objects == {} and deps.db.erasure(sfid).objects_removed == 5


@pytest.mark.parametrize("per_message", [1, 8])
def test_ocr_reads_no_page_of_a_deleted_file(deps, tmp_path, per_message):
    # A page a message, or the three pages in two messages (2 and 1: the file's tail)
    deps.settings.ocr_pages_per_message = per_message
    sfid = submit(deps, _pdf(tmp_path / "scan.pdf", pages=3, text=False), uuid.uuid4())
    deliver(deps, Stage.PREPROCESS)
    real_read = deps.ocr.read

    def read(image, page_number):
        deps.db.delete_files("row delete", shell_file_ids=[sfid])  # while the first page is read
        return real_read(image, page_number)

    deps.ocr.read = read
    outcomes = deliver(deps, Stage.OCR)
    assert outcomes == ["deleted"] * (3 if per_message == 1 else 2)
    assert len(deps.ocr.calls) == 1  # the page in hand; never the two after
    assert deps.db.texts == {}


def test_discover_writes_nothing_for_a_file_deleted_while_the_provider_worked(deps, tmp_path):
    sfid = submit(deps, _pdf(tmp_path / "a.pdf"), uuid.uuid4())
    deliver(deps, Stage.PREPROCESS)
    real = deps.encounters.discover

    def discover_then_delete(pages):
        found = real(pages)
        deps.db.delete_files("row delete", shell_file_ids=[sfid])
        return found

    deps.encounters.discover = discover_then_delete
    assert deliver(deps, Stage.DISCOVER) == ["deleted"]
    assert deps.db.discoveries == {} and deps.db.manifests == {}


def test_the_final_sweep_waits_for_every_stage_that_began_before_the_deletion(deps, tmp_path):
    deps = deps.with_parts()
    deps.settings = deps.settings.model_copy(update={"erasure_final_sweep_s": 600})
    patient = uuid.uuid4()
    sfid = submit(deps, _pdf(tmp_path / "a.pdf"), patient)
    [report] = [ops.delete_file(deps, sfid)]
    assert (report["status"], report["objects_removed"]) == ("purged", 1)
    assert report["final_sweep_after"] and report["finished_at"] is None
    assert deps.db.due_erasures(600) == []  # purged; its final sweep is not due yet
    # a stage that began before the deletion stores one more object, and ends without noticing
    deps.storage.put_bytes(f"processed/{patient}/{sfid}/late.json", b"{}", "application/json")
    erasure = deps.db.erasures[sfid]
    earlier = erasure.requested_at - dt.timedelta(seconds=601)
    deps.db.erasures[sfid] = erasure.model_copy(update={"requested_at": earlier})
    assert purge.scan(deps) == {"finished": 1}
    assert deps.storage.objects == {}
    done = deps.db.erasure(sfid)
    assert done.objects_removed == 2 and done.finished_at is not None
    assert purge.scan(deps) == {}  # finished: never again


def test_a_purge_waits_for_the_lease_and_a_scan_does_not(deps, tmp_path):
    sfid = submit(deps, _pdf(tmp_path / "a.pdf"), uuid.uuid4())
    deps.db.delete_files("row delete", shell_file_ids=[sfid])
    assert deps.db.claim_erasure(sfid, "someone", 60)
    assert purge.purge_file(deps, sfid, wait=False) is None
    assert purge.scan(deps) == {"skipped": 1}
    assert len(deps.storage.objects) == 1  # the holder is still at it
    deps.db.finish_purge(sfid, "someone", 0, 0)
    assert purge.purge_file(deps, sfid, wait=True).objects_removed == 1


def test_a_purge_removes_nothing_of_a_file_that_is_not_deleted(deps, tmp_path):
    sfid = submit(deps, _pdf(tmp_path / "a.pdf"), uuid.uuid4())
    assert deliver(deps, Stage.PURGE) == []
    handle_record(Stage.PURGE, _record(Stage.PURGE, json.dumps({"shell_file_id": str(sfid)})), purge.run, deps)
    assert deps.db.runs[-1].outcome == "skipped" and len(deps.storage.objects) == 1
    assert deps.db.get_shell_file(sfid).status == FileStatus.QUEUED


def test_a_failed_purge_keeps_its_code_and_what_it_removed(deps, tmp_path, monkeypatch):
    from shared.errors import DependencyUnavailableError

    patient = uuid.uuid4()
    sfid = submit(deps, _pdf(tmp_path / "a.pdf"), patient)
    deliver(deps, Stage.PREPROCESS)
    deps.db.delete_files("row delete", shell_file_ids=[sfid])
    real = deps.storage.delete_keys

    def delete_keys(keys):
        if keys[0].startswith("processed/"):
            raise DependencyUnavailableError("storage down")
        real(keys)

    monkeypatch.setattr(deps.storage, "delete_keys", delete_keys)
    assert purge.scan(deps) == {"failed": 1}
    failed = deps.db.erasure(sfid)
    assert (failed.status, failed.last_error_code, failed.objects_removed) == ("pending", "dependency_unavailable", 1)
    monkeypatch.setattr(deps.storage, "delete_keys", real)
    assert purge.scan(deps) == {"finished": 1}
    assert deps.db.erasure(sfid).objects_removed == 1 + 2 and deps.storage.objects == {}


def test_a_serving_worker_asks_for_scans_a_draining_one_does_not():
    queue = InMemoryQueue()
    timer = ScanTimer(queue, serving_order(["preprocess", "purge"], True), 60)
    timer.tick()
    timer.tick()  # not due again for a minute
    assert queue.bodies("purge") == ['{"scan":true}']
    assert purge.is_scan(queue.bodies("purge")[0])
    assert not purge.is_scan(json.dumps({"shell_file_id": str(uuid.uuid4())}))
    for queues, interval in ((serving_order(["preprocess"], True), 60), (serving_order(["purge"], True), 0)):
        quiet = InMemoryQueue()
        ScanTimer(quiet, queues, interval).tick()
        assert quiet.bodies("purge") == []
    assert serving_order(["preprocess", "ocr", "discover", "purge"], False)[0] == "purge"


def test_prefixes_are_a_patients_or_a_files_and_nothing_wider():
    p, f = uuid.uuid4(), uuid.uuid4()
    assert [check_prefix(x) for x in file_prefixes(p, f)] == [f"originals/{p}/{f}/", f"processed/{p}/{f}/"]
    for bad in ("", "originals/", "processed/x/", f"originals/{p}", f"other/{p}/", f"originals/{p}/{f}/../"):
        with pytest.raises(ValueError):
            check_prefix(bad)
    assert file_of(f"processed/{p}/{f}/page-0001.jpg") == f and file_of(f"originals/{p}/x/o.pdf") is None


def test_the_final_sweep_cannot_be_set_shorter_than_a_stage_can_run():
    with pytest.raises(ValueError, match="ERASURE_FINAL_SWEEP_S"):
        Settings(erasure_final_sweep_s=300, stage_timeout_s=600)
    assert Settings(erasure_final_sweep_s=0).erasure_final_sweep_s == 0
