"""Stage logic over in-memory fakes of the ports: transitions, fan-out/fan-in, error model."""

from __future__ import annotations

import json
import time
import uuid

import pymupdf
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from PIL import Image, ImageDraw

from shared.bootstrap import Deps
from shared.errors import DependencyUnavailableError
from shared.models import FileStatus, Stage
from shared.ports import QueueMessage
from shared.runtime.events import sqs_event
from shared.runtime.records import handle_record
from shared.settings import Settings
from shared.stages import discover, ocr, preprocess
from shared.submit import submit
from tests.fakes import CannedOcr, InMemoryDb, InMemoryQueue, InMemoryStorage, OneEncounterPerDocument

RUNS = {Stage.PREPROCESS: preprocess.run, Stage.OCR: ocr.run, Stage.DISCOVER: discover.run}


@pytest.fixture
def deps(tmp_path):
    return Deps(
        settings=Settings(storage_backend="local", local_storage_dir=tmp_path / "store"),
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=InMemoryDb(),
        ocr=CannedOcr(),
        encounters=OneEncounterPerDocument(),
    )


def _text_pdf(path, pages=2):
    doc = pymupdf.open()
    for n in range(pages):
        page = doc.new_page()
        page.insert_text((72, 100), f"Clinic Visit Note page {n + 1}. Seen on 2024-03-0{n + 1} by Dr Jane Smith.")
    doc.save(path)
    return path


def _image(path, fmt="PNG"):
    img = Image.new("L", (850, 1100), 255)
    ImageDraw.Draw(img).text((50, 50), "Clinic Visit Note", fill=0)
    img.save(path, fmt)
    return path


def _record(stage: Stage, body: str, receive_count: int = 1) -> SQSRecord:
    msg = QueueMessage(stage.value, str(uuid.uuid4()), "rh", body, receive_count)
    return SQSRecord(sqs_event([msg], f"arn:aws:sqs:us-east-1:000000000000:docpipe-{stage.value}", "us-east-1")["Records"][0])


def drain(deps) -> list[str]:
    """Deliver every queued message once through the record wrapper; return the bodies."""
    seen = []
    progress = True
    while progress:
        progress = False
        for stage in Stage:
            for msg in deps.queue.receive(stage.value, max_messages=10):
                seen.append(msg.body)
                handle_record(stage, _record(stage, msg.body, msg.receive_count), RUNS[stage], deps)
                progress = True
    return seen


def test_text_pdf_needs_no_ocr(deps, tmp_path):
    sfid = submit(deps, _text_pdf(tmp_path / "a.pdf", pages=2), uuid.uuid4())
    drain(deps)
    row = deps.db.get_shell_file(sfid)
    assert row.status == FileStatus.COMPLETED and row.page_count == 2 and row.mime_type == "application/pdf"
    assert deps.ocr.calls == []
    assert [t.engine for t in deps.db.page_texts(sfid)] == ["native", "native"]
    jpegs = [k for k in deps.storage.objects if k.startswith("processed/")]
    assert len(jpegs) == 2 and all(deps.storage.objects[k][:3] == b"\xff\xd8\xff" for k in jpegs)
    assert deps.db.manifest(sfid).page_assignments == {1: 0, 2: 0}


def test_image_pages_fan_out_and_fan_in_once(deps, tmp_path):
    deps.settings.ocr_pages_per_message = 1
    tiff = tmp_path / "fax.tiff"
    frames = [_image(tmp_path / f"p{n}.png") for n in range(3)]
    first, *rest = [Image.open(p) for p in frames]
    first.save(tiff, save_all=True, append_images=rest)
    sfid = submit(deps, tiff, uuid.uuid4())
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, deps.queue.receive("preprocess")[0].body),
                  preprocess.run, deps)
    assert len(deps.queue.bodies("ocr")) == 3 and deps.queue.bodies("discover") == []
    bodies = drain(deps)
    assert sorted(deps.ocr.calls) == [1, 2, 3]
    assert sum(json.loads(b).keys() == {"shell_file_id"} for b in bodies) == 1  # one discover message
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED


def test_redelivered_ocr_message_reads_nothing_twice(deps, tmp_path):
    sfid = submit(deps, _image(tmp_path / "a.png"), uuid.uuid4())
    drain(deps)
    assert deps.ocr.calls == [1]
    body = json.dumps({"shell_file_id": str(sfid), "page_numbers": [1]})
    handle_record(Stage.OCR, _record(Stage.OCR, body, receive_count=2), ocr.run, deps)
    assert deps.ocr.calls == [1]


def test_message_bodies_hold_only_ids_and_page_numbers(deps, tmp_path):
    submit(deps, _image(tmp_path / "Jane Doe lab.png"), uuid.uuid4())
    submit(deps, _text_pdf(tmp_path / "Jane Doe visit.pdf"), uuid.uuid4())
    bodies = drain(deps)
    assert bodies
    for body in bodies:
        data = json.loads(body)
        assert set(data) <= {"shell_file_id", "page_numbers"}
        uuid.UUID(data["shell_file_id"])
        assert all(isinstance(n, int) for n in data.get("page_numbers", []))
        assert "Jane" not in body


def test_permanent_error_is_recorded_and_acknowledged(deps, tmp_path):
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    sfid = submit(deps, empty, uuid.uuid4())
    drain(deps)  # would raise if the error escaped
    row = deps.db.get_shell_file(sfid)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "empty_file")
    assert row.error_message
    assert [r.outcome for r in deps.db.runs] == ["failed"]


def test_invalid_message_is_recorded_not_retried(deps, tmp_path):
    sfid = submit(deps, _image(tmp_path / "a.png"), uuid.uuid4())
    bad = json.dumps({"shell_file_id": str(sfid), "file_name": "secret.pdf"})
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, bad), preprocess.run, deps)
    row = deps.db.get_shell_file(sfid)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "invalid_message")
    assert "secret" not in row.error_message
    handle_record(Stage.OCR, _record(Stage.OCR, "not json at all"), ocr.run, deps)
    assert deps.db.runs[-1].error_code == "invalid_message" and deps.db.runs[-1].shell_file_id is None


def test_retryable_error_propagates_for_redelivery(deps, tmp_path):
    sfid = submit(deps, _image(tmp_path / "a.png"), uuid.uuid4())

    def down(*args, **kwargs):
        raise DependencyUnavailableError("storage down")

    deps.storage.download = down
    body = deps.queue.receive("preprocess")[0].body
    with pytest.raises(DependencyUnavailableError):
        handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, body), preprocess.run, deps)
    assert deps.db.get_shell_file(sfid).status == FileStatus.PREPROCESSING
    assert deps.db.runs[-1].outcome == "retry" and deps.db.runs[-1].error_code == "dependency_unavailable"


def test_a_missing_setting_fails_only_the_record_that_needs_it_and_names_the_variable(tmp_path, caplog):
    # Given the production configuration's discover settings without the OpenAI key: the
    # preprocess stage, which never builds the provider, is unaffected
    settings = Settings(
        storage_backend="local", local_storage_dir=tmp_path / "store", encounter_provider="openai",
        openai_api_key=None, openai_api_key_secret=None, openai_base_url=None,
    )
    deps = Deps(settings=settings, queue=InMemoryQueue(), storage=InMemoryStorage(tmp_path), db=InMemoryDb())
    sfid = submit(deps, _text_pdf(tmp_path / "visit.pdf"), uuid.uuid4())
    (body,) = deps.queue.bodies(Stage.PREPROCESS.value)
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, body), preprocess.run, deps)
    assert deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING
    # When discover runs: the record is retried (not the file failed), with a log line naming the variable
    (body,) = deps.queue.bodies(Stage.DISCOVER.value)
    caplog.clear()
    with pytest.raises(Exception) as raised:
        handle_record(Stage.DISCOVER, _record(Stage.DISCOVER, body), discover.run, deps)
    assert type(raised.value).__name__ == "MissingSettingError" and raised.value.retryable
    assert deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING
    (retry,) = [r for r in caplog.records if r.getMessage() == "stage will be retried"]
    assert retry.setting == "OPENAI_API_KEY" and retry.error_code == "missing_setting"
    assert deps.built() == ["queue", "storage", "db"]  # the provider was never built


def test_a_deleted_page_jpeg_fails_the_file_as_a_missing_page_image_not_a_missing_original(deps, tmp_path):
    # Given a scanned page, preprocessed: its JPEG is stored and its OCR message queued
    sfid = submit(deps, _image(tmp_path / "scan.png"), uuid.uuid4())
    (body,) = deps.queue.bodies(Stage.PREPROCESS.value)
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, body), preprocess.run, deps)
    (page,) = deps.db.pages(sfid)
    # When the page JPEG is gone before OCR reads it
    del deps.storage.objects[page.storage_key]
    (body,) = deps.queue.bodies(Stage.OCR.value)
    handle_record(Stage.OCR, _record(Stage.OCR, body), ocr.run, deps)
    # Then the file fails for its page image (the original is still there), without the key
    row = deps.db.get_shell_file(sfid)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "page_image_missing")
    assert row.storage_key in deps.storage.objects
    assert str(sfid) not in row.error_message and "processed/" not in row.error_message
    assert deps.ocr.calls == []


def test_a_missing_original_is_still_original_missing(deps, tmp_path):
    sfid = submit(deps, _image(tmp_path / "scan.png"), uuid.uuid4())
    del deps.storage.objects[deps.db.get_shell_file(sfid).storage_key]
    (body,) = deps.queue.bodies(Stage.PREPROCESS.value)
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, body), preprocess.run, deps)
    row = deps.db.get_shell_file(sfid)
    assert (row.status, row.error_code) == (FileStatus.FAILED, "original_missing")
    assert str(sfid) not in row.error_message and "originals/" not in row.error_message


class _QueueThatFailsOnce(InMemoryQueue):
    """A queue whose ``fail_at``-th OCR send fails once (SQS throttling, a dropped connection):
    the OCR messages before it were sent, the rest were not."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.ocr_sends = 0

    def send(self, queue, message, delay_s=0):
        if queue == Stage.OCR.value:
            self.ocr_sends += 1
            if self.ocr_sends == self.fail_at:
                raise DependencyUnavailableError("queue down")
        return super().send(queue, message, delay_s)


def _multipage_tiff(tmp_path, pages: int):
    tiff = tmp_path / "scan.tiff"
    first, *rest = [Image.open(_image(tmp_path / f"p{n}.png")) for n in range(pages)]
    first.save(tiff, save_all=True, append_images=rest)
    return tiff


@pytest.mark.parametrize("per_message,pages", [(1, 7), (4, 13)])
@pytest.mark.parametrize("failure", ["ocr send", "page store"])
def test_redelivered_preprocess_sends_no_page_twice_and_completes_once(deps, tmp_path, failure, per_message, pages):
    # Given a 7-page scan (a page a message), or a 13-page one (4 pages a message: the 4th
    # message is the first of the file's tail), whose first preprocess delivery fails after
    # some pages were sent to OCR: the queue refuses the 4th OCR message, or storage refuses
    # the 6th page's JPEG
    deps.settings.ocr_pages_per_message = per_message
    deps.queue = _QueueThatFailsOnce(fail_at=4 if failure == "ocr send" else 0)
    sfid = submit(deps, _multipage_tiff(tmp_path, pages), uuid.uuid4())
    (body,) = deps.queue.bodies(Stage.PREPROCESS.value)
    deps.queue.receive(Stage.PREPROCESS.value)
    if failure == "page store":
        put_bytes, stored = deps.storage.put_bytes, []

        def fail_sixth(key, data, content_type):
            stored.append(key)
            if len(stored) == 6:
                raise DependencyUnavailableError("storage down")
            put_bytes(key, data, content_type)

        deps.storage.put_bytes = fail_sixth
    with pytest.raises(DependencyUnavailableError):
        handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, body), preprocess.run, deps)
    if failure == "page store":
        deps.storage.put_bytes = put_bytes
    # When SQS delivers the preprocess message again, then every message that follows once
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, body, receive_count=2), preprocess.run, deps)
    bodies = drain(deps)
    # Then every page went to OCR in exactly one message, was read once, and the file
    # completed once, after one discover message
    sent = [n for b in bodies for n in json.loads(b).get("page_numbers", [])]
    assert sorted(sent) == list(range(1, pages + 1))
    assert sorted(deps.ocr.calls) == list(range(1, pages + 1))
    assert sum(json.loads(b).keys() == {"shell_file_id"} for b in bodies) == 1
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    assert [r.outcome for r in deps.db.runs if r.stage == Stage.DISCOVER] == ["succeeded"]


def test_pages_read_while_preprocess_renders_and_the_file_flips_once(deps, tmp_path):
    # Given an OCR stage so quick that it reads each page as soon as its message is sent,
    # before preprocess has rendered the rest (and so before the file is at 'ocr')
    deps.settings.ocr_pages_per_message = 1
    sfid = submit(deps, _multipage_tiff(tmp_path, 5), uuid.uuid4())
    send = deps.queue.send
    statuses = []

    def send_and_read(queue, message, delay_s=0):
        mid = send(queue, message, delay_s)
        if queue == Stage.OCR.value:
            (msg,) = deps.queue.receive(Stage.OCR.value)
            statuses.append(deps.db.get_shell_file(sfid).status)
            handle_record(Stage.OCR, _record(Stage.OCR, msg.body), ocr.run, deps)
        return mid

    deps.queue.send = send_and_read
    # When preprocess runs
    (msg,) = deps.queue.receive(Stage.PREPROCESS.value)
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, msg.body), preprocess.run, deps)
    # Then every page was read while the file was still preprocessing, OCR sent no discover
    # message (the file was not at 'ocr'), and preprocess, finding every page read, sent one
    assert statuses == [FileStatus.PREPROCESSING] * 5 and sorted(deps.ocr.calls) == [1, 2, 3, 4, 5]
    assert len(deps.queue.bodies(Stage.DISCOVER.value)) == 1
    assert deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING
    drain(deps)
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED


def test_the_first_page_goes_to_ocr_before_the_rest_render(deps, tmp_path):
    # Given a 12-page scan, when preprocess runs: the first OCR message is sent after one
    # page is stored and written, and the later ones in runs of 2, 4 and 8 pages
    deps.settings.ocr_pages_per_message = 1
    submit(deps, _multipage_tiff(tmp_path, 12), uuid.uuid4())
    rows_at_send = []
    send = deps.queue.send

    def note(queue, message, delay_s=0):
        if queue == Stage.OCR.value:
            rows_at_send.append((message.page_numbers[0], len(deps.db.pages_)))
        return send(queue, message, delay_s)

    deps.queue.send = note
    (msg,) = deps.queue.receive(Stage.PREPROCESS.value)
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, msg.body), preprocess.run, deps)
    assert rows_at_send == [(1, 1), (2, 3), (3, 3), (4, 7), (5, 7), (6, 7), (7, 7),
                            (8, 12), (9, 12), (10, 12), (11, 12), (12, 12)]


def test_pages_go_in_messages_whose_last_ones_shrink(deps, tmp_path):
    # Given 4 pages a message and a 13-page scan, when preprocess runs: the first page goes
    # alone, then runs of 2 and 4, each one message; the last 4 pages wait for the end and go
    # in messages of 2, 1 and 1, so two workers finish the file within a page of each other
    deps.settings.ocr_pages_per_message = 4
    submit(deps, _multipage_tiff(tmp_path, 13), uuid.uuid4())
    (msg,) = deps.queue.receive(Stage.PREPROCESS.value)
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, msg.body), preprocess.run, deps)
    sent = [json.loads(b)["page_numbers"] for b in deps.queue.bodies(Stage.OCR.value)]
    assert sent == [[1], [2, 3], [4, 5, 6, 7], [8, 9], [10, 11], [12], [13]]
    drain(deps)
    assert sorted(deps.ocr.calls) == list(range(1, 14))


def _ocr_body(sfid, pages) -> str:
    return json.dumps({"shell_file_id": str(sfid), "page_numbers": pages})


def _at_ocr(deps, tmp_path, pages):
    """A file whose pages are stored and wait for OCR, their messages taken off the queue."""
    sfid = submit(deps, _multipage_tiff(tmp_path, pages), uuid.uuid4())
    (msg,) = deps.queue.receive(Stage.PREPROCESS.value)
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, msg.body), preprocess.run, deps)
    deps.queue.receive(Stage.OCR.value, max_messages=10)
    assert deps.db.get_shell_file(sfid).status == FileStatus.OCR
    return sfid


def test_every_page_is_recorded_before_the_file_flips_however_slow_the_writes(deps, tmp_path):
    # Given a file of 3 pages waiting for OCR, and a database whose writes lag (the stage writes
    # each page's row while it reads the next)
    sfid = _at_ocr(deps, tmp_path, 3)
    upsert = deps.db.upsert_text

    def slow_upsert(shell_file_id, text):
        time.sleep(0.05)
        upsert(shell_file_id, text)

    deps.db.upsert_text = slow_upsert
    # When one message reads the three pages
    handle_record(Stage.OCR, _record(Stage.OCR, _ocr_body(sfid, [1, 2, 3])), ocr.run, deps)
    # Then every page was recorded before the fan-in, which flipped the file once
    assert sorted(n for (f, n) in deps.db.texts if f == sfid) == [1, 2, 3]
    assert deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING
    assert len(deps.queue.bodies(Stage.DISCOVER.value)) == 1


def test_a_page_whose_row_cannot_be_written_fails_the_message_and_the_file_does_not_flip(deps, tmp_path):
    # Given a file of 3 pages waiting for OCR, and a database that cannot write page 2's row
    sfid = _at_ocr(deps, tmp_path, 3)
    upsert = deps.db.upsert_text

    def failing_upsert(shell_file_id, text):
        if text.page_number == 2:
            raise DependencyUnavailableError("database down")
        upsert(shell_file_id, text)

    deps.db.upsert_text = failing_upsert
    # When one message reads the three pages, its failure is left for redelivery
    with pytest.raises(DependencyUnavailableError):
        handle_record(Stage.OCR, _record(Stage.OCR, _ocr_body(sfid, [1, 2, 3])), ocr.run, deps)
    # Then page 1 stays recorded, page 2 is not, the file is still at OCR and nothing went to discover
    recorded = sorted(n for (f, n) in deps.db.texts if f == sfid)
    assert recorded[0] == 1 and 2 not in recorded
    assert deps.db.get_shell_file(sfid).status == FileStatus.OCR
    assert deps.queue.bodies(Stage.DISCOVER.value) == []
    assert deps.db.runs[-1].outcome == "retry"
    # and a redelivery reads only the pages not recorded, and completes the fan-in once
    deps.db.upsert_text = upsert
    calls = len(deps.ocr.calls)
    handle_record(Stage.OCR, _record(Stage.OCR, _ocr_body(sfid, [1, 2, 3]), receive_count=2), ocr.run, deps)
    assert sorted(deps.ocr.calls[calls:]) == [n for n in (1, 2, 3) if n not in recorded]
    assert deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING
    assert len(deps.queue.bodies(Stage.DISCOVER.value)) == 1
